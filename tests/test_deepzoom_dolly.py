"""Dolly views of a deep zoom: cameras on the fly-in path at each level's magnification, what
they see at the zoom point's depth (the level camera's own projection), and their repainted
silhouettes against the procedural world's truth."""

import math

import pytest
import torch

from dreamer import dream
from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.cameras import project_points
from dreamer.deepzoom import DeepZoomConfig, psnr, zoom_scene
from dreamer.deepzoom.dolly import dolly_level_cameras, dream_dolly_view
from dreamer.deepzoom.flyin import dolly_cameras, fly_in_cameras
from dreamer.deepzoom.lifting import render_lod_points
from dreamer.render import clean_coverage
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds.procedural import ProceduralWorld

S = 64
LEVELS = 4
CENTER = (32.0, 38.4)  # the benchmark's zoom point: the fly-in passes the sphere's silhouette


@pytest.fixture(scope="module")
def zoomed():
    torch.set_num_threads(1)
    world = ProceduralWorld(seed=0)
    cam0 = world.first_camera(S, S)
    estimator = WorldDepthEstimator(world)
    first = world.render(cam0)
    traj = make_trajectory("forward", cam0, center_depth_from(first.depth), n=2, distance=0.3)
    result = dream(first.image, traj.cameras, "", inpainter=WorldInpainter(world), depth_estimator=estimator,
                   depth=first.depth)
    config = DeepZoomConfig(zoom_levels=LEVELS, zoom_p=2, zoom_center=CENTER)
    plain = zoom_scene(result, config, depth_estimator=estimator, world=world)
    dolly = zoom_scene(result, config, depth_estimator=estimator, world=world, inpainter=WorldInpainter(world))
    return world, estimator, result, plain, dolly


def test_dolly_cameras_are_the_fly_in_frames_of_the_level_magnifications(zoomed):
    *_, z = zoomed
    view = z.result.views[z.view_index].camera
    cams = dolly_level_cameras(view, z.point, z.cameras, z.p, [1, 2, 3])
    # A fly-in of LEVELS frames magnifies p^j at frame j.
    fly = z.fly_in_cameras(LEVELS)
    for i, cam in zip([1, 2, 3], cams):
        assert torch.allclose(cam.c2w, fly[i].c2w, atol=1e-6) and torch.allclose(cam.K, fly[i].K, atol=1e-4)
    # On the line from the view's centre to the zoom point, p^i times nearer to the point.
    c0 = view.c2w[:3, 3].double()
    for i, cam in zip([1, 2, 3], cams):
        expected = c0 + (1.0 - 0.5**i) * (z.point - c0)
        assert torch.allclose(cam.c2w[:3, 3].double(), expected, atol=1e-5)
        assert torch.allclose(cam.c2w[:3, :3], view.c2w[:3, :3])  # the view's rotation
    # The dolly views of the zoomed scene sit at those cameras, after the level views.
    n = len(z.result.views)
    for k, cam in enumerate(cams):
        assert torch.allclose(z.result.views[n - 3 + k].camera.c2w, cam.c2w)
    assert z.dolly_levels == [1, 2, 3]


def test_dolly_camera_sees_the_zoom_points_depth_as_the_level_camera_does(zoomed):
    """At the zoom point's depth (the plane through it facing the view) the dolly camera of level
    i projects every point where level camera i does: the level image is the centre 1/p^i of the
    view there, as in the zoom stack; only nearer or farther surfaces shift (parallax)."""
    *_, z = zoomed
    view = z.result.views[z.view_index].camera
    cams = dolly_level_cameras(view, z.point, z.cameras, z.p, [1, 2, 3])
    R, c0 = view.c2w[:3, :3].double(), view.c2w[:3, 3].double()
    z_target = float(R[:, 2] @ (z.point - c0))
    g = torch.Generator().manual_seed(0)
    xy = (torch.rand(300, 2, generator=g, dtype=torch.float64) - 0.5) * 0.05 * z_target
    local = torch.cat([xy, torch.full((300, 1), z_target, dtype=torch.float64)], 1)
    local[:, :2] += (R.T @ (z.point - c0))[:2]
    on_plane = local @ R.T + c0
    off_plane = (local * torch.tensor([1.0, 1.0, 0.8], dtype=torch.float64)) @ R.T + c0
    for i, cam in zip([1, 2, 3], cams):
        uv_dolly, _ = project_points(on_plane, cam)
        uv_level, _ = project_points(on_plane, z.cameras[i])
        assert torch.allclose(uv_dolly, uv_level, atol=1e-3 * 2**i), (i, (uv_dolly - uv_level).abs().max())
        # A nearer surface is not: the dolly sees it shifted (this is the parallax the dolly views add).
        shift = (project_points(off_plane, cam)[0] - project_points(off_plane, z.cameras[i])[0]).abs().max()
        assert shift > 1.0


