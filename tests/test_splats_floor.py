"""The size floor of splat training (``min_scale_px``): every Gaussian is drawn at least that
many pixels wide in its finest training view, and the result carries the floor in its scales."""

import pytest
import torch

from dreamer.splats import SplatConfig, train_gaussians
from dreamer.splats.lod import filter_3d_std
from dreamer.splats.train import _floored, _with_floor_baked
from test_splats_train import FAST, world_scene


def test_the_floor_is_a_quadrature_sum_and_baking_it_draws_the_same():
    scales = torch.tensor([[0.1, 2.0, 0.5], [3.0, 4.0, 0.0]])
    floor = torch.tensor([1.0, 0.0])
    expected = torch.tensor([[1.01 ** 0.5, 5 ** 0.5, 1.25 ** 0.5], [3.0, 4.0, 0.0]])
    assert torch.allclose(_floored(scales, floor), expected)
    params = {"scales": torch.log(scales[:1]), "scale_floor": floor[:1], "means": torch.zeros(1, 3)}
    baked = _with_floor_baked(params)
    assert "scale_floor" not in baked and baked["means"] is params["means"]
    assert torch.allclose(torch.exp(baked["scales"]), _floored(scales[:1], floor[:1]))
    assert _with_floor_baked({"scales": params["scales"]})["scales"] is params["scales"]  # no floor: unchanged


def test_training_with_a_floor_leaves_no_gaussian_under_it():
    result, _ = world_scene()
    cfg = SplatConfig(iterations=40, refine_start_iter=10, refine_every=10, refine_stop_iter=30, seed=0, **FAST)
    plain = train_gaussians(result, cfg)
    floored = train_gaussians(result, SplatConfig(**{**cfg.to_dict(), "min_scale_px": 1.0}))
    cams = [v.camera for v in result.views]

    def smallest_px(g):  # each Gaussian's smallest axis in pixels of its finest training view
        return g.scales.amin(1) / filter_3d_std(g.means, cams, variance=1.0).to(g.scales)

    assert float(smallest_px(plain).min()) < 0.6  # without the floor some shrink under a pixel
    # The floor is set from the means at the last densification; they move a little after it.
    assert float(smallest_px(floored).min()) > 0.98
    with pytest.raises(ValueError, match="min_scale_px"):
        SplatConfig(min_scale_px=-1.0)
