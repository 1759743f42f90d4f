"""The error families of the procedural world's depth estimator (dreamer/backends/synthetic.py)."""

from __future__ import annotations

import math

import pytest
import torch

from dreamer.backends.synthetic import ERROR_FAMILIES, WorldDepthEstimator, _gaussian_blur
from dreamer.cameras import Camera, look_at
from dreamer.worlds import ProceduralWorld


@pytest.fixture(scope="module")
def world():
    return ProceduralWorld()


def cam_at(eye, target, size=(96, 64), focal=80.0):
    return Camera.from_focal(focal, size[0], size[1], look_at(torch.tensor(eye), torch.tensor(target)))


@pytest.fixture(scope="module")
def view(world):
    cam = cam_at([0.2, 0.0, 0.0], [0.6, -0.2, 3.0])
    return cam, world.render(cam)


def _only(world, **kw):
    """An estimator with one kind of error (no scale, no noise unless given)."""
    base = dict(scale_range=(1.0, 1.0), distortion=0.0, distortion_kind="none", noise=0.0, seed=3)
    return WorldDepthEstimator(world, **{**base, **kw})


def test_every_family_is_seeded_per_camera(world, view):
    cam, r = view
    other = cam_at([0.0, 0.0, 0.0], [-0.5, 0.0, 3.0])
    for name in ERROR_FAMILIES:
        est = WorldDepthEstimator.family(world, name, seed=1)
        a = est.estimate(r.image, camera=cam)
        assert torch.equal(a, WorldDepthEstimator.family(world, name, seed=1).estimate(r.image, camera=cam))
        assert not torch.equal(a, WorldDepthEstimator.family(world, name, seed=2).estimate(r.image, camera=cam))
        assert est.errors(cam).scale != est.errors(other).scale
        assert 0.4 <= est.errors(cam).scale <= 2.5
        assert torch.isfinite(a).all() and (a > 0).all()
    with pytest.raises(ValueError, match="error family"):
        WorldDepthEstimator.family(world, "fog")


def test_scale_and_noise(world, view):
    cam, r = view
    est = WorldDepthEstimator.family(world, "scale", seed=4)
    ratio = est.estimate(r.image, camera=cam) / r.depth / est.errors(cam).scale
    assert abs(float(ratio.mean()) - 1) < 0.003 and abs(float(ratio.std()) - 0.01) < 0.002


@pytest.mark.parametrize("kind", ["bend", "waves"])
def test_smooth_distortions(world, view, kind):
    cam, r = view
    est = _only(world, distortion=0.1, distortion_kind=kind)
    d = est.errors(cam).field
    assert float(d.abs().max()) == pytest.approx(0.1, rel=1e-4)
    assert torch.allclose(est.estimate(r.image, camera=cam), r.depth * (1 + d), rtol=1e-5)


def test_waves_lie_between_a_third_and_one_and_a_half_cycles_per_image(world):
    """Most of the power of the waves' field is at 0.3-1.5 cycles per image (some leaks out:
    the waves do not fit the image a whole number of times)."""
    cam = cam_at([0.0, 0.0, 0.0], [0.0, 0.0, 3.0], size=(128, 128), focal=120.0)
    est = _only(world, distortion=0.1, distortion_kind="waves")
    inside, total = 0.0, 0.0
    for seed in range(8):
        est.seed = seed
        d = est.errors(cam).field.double()
        power = torch.fft.fft2(d).abs() ** 2
        f = torch.fft.fftfreq(128, d=1 / 128).abs()  # cycles per image
        radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
        inside += float(power[(radius >= 0.2) & (radius <= 2.0)].sum())
        total += float(power.sum())
    assert inside / total > 0.8


def test_objects_err_surface_by_surface(world, view):
    cam, r = view
    est = _only(world, object_error=0.1)
    ratio = est.estimate(r.image, camera=cam) / r.depth
    offsets = est.errors(cam).object_offsets
    ids = torch.unique(r.object_id)
    assert len(ids) >= 3
    for i in ids.tolist():
        on = r.object_id == i
        assert torch.allclose(ratio[on], torch.full_like(ratio[on], 1 + offsets[i]), rtol=1e-5)
        assert abs(offsets[i]) <= 0.1
    assert len({round(float(offsets[i]), 6) for i in ids.tolist()}) == len(ids)  # one error per surface