def test_dolly_cameras_check_their_inputs(zoomed):
    *_, z = zoomed
    view = z.result.views[z.view_index].camera
    with pytest.raises(ValueError, match="out of range"):
        dolly_level_cameras(view, z.point, z.cameras, z.p, [LEVELS])
    with pytest.raises(ValueError, match="zooms"):
        dolly_cameras(view, z.point, [0.5])
    with pytest.raises(ValueError, match="behind"):
        dolly_cameras(view, view.c2w[:3, 3] - view.c2w[:3, 2], [2.0])
    with pytest.raises(ValueError, match="level"):
        dream_dolly_view(z.points, z.lod, view, level=0, inpainter=None, depth_estimator=None)
    # fly_in_cameras is the dolly at its frames' magnifications.
    fly = fly_in_cameras(view, z.point, frames=5, zoom=8.0, end_K=z.cameras[0].K)
    same = dolly_cameras(view, z.point, [8.0 ** (j / 4) for j in range(5)], end_K=z.cameras[0].K)
    assert all(torch.equal(a.c2w, b.c2w) and torch.equal(a.K, b.K) for a, b in zip(fly, same))


def test_dolly_views_repaint_the_silhouettes_the_levels_never_saw(zoomed):
    """Against the world's truth at each dolly camera: most of the cloud's error there lies in the
    repainted band (holes and depth edges), and the dolly view's image (the oracle inpainter
    repaints the band) is far nearer the truth than the cloud's render."""
    world, _, _, plain, z = zoomed
    n_dolly = len(z.dolly_levels)
    assert n_dolly == LEVELS - 1
    for view, stats in zip(z.result.views[-n_dolly:], z.dolly_stats):
        truth = world.render(view.camera).image.float()
        r, _ = clean_coverage(render_lod_points(plain.points, plain.lod, view.camera), close_px=1, grow_px=0)
        before, after = psnr(r.image, truth), psnr(view.image, truth)
        assert after >= before + 3.0, (stats, before, after)
        assert 0.0 < stats.repainted_fraction < 0.5
    # Level 1's dolly view: at least two thirds of the render's squared error sits in its band.
    view = z.result.views[-n_dolly]
    truth = world.render(view.camera).image.float()
    r, _ = clean_coverage(render_lod_points(plain.points, plain.lod, view.camera), close_px=1, grow_px=0)
    err = ((r.image - truth) ** 2).sum(-1)
    band = (view.image - r.image).abs().sum(-1) > 0
    assert float(err[band].sum() / err.sum()) > 2 / 3


def test_dolly_views_lift_only_what_no_point_covered(zoomed):
    _, _, _, plain, z = zoomed
    n_dolly = len(z.dolly_levels)
    added = sum(s.new_points for s in z.dolly_stats)
    assert len(z.points) == len(plain.points) + added
    new_levels = set(z.lod.level[len(plain.points):].tolist())
    assert new_levels <= set(z.dolly_levels)
    assert torch.equal(z.lod.lod_out[len(plain.points):], torch.zeros(added))  # no finer level covers them
    for view, stats in zip(z.result.views[-n_dolly:], z.dolly_stats):
        assert int(view.mask.sum()) == stats.new_points
        assert view.depth.shape == (S, S) and bool((view.depth > 0).all())
        f = math.sqrt(view.camera.fx * view.camera.fy)
        assert f == pytest.approx(math.sqrt(z.cameras[0].fx * z.cameras[0].fy), rel=1e-4)


def test_splats_learn_only_the_repainted_pixels_of_a_dolly_view(zoomed):
    """A dolly view's training mask is its repainted band (elsewhere it re-renders the cloud,
    which the level views teach); the other views keep every pixel."""
    from dreamer.splats import SplatConfig, build_training_views

    _, _, result, plain, z = zoomed
    n_dolly = len(z.dolly_levels)
    views = build_training_views(z.result, SplatConfig(extra_views=False, device="cpu"))
    assert len(views) == len(z.result.views)
    assert all(v.mask is None for v in views[:-n_dolly])
    for tv, view, stats in zip(views[-n_dolly:], z.result.views[-n_dolly:], z.dolly_stats):
        assert torch.equal(tv.mask, view.loss_mask)
        assert float(tv.mask.float().mean()) == pytest.approx(stats.repainted_fraction)
        r, _ = clean_coverage(render_lod_points(plain.points, plain.lod, view.camera), close_px=1, grow_px=0)
        # Outside the band the image is the cloud's render (the cloud before the dolly views).
        assert torch.allclose(view.image[~tv.mask], r.image[~tv.mask].clamp(0, 1), atol=1e-6)
