"""Joint adjustment of per-view depth corrections (alignment.joint) on the procedural world."""

import math

import pytest
import torch

from alignment.joint import joint_log_corrections
from alignment.trend import n_terms, polynomial_field
from dreamer import Camera
from dreamer.cameras import DEFAULT_FOCAL_512, rotation_x, rotation_y
from dreamer.worlds import ProceduralWorld

SIZE = 64


@pytest.fixture(scope="module")
def world():
    return ProceduralWorld()


def cameras(moves):
    cams = []
    for yaw, pitch, forward in moves:
        c2w = torch.eye(4)
        c2w[:3, :3] = rotation_y(yaw) @ rotation_x(pitch)
        c2w[:3, 3] = c2w[:3, 2] * forward
        cams.append(Camera.from_focal(DEFAULT_FOCAL_512 * SIZE / 512, SIZE, SIZE, c2w))
    return cams


def distorted_logs(world, cams, seed):
    """log z-depth of each camera minus a random quadratic (view 0 exact): the true corrections
    are then exactly representable, and the fit must find them."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(len(cams), n_terms(2), dtype=torch.float64)
    truth[1:] = (torch.rand(len(cams) - 1, n_terms(2), generator=g, dtype=torch.float64) - 0.5) * 0.2
    truth[1:, 0] += torch.linspace(-0.5, 0.5, len(cams) - 1, dtype=torch.float64)  # unknown scales
    logs = [torch.log(world.depth(c).double()) - polynomial_field(truth[k], 2, SIZE, SIZE)
            for k, c in enumerate(cams)]
    return logs, truth


def fit(cams, logs, init, **kw):
    K = torch.stack([c.K for c in cams])
    c2w = torch.stack([c.c2w for c in cams])
    valid = [torch.ones(SIZE, SIZE, dtype=torch.bool) for _ in cams]
    return joint_log_corrections(logs, valid, K, c2w, init, [k == 0 for k in range(len(cams))], **kw)


def field_error(result, truth):
    return max(float((result.field(k, SIZE, SIZE) - polynomial_field(truth[k], 2, SIZE, SIZE)).abs().max())
               for k in range(len(truth)))


@pytest.mark.parametrize("moves", [
    [(0, 0, 0), (20, 0, 0), (40, 0, 0), (-20, 0, 0), (10, 20, 0)],          # rotations (a chain and a loop)
    [(0, 0, 0), (0, 0, 0.3), (0, 0, 0.6), (8, 0, 0.45)],                     # a dolly: depth-dependent parallax
])
def test_recovers_exact_corrections_from_a_wrong_start(world, moves):
    cams = cameras(moves)
    logs, truth = distorted_logs(world, cams, seed=len(moves))
    init = torch.zeros_like(truth)
    before = field_error(type("R", (), {"field": lambda self, k, h, w: polynomial_field(init[k], 2, h, w)})(), truth)
    result = fit(cams, logs, init, iterations=8)
    assert before > 0.2
    assert field_error(result, truth) < 5e-3
    assert torch.equal(result.coeffs[0], init[0])  # the gauge does not move
    assert result.residual_after < 0.1 * result.residual_before


def test_the_fixed_view_sets_the_scale(world):
    """Views that only overlap each other keep the scale of the fixed view they chain to."""
    cams = cameras([(0, 0, 0), (20, 0, 0), (40, 0, 0)])
    logs, truth = distorted_logs(world, cams, seed=0)
    logs[0] = logs[0] + math.log(2.0)  # the gauge view's depth is twice the world's
    result = fit(cams, logs, torch.zeros_like(truth), iterations=8)
    shifted = truth.clone()
    shifted[1:, 0] += math.log(2.0)
    assert field_error(result, shifted) < 5e-3


def test_bad_input_is_refused(world):
    cams = cameras([(0, 0, 0), (20, 0, 0)])
    logs, truth = distorted_logs(world, cams, seed=0)
    K = torch.stack([c.K for c in cams])
    c2w = torch.stack([c.c2w for c in cams])
    valid = [torch.ones(SIZE, SIZE, dtype=torch.bool)] * 2
    with pytest.raises(ValueError, match="fixed"):
        joint_log_corrections(logs, valid, K, c2w, truth, [False, False])
    with pytest.raises(ValueError, match="init must be"):
        joint_log_corrections(logs, valid, K, c2w, truth[:, :3], [True, False])
    with pytest.raises(ValueError, match="K must be"):
        joint_log_corrections(logs, valid, K[:1], c2w, truth, [True, False])
    bad = [logs[0], logs[1].clone()]
    bad[1][3, 3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        joint_log_corrections(bad, valid, K, c2w, truth, [True, False])
