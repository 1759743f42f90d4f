"""alignment.peers: the peers' alignments on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alignment.peers import luciddreamer_depth, luciddreamer_seam, oracle_scale, oracle_scale_depth, text2room_depth

H, W = 48, 64


def _wall(depth: float = 2.5) -> torch.Tensor:
    """A fronto-parallel wall: the same z-depth at every pixel."""
    return torch.full((H, W), depth, dtype=torch.float64)


def _scene() -> torch.Tensor:
    """A slanted, bumpy surface (z-depth varies across the image)."""
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                            indexing="ij")
    return 2.0 + yy / H + 0.3 * torch.sin(xx / 7.0)


def _enclosed_hole() -> tuple[torch.Tensor, torch.Tensor]:
    hole = torch.zeros(H, W, dtype=torch.bool)
    hole[14:34, 20:46] = True
    return ~hole, hole


@pytest.mark.parametrize("scale", [0.4, 1.7])
def test_a_pure_scale_error_is_removed_exactly_by_every_peer(scale):
    """On a wall seen through an enclosed hole, a pure scale error of the estimate is removed
    exactly by Text2Room's fit, LucidDreamer's seam residual and the oracle scale."""
    truth = _wall()
    known, hole = _enclosed_hole()
    est = truth * scale
    reference = torch.where(known, truth, torch.zeros_like(truth))
    assert torch.allclose(text2room_depth(est, reference, known)[hole], truth[hole], rtol=1e-9)
    assert torch.allclose(luciddreamer_depth(est, reference, known, hole)[hole], truth[hole], rtol=1e-9)
    assert torch.allclose(oracle_scale_depth(est, truth, hole)[hole], truth[hole], rtol=1e-9)


def test_text2room_removes_an_affine_error_in_disparity_anywhere():
    truth = _scene()
    known = torch.rand(H, W, generator=torch.Generator().manual_seed(0)) < 0.4
    est = 1.0 / (0.6 / truth + 0.05)  # a relative-depth model after a wrong scale and shift
    out = text2room_depth(est, truth, known)
    assert torch.allclose(out, truth, rtol=1e-9)  # including pixels far from the known ones


def test_text2room_is_plain_least_squares():
    """Not robust: one gross outlier on the overlap moves its fit (it is the peer as described)."""
    truth = _scene()
    known = torch.ones(H, W, dtype=torch.bool)
    reference = truth.clone()
    reference[0, 0] = 100.0
    out = text2room_depth(truth, reference, known)
    assert not torch.allclose(out, truth, rtol=1e-4)


def test_luciddreamer_pins_the_corners_to_zero():
    """Its correction is the seam residual where the hole meets known pixels and 0 at the image
    corners; a hole that reaches a corner keeps the raw estimate there."""
    truth = _wall()
    hole = torch.zeros(H, W, dtype=torch.bool)
    hole[:, 40:] = True  # a strip at the right border: two of its corners are in the hole
    known = ~hole
    est = truth * 0.5
    out = luciddreamer_depth(est, truth, known, hole)
    assert float(out[0, W - 1]) == pytest.approx(float(est[0, W - 1]), rel=1e-6)  # the corner: unchanged
    assert float(out[H // 2, 40]) == pytest.approx(float(truth[H // 2, 40]), rel=0.05)  # at the seam: met
    dz = (out - est)[H // 2, 40:]
    assert bool((dz[1:] <= dz[:-1] + 1e-12).all()) and float(dz[-1]) < 0.1 * float(dz[0])  # fading to the border
    assert not torch.allclose(out[hole], truth[hole], rtol=1e-2)  # a scale error is not removed in a strip
    assert torch.equal(out[known], est[known])  # only the hole is changed


def test_luciddreamer_seam_is_the_known_side_of_the_mask_edge():
    known, hole = _enclosed_hole()
    seam = luciddreamer_seam(known, hole)
    assert not (seam & hole).any()
    assert seam[13, 30] and seam[13, 19] and not seam[10, 30]  # next to the hole (also diagonally); not beyond
    assert int(seam.sum()) == (20 + 2) * (26 + 2) - 20 * 26


def test_oracle_scale_minimises_the_mean_relative_error():
    g = torch.Generator().manual_seed(1)
    truth = _scene()
    est = truth * torch.exp(0.2 * torch.randn(H, W, generator=g, dtype=torch.float64))
    mask = torch.rand(H, W, generator=g) < 0.5
    s = oracle_scale(est, truth, mask)

    def err(x):
        return float(((x * est[mask] - truth[mask]).abs() / truth[mask]).mean())

    grid = np.linspace(0.5, 1.5, 2001)
    assert err(s) <= min(err(x) for x in grid) + 1e-12
    assert math.isnan(oracle_scale(est, truth, torch.zeros_like(mask)))


def test_bad_inputs_are_refused():
    truth = _wall()
    known, hole = _enclosed_hole()
    with pytest.raises(ValueError, match="disjoint"):
        luciddreamer_depth(truth, truth, known, known)
    with pytest.raises(ValueError, match="at least 2 pixels"):
        text2room_depth(truth, truth, torch.zeros_like(known))
    with pytest.raises(ValueError, match="<= 0"):
        text2room_depth(-truth, truth, known)
    with pytest.raises(TypeError):
        oracle_scale(truth.numpy(), truth, hole)