def test_disparity_is_affine(world, view):
    cam, r = view
    est = _only(world, disparity_shift=0.25, scale_range=(0.7, 0.7))
    e = est.estimate(r.image, camera=cam).double()
    k = est.errors(cam).disparity_shift
    assert k != 0 and abs(k) * float(r.depth.median()) <= 0.25 + 1e-9
    t = r.depth.double()
    assert torch.allclose(1.0 / e, (1.0 / t + k) / 0.7, rtol=1e-5)
    assert float((1 + k * t).min()) >= 0.5 - 1e-6  # never a disparity near zero


def test_smear_blurs_depth_edges_only(world, view):
    cam, r = view
    est = _only(world, smear=0.02)
    e = est.estimate(r.image, camera=cam)
    assert torch.allclose(e, _gaussian_blur(r.depth, 0.02 * 96), rtol=1e-6)
    jump = (r.depth[:, 1:] / r.depth[:, :-1]).log().abs()
    edges = jump > 0.1
    assert edges.any()
    e_jump = (e[:, 1:] / e[:, :-1]).log().abs()
    assert float(e_jump[edges].mean()) < 0.5 * float(jump[edges].mean())  # edges become ramps
    flat = torch.nn.functional.max_pool2d(edges[None, None].float(), 15, stride=1, padding=7)[0, 0] == 0
    rel = ((e[:, 1:] - r.depth[:, 1:]).abs() / r.depth[:, 1:])[flat]
    assert float(rel.median()) < 0.005  # smooth surfaces barely change


def test_power_compresses_the_range_about_the_median(world, view):
    cam, r = view
    est = _only(world, compression=0.35)
    g = est.errors(cam).exponent
    assert 0.65 <= g < 1.0
    e, t = est.estimate(r.image, camera=cam).double(), r.depth.double()
    m = t.median()
    assert torch.allclose(e.log() - m.log(), g * (t.log() - m.log()), atol=1e-5)
    assert len({round(est.errors(cam_at([0.0, 0.0, z], [0.0, 0.0, 3.0])).exponent, 6) for z in (0, .1, .2)}) == 3
    assert _only(world).errors(cam).exponent == 1.0


def test_fatten_grows_the_foreground_across_depth_edges_only(world, view):
    cam, r = view
    est = _only(world, fatten=0.02)  # 0.02 * 96 px: 2 px
    e, t = est.estimate(r.image, camera=cam).double(), r.depth.double()
    assert bool((e <= t * (1 + 1e-6)).all())  # only ever nearer: the near side takes the pixels
    # Each pixel, pixel by pixel: the least true depth within 2 px (a disc) if it is > 10% nearer.
    H, W = t.shape
    tl = t.tolist()
    expected = torch.tensor([[min(min(tl[min(max(y + dy, 0), H - 1)][min(max(x + dx, 0), W - 1)]
                                      for dy in range(-2, 3) for dx in range(-2, 3) if dy * dy + dx * dx <= 4),
                                  tl[y][x]) for x in range(W)] for y in range(H)], dtype=torch.float64)
    expected = torch.where(expected < t * 0.9, expected, t)
    assert torch.allclose(e, expected, rtol=1e-6)
    moved = e < t * (1 - 1e-6)
    assert 0.01 < float(moved.float().mean()) < 0.2  # beside silhouettes only


def test_mixed_combines_waves_noise_and_smear(world, view):
    cam, r = view
    est = WorldDepthEstimator.family(world, "mixed", seed=5)
    assert (est.distortion, est.distortion_kind, est.noise, est.smear) == (0.15, "waves", 0.02, 0.008)
    e = est.estimate(r.image, camera=cam)
    err = est.errors(cam)
    ratio = e / _gaussian_blur(r.depth, 0.008 * 96) / err.scale / (1 + err.field)
    assert abs(float(ratio.std()) - 0.02) < 0.004


def test_bad_settings_are_refused(world):
    for kw in (dict(object_error=1.0), dict(disparity_shift=-0.1), dict(smear=0.5), dict(distortion_kind="ripples"),
               dict(compression=1.0), dict(compression=-0.1), dict(fatten=0.2)):
        with pytest.raises(ValueError):
            WorldDepthEstimator(world, **kw)
    assert math.isclose(WorldDepthEstimator.family(world, "smear").smear, 0.008)
