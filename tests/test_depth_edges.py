"""Flying pixels: the ramp test of depth maps, and the dream loop's lifted points on a translating
trajectory against the procedural world's surfaces."""

import pytest
import torch

import dreamer.scene.placement as placement
from dreamer import Camera, DreamConfig, dream
from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.cameras import DEFAULT_FOCAL_512
from dreamer.scene.depth_edges import straddling_pixels
from dreamer.scene.metrics import flying_points
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds import ProceduralWorld


def _columns(disparity_row: list[float], rows: int = 12) -> torch.Tensor:
    """A depth map whose every row has the inverse depths ``disparity_row``."""
    return (1.0 / torch.tensor(disparity_row, dtype=torch.float64)).float().expand(rows, -1).clone()


def test_planes_and_sharp_edges_are_not_flagged():
    # Planes (inverse depth linear in pixel coordinates), steep ones included: a floor whose
    # depth grows 10x across the image, and a wall seen at a grazing angle.
    v, u = torch.meshgrid(torch.arange(40.0) + 0.5, torch.arange(50.0) + 0.5, indexing="ij")
    for disp in (0.02 + 0.02 * v, 0.5 - 0.009 * u, 0.3 + 0.004 * u - 0.003 * v):
        assert not straddling_pixels(1.0 / disp).any()
    # A sharp step: the object's silhouette and the background beside it both stay.
    step = _columns([0.5] * 20 + [0.2] * 20)
    assert not straddling_pixels(step).any()


def test_a_ramp_between_two_surfaces_is_flagged_and_its_sides_kept():
    ramp = [0.5] * 15 + [0.45, 0.4, 0.35, 0.3, 0.25] + [0.2] * 15  # a silhouette blurred over 5 pixels
    flagged = straddling_pixels(_columns(ramp))
    inner = torch.zeros(len(ramp), dtype=torch.bool)
    inner[15:20] = True  # farther than a tenth of the jump from both sides
    assert torch.equal(flagged[6], inner)
    # Cut by the image border, the ramp is still seen (the border pixel itself is the far side).
    cut = straddling_pixels(_columns(ramp[:19]))
    assert cut[6, 15:18].all() and not cut[6, :15].any() and not cut[6, 18]
    # Between a near object and a narrow strip of background: the ramp into the strip goes.
    strip = [0.5] * 15 + [0.45, 0.4, 0.35, 0.3, 0.25] + [0.2] * 5 + [0.6] * 15
    assert straddling_pixels(_columns(strip))[6, 15:20].all()


def test_invalid_pixels_and_bad_inputs():
    depth = _columns([0.5] * 15 + [0.45, 0.4, 0.35, 0.3, 0.25] + [0.2] * 15)
    depth[:, 17] = 0.0  # no sample
    assert not straddling_pixels(depth)[:, 17].any()
    with pytest.raises(ValueError, match="radius must be an integer >= 1"):
        straddling_pixels(depth, radius=0)
    with pytest.raises(ValueError, match="depth"):
        straddling_pixels(depth[None])
    with pytest.raises(ValueError, match="edge_blur must be an integer >= 0"):
        WorldDepthEstimator(ProceduralWorld(), edge_blur=-1)


SIZE = 64


def _translating_scene(edge_ramps: bool):
    """A sideways move of 4 views at 64x64 with a depth model whose silhouettes are ramps."""
    world = ProceduralWorld()
    cam = Camera.from_focal(DEFAULT_FOCAL_512 * SIZE / 512, SIZE, SIZE)
    truth = world.render(cam)
    est = WorldDepthEstimator(world, scale_range=(1.0, 1.0), distortion=0.0, noise=0.0, edge_blur=1)
    cams = make_trajectory("moveright", cam, center_depth_from(truth.depth), n=4).cameras
    saved = placement.EDGE_RAMP_RADIUS
    placement.EDGE_RAMP_RADIUS = saved if edge_ramps else 0
    try:
        result = dream(truth.image, cams, "", inpainter=WorldInpainter(world), depth_estimator=est,
                       depth=truth.depth, config=DreamConfig(joint_refinement=False))
    finally:
        placement.EDGE_RAMP_RADIUS = saved
    return [flying_points(v, world) for v in result.views[1:]]


def test_a_translating_trajectory_lifts_no_flying_pixels():
    """With ramps at every silhouette, the views of a sideways move lift (nearly) no point in the
    free space between an object and what it hides; without the edge-aware steps no fewer (the
    adaptive alignment's anchors already leave most ramp pixels out: 9 against 4 here)."""
    after = _translating_scene(edge_ramps=True)
    before = _translating_scene(edge_ramps=False)
    assert all(v["lifted"] > 500 for v in after)
    # At most one point in 500 (3 of about 3200 here, against 4 with the rims left unpeeled).
    assert sum(v["flying"] for v in after) <= 0.002 * sum(v["lifted"] for v in after), after
    assert all(v["off_surface"] == 0 for v in after), after
    assert sum(v["flying"] for v in before) >= sum(v["flying"] for v in after), (before, after)


def test_alignment_anchors_leave_out_the_estimates_ramps_unless_too_few_remain():
    ramp = [0.5] * 15 + [0.45, 0.4, 0.35, 0.3, 0.25] + [0.2] * 15
    estimate = _columns(ramp, rows=20)
    known = torch.ones(20, len(ramp), dtype=torch.bool)
    anchors = placement.alignment_known(known, estimate, min_pixels=10)
    r = placement.EDGE_RAMP_RADIUS
    # the ramp (columns 15-19) and EDGE_RAMP_RADIUS pixels around it are left out, nothing else
    expected = torch.ones(len(ramp), dtype=torch.bool)
    expected[15 - r : 20 + r] = False
    assert torch.equal(anchors, expected.expand(20, -1))
    assert torch.equal(placement.alignment_known(known, estimate, min_pixels=10**6), known)


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_straddling_pixels_matches_the_reference(radius):
    from dreamer.scene.depth_edges import _straddling_pixels_reference

    g = torch.Generator().manual_seed(radius)
    world = ProceduralWorld()
    cam = Camera.from_focal(DEFAULT_FOCAL_512 * 48 / 512, 48, 40)
    est = WorldDepthEstimator(world, edge_blur=3, seed=radius).estimate(world.render(cam).image, camera=cam)
    maps = [est]
    for shape in ((37, 53), (6, 30), (30, 5), (3, 3)):
        # Blocks of random depths blurred into ramps, with invalid samples sprinkled in.
        depth = torch.rand(shape, generator=g).mul(4).add(0.5).round()
        depth = depth + 0.05 * torch.rand(shape, generator=g)
        depth[torch.rand(shape, generator=g) < 0.05] = 0.0
        depth[torch.rand(shape, generator=g) < 0.02] = float("nan")
        maps.append(depth)
    for depth in maps:
        for threshold in (0.03, 0.08):
            fast = straddling_pixels(depth, radius=radius, threshold=threshold)
            ref = _straddling_pixels_reference(depth, radius=radius, threshold=threshold)
            assert torch.equal(fast, ref)
    assert straddling_pixels(est, radius=radius).any()  # the comparison saw flagged pixels
