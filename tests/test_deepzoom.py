"""Deep zoom in 3D: exact level cameras, lifting on the procedural world, fly-in, the CLI stage."""

import json

import numpy as np
import pytest
import torch

from dreamer import dream
from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.cameras import Camera, intrinsics_matrix, look_at, project_points
from dreamer.deepzoom import (
    DeepZoomConfig,
    NearPlane,
    fly_in_cameras,
    fly_in_near_plane,
    level_cameras,
    level_prompts,
    lift_zoom_levels,
    psnr,
    render_points_video,
    zoom_metrics,
    zoom_point,
    zoom_scene,
)
from dreamer.io import read_json
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds.procedural import ProceduralWorld

S = 64  # image side of the scene tests
LEVELS = 4
# From bench/bench_deepzoom.py (64 px, p = 2, 4 levels, world seeds 0-2, depth errors on): with
# the zoom the levels 1-3 render at 29-34 dB against the world's truth, without it at 18-27 dB.
MIN_PSNR = 27.0
MIN_GAIN_DB = 2.0


# ------------------------------------------------------------------------------------------------
# Level cameras
# ------------------------------------------------------------------------------------------------
def _odd_camera() -> Camera:
    K = intrinsics_matrix(71.0, 65.0, 30.0, 36.5)  # off-centre principal point, non-square pixels
    c2w = look_at(torch.tensor([0.3, -0.2, -0.5]), torch.tensor([0.5, 0.1, 3.0]))
    return Camera(K, c2w, 64, 48)


@pytest.mark.parametrize("p", [2, 4])
def test_level_cameras_are_exact_pure_zooms(p):
    cam = _odd_camera()
    center = (40.25, 19.5)
    cams = level_cameras(cam, center, 4, p)
    assert len(cams) == 4
    g = torch.Generator().manual_seed(1)
    local = torch.rand(500, 3, generator=g) * torch.tensor([4.0, 3.0, 5.0]) - torch.tensor([2.0, 1.5, -1.0])
    xyz = local @ cam.c2w[:3, :3].T + cam.c2w[:3, 3]  # in front of the camera
    uv, z = project_points(xyz.double(), cam)
    c = torch.tensor(center, dtype=torch.float64)
    mid = torch.tensor([cam.width / 2.0, cam.height / 2.0], dtype=torch.float64)
    for i, ci in enumerate(cams):
        assert torch.equal(ci.c2w, cam.c2w) and (ci.width, ci.height) == (cam.width, cam.height)
        assert ci.fx == pytest.approx(cam.fx * p**i) and ci.fy == pytest.approx(cam.fy * p**i)
        uv_i, z_i = project_points(xyz.double(), ci)
        expected = mid + p**i * (uv - c)
        assert torch.allclose(uv_i, expected, atol=1e-3 * p**i), (i, (uv_i - expected).abs().max())
        assert torch.allclose(z_i, z)
    # The zoom centre sits in the middle of every level.
    ray = torch.tensor([(center[0] - cam.cx) / cam.fx, (center[1] - cam.cy) / cam.fy, 1.0]) * 2.0
    x = cam.c2w[:3, :3] @ ray + cam.c2w[:3, 3]
    for ci in cams:
        uv_c, _ = project_points(x[None], ci)
        assert torch.allclose(uv_c[0], mid.float(), atol=1e-3)


def test_level_cameras_default_centre_and_errors():
    cam = Camera.from_focal(50.0, 64, 64)
    cams = level_cameras(cam, None, 3, 2)
    assert [c.fx for c in cams] == [50.0, 100.0, 200.0]
    assert all(c.cx == 32.0 and c.cy == 32.0 for c in cams)
    with pytest.raises(ValueError, match="outside"):
        level_cameras(cam, (70.0, 3.0), 3, 2)
    with pytest.raises(ValueError, match="levels"):
        level_cameras(cam, None, 0, 2)
    with pytest.raises(ValueError, match="p must"):
        level_cameras(cam, None, 3, 1)
    with pytest.raises(TypeError):
        level_cameras("camera", None, 3, 2)


def test_config_validation_and_prompts():
    assert not DeepZoomConfig().enabled
    with pytest.raises(ValueError, match="zoom_levels"):
        DeepZoomConfig(zoom_levels=1)
    with pytest.raises(ValueError, match="zoom_p"):
        DeepZoomConfig(zoom_levels=3, zoom_p=1)
    with pytest.raises(ValueError, match="zoom_prompts"):
        DeepZoomConfig(zoom_levels=3, zoom_prompts=("a", "b"))
    with pytest.raises(ValueError, match="zoom_center"):
        DeepZoomConfig(zoom_levels=3, zoom_center=(1.0,))
    with pytest.raises(ValueError, match="zoom_fly_frames"):
        DeepZoomConfig(zoom_levels=3, zoom_fly_frames=1)
    assert DeepZoomConfig(zoom_levels=2, zoom_center=[3, 4]).zoom_center == (3.0, 4.0)
    assert level_prompts(3, ["a", "b", "c"]) == ["a", "b", "c"]
    assert level_prompts(3, "leaf", suffixes=("close-up", "macro")) == ["leaf", "leaf, close-up", "leaf, macro"]
    assert level_prompts(4, None, scene_prompt="room", suffixes=("x",)) == ["room", "room, x", "room, x", "room, x"]


# ------------------------------------------------------------------------------------------------
# The procedural world with oracle backends
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene():
    torch.set_num_threads(1)
    world = ProceduralWorld(seed=0)
    cam0 = world.first_camera(S, S)
    estimator = WorldDepthEstimator(world)  # unknown scale, smooth distortion and noise per camera
    first = world.render(cam0)
    traj = make_trajectory("lookaround", cam0, center_depth_from(first.depth), n=2)
    result = dream(first.image, traj.cameras, "a room", inpainter=WorldInpainter(world),
                   depth_estimator=estimator, depth=first.depth)
    config = DeepZoomConfig(zoom_levels=LEVELS, zoom_p=2, zoom_center=(36.0, 30.0))
    zoomed = zoom_scene(result, config, depth_estimator=estimator, world=world)
    return world, estimator, result, zoomed


def test_zoomed_scene_matches_the_world_at_every_level(scene):
    world, _, result, zoomed = scene
    metrics = zoom_metrics(zoomed, result.points, world)
    assert zoom_metrics(zoomed, result.points, truth=zoomed.images) == metrics  # the stack is the truth
    assert [m["level"] for m in metrics] == list(range(LEVELS))
    for m in metrics[1:]:
        assert m["psnr_with"] >= MIN_PSNR, m
        assert m["psnr_with"] >= m["psnr_without"] + MIN_GAIN_DB, m
        # The winning points have the level's own resolution (about one pixel), not p^i pixels.
        assert m["footprint_px_with"] == pytest.approx(1.0, rel=0.2)
        assert m["footprint_px_without"] > 1.5
    assert metrics[0]["psnr_with"] >= metrics[0]["psnr_without"] - 0.5  # the wide view is not hurt
    # The views of the zoomed scene: the dreamed ones, then one per lifted level.
    assert len(zoomed.result.views) == len(result.views) + LEVELS - 1
    for v, cam in zip(zoomed.result.views[len(result.views):], zoomed.cameras[1:]):
        assert v.camera.fx == pytest.approx(cam.fx) and v.image.shape == (S, S, 3) and v.mask.dtype == torch.bool


def test_radii_are_multi_resolution_inside_the_zoom(scene):
    world, _, result, zoomed = scene
    pts = zoomed.points
    cams = zoomed.cameras
    f0 = cams[0].fx
    on_surface = world.distance_to_surface(pts.xyz) < 0.05
    _, z0 = project_points(pts.xyz, cams[0])
    rel = pts.radius * f0 / z0  # footprint in pixels of the wide view: 1 = the view's own resolution

    def inside(cam, shrink=1.0):
        uv, z = project_points(pts.xyz, cam)
        m = (1 - shrink) / 2
        lo_u, hi_u, lo_v, hi_v = cam.width * m, cam.width * (1 - m), cam.height * m, cam.height * (1 - m)
        return (z > 0) & (uv[:, 0] >= lo_u) & (uv[:, 0] < hi_u) & (uv[:, 1] >= lo_v) & (uv[:, 1] < hi_v)

    deepest = inside(cams[-1], 0.8) & on_surface
    assert int(deepest.sum()) > 1000
    assert float(rel[deepest].median()) == pytest.approx(2.0 ** -(LEVELS - 1), rel=0.05)
    outside = inside(cams[0]) & ~inside(cams[1]) & on_surface
    assert float(rel[outside].median()) == pytest.approx(1.0, rel=0.1)
    for i in range(1, LEVELS - 1):  # each ring between two levels holds that level's points
        ring = inside(cams[i], 0.9) & ~inside(cams[i + 1], 1.1) & on_surface
        assert float(rel[ring].median()) == pytest.approx(2.0 ** -i, rel=0.1), i
    # The points are still on the world's surfaces (the aligned depth is right).
    new = pts.select(rel < 0.9)
    assert float(world.distance_to_surface(new.xyz).median()) < 0.02
    # Outside the first level's field of view nothing changed.
    uvb, _ = project_points(result.points.xyz, cams[1])
    far = (uvb[:, 0] < -4) | (uvb[:, 0] > S + 4) | (uvb[:, 1] < -4) | (uvb[:, 1] > S + 4)
    kept = {tuple(x) for x in result.points.xyz[far].numpy().round(5).tolist()}
    now = {tuple(x) for x in pts.xyz.numpy().round(5).tolist()}
    assert kept <= now


def test_lift_levels_checks_inputs(scene):
    _, estimator, result, zoomed = scene
    with pytest.raises(ValueError, match="level images"):
        lift_zoom_levels(result.points, zoomed.cameras, zoomed.images[:2], depth_estimator=estimator)
    with pytest.raises(ValueError, match=r"\[N,H,W,3\]"):
        lift_zoom_levels(result.points, zoomed.cameras, zoomed.images[0], depth_estimator=estimator)
    with pytest.raises(ValueError, match="zoom_view"):
        zoom_scene(result, DeepZoomConfig(zoom_levels=2, zoom_view=7), depth_estimator=estimator)
    with pytest.raises(ValueError, match="world"):
        zoom_scene(result, DeepZoomConfig(zoom_levels=2), depth_estimator=estimator)


# ------------------------------------------------------------------------------------------------
# Fly-in
# ------------------------------------------------------------------------------------------------
def test_fly_in_is_a_dolly_to_the_zoom_point(scene):
    _, _, result, zoomed = scene
    start = zoomed.cameras[0]
    target = zoomed.point
    cams = fly_in_cameras(start, target, frames=13, zoom=8.0)
    assert len(cams) == 13
    d0 = float((target - start.center).norm())
    assert torch.allclose(cams[0].center, start.center, atol=1e-5)
    assert float((target - cams[-1].center).norm()) == pytest.approx(d0 / 8.0, rel=1e-4)
    dists = [float((target - c.center).norm()) for c in cams]
    ratios = np.array(dists[1:]) / np.array(dists[:-1])
    assert np.allclose(ratios, 8.0 ** (-1 / 12), rtol=1e-4)  # constant magnification rate
    for c in cams:
        assert torch.equal(c.K, start.K) and torch.allclose(c.c2w[:3, :3], start.c2w[:3, :3])
        uv, z = project_points(target[None], c)
        assert torch.allclose(uv[0], torch.tensor([S / 2.0, S / 2.0]), atol=1e-2) and z[0] > 0
    # The zoom point is the surface point under the zoom centre.
    view = result.views[0]
    p = zoom_point(view.camera, view.depth, (36.0, 30.0))
    assert torch.allclose(p, target)
    with pytest.raises(ValueError, match="frames"):
        fly_in_cameras(start, target, frames=1, zoom=2.0)
    # The near plane follows the camera in: the zoom point is never clipped on arrival.
    deep = fly_in_cameras(start, target, frames=3, zoom=2.0**12)
    near = fly_in_near_plane(deep, target, 0.01)
    last_z = float((target - deep[-1].center) @ deep[-1].forward)
    assert near < 0.1 * last_z and fly_in_near_plane(cams, target, 0.01) == 0.01

    class Probe:
        def render(self, camera, **kw):
            return kw

    assert NearPlane(Probe(), 0.002).render(start, background=None) == {"near_plane": 0.002, "background": None}
    with pytest.raises(ValueError, match="behind"):
        fly_in_cameras(start, start.center - start.forward, frames=4, zoom=2.0)


def test_fly_in_video_has_the_asked_frame_count(scene, tmp_path):
    import imageio.v3 as iio

    _, _, _, zoomed = scene
    cams = fly_in_cameras(zoomed.cameras[0], zoomed.point, frames=9, zoom=8.0)
    path = render_points_video(zoomed.points, cams, tmp_path / "fly.mp4", fps=12)
    frames = np.stack(list(iio.imiter(path)))
    assert frames.shape == (9, S, S, 3)
    # The last frame shows the zoomed detail: it matches the deepest level near the centre better
    # than the first frame does (a real dolly is not a pure zoom away from the centre).
    last = torch.from_numpy(frames[-1]).float() / 255
    first = torch.from_numpy(frames[0]).float() / 255
    c = slice(S // 2 - 4, S // 2 + 4)
    deep = zoomed.images[-1][c, c]
    assert psnr(last[c, c], deep) > psnr(first[c, c], deep)


# ------------------------------------------------------------------------------------------------
# The CLI stage
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_zoom_stage_offline(tmp_path):
    from dreamer.run import main

    out = tmp_path / "zoomed"
    args = ["--models", "synthetic", "--views", "2", "--width", "64", "--height", "64", "--no-splats", "-q",
            "--zoom-levels", "3", "--zoom-p", "2", "--zoom-view", "1", "--zoom-center", "30", "34",
            "--zoom-prompts", "a room", "--zoom-fly-frames", "6", "--out", str(out)]
    assert main(args) == 0
    z = out / "zoom"
    for name in ("level_00.png", "level_01.png", "level_02.png", "photo.png", "points.ply", "cameras.json",
                 "zoom_2d.mp4", "fly_in_points.mp4", "zoom.json"):
        assert (z / name).exists(), name
    info = read_json(z / "zoom.json")
    assert info["view"] == 1 and info["fly_in_frames"] == 6 and len(info["levels"]) == 2
    assert info["prompts"] == ["a room", "a room, close-up", "a room, macro photograph, fine detail"]
    assert all(m["psnr_with"] > m["psnr_without"] for m in info["metrics"][1:])
    cfg = read_json(out / "config.json")
    assert cfg["zoom"]["zoom_levels"] == 3 and cfg["zoom"]["zoom_center"] == [30.0, 34.0]
    # Fewer levels in the same folder: the zoom stage is redone and leaves no stale level.
    assert main([*args[:-2], "--zoom-levels", "2", "--out", str(out)]) == 0
    assert (z / "level_01.png").exists() and not (z / "level_02.png").exists()
    # Without --zoom-levels the stage is off (and a finished zoom of the same scene is removed).
    plain = ["--models", "synthetic", "--views", "2", "--width", "64", "--height", "64", "--no-splats", "-q"]
    assert main([*plain, "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "zoom").exists()
    assert main([*plain, "--out", str(out)]) == 0
    assert not z.exists()


def test_batch_entries_and_saved_configs_carry_the_zoom_settings():
    from dreamer.pipeline import SceneConfigs, configs_from_flat

    c = configs_from_flat({"zoom_levels": 3, "zoom_prompts": ["a", "b", "c"], "zoom_center": [10, 20],
                           "zoom_p": 4})
    assert c.zoom == DeepZoomConfig(zoom_levels=3, zoom_prompts=("a", "b", "c"), zoom_center=(10.0, 20.0), zoom_p=4)
    back = SceneConfigs.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back.zoom == c.zoom and back.result_hash() == c.result_hash()
    assert back.dream_hash() == configs_from_flat({}).dream_hash()  # zooming never redoes the dream
    with pytest.raises(ValueError, match="zoom_levels"):
        configs_from_flat({"zoom_levels": 1})


@pytest.mark.slow
def test_splats_train_on_the_levels_and_stay_fine_where_the_zoom_went(scene):
    from dreamer.splats import SplatConfig, build_training_views, train_gaussians
    from dreamer.splats.gaussians import merge_points_on_grid

    world, _, result, zoomed = scene
    cfg = SplatConfig(iterations=20, densify=False, extra_views=False, sh_degree=0, device="cpu", log_every=1000)
    views = build_training_views(zoomed.result, cfg)
    assert len(views) == len(result.views) + LEVELS - 1  # the dreamed views plus one per lifted level
    assert [v.camera.fx for v in views[len(result.views):]] == pytest.approx([c.fx for c in zoomed.cameras[1:]])
    g = train_gaussians(zoomed.result, cfg)
    # one Gaussian per cell of the footprint grid (points of different levels never merge)
    assert len(g) == len(merge_points_on_grid(zoomed.points, cfg.init_cell)) <= len(zoomed.points)
    # Gaussians inside the deepest level are about p^(N-1) times smaller (relative to depth) than
    # those of the wide view.
    cams = zoomed.cameras
    uv, z = project_points(g.means.detach(), cams[-1])
    inside = (z > 0) & (uv[:, 0] >= 16) & (uv[:, 0] < 48) & (uv[:, 1] >= 16) & (uv[:, 1] < 48)
    _, z0 = project_points(g.means.detach(), cams[0])
    size = g.scales.detach().amax(-1) * cams[0].fx / z0
    assert float(size[inside].median()) < 0.3 * float(size[~inside].median())
    # The splats render the deepest level better than splats of the scene without the zoom.
    g0 = train_gaussians(result, cfg)
    truth = world.render(cams[-1], supersample=2).image
    assert psnr(g.render(cams[-1])[0], truth) > psnr(g0.render(cams[-1])[0], truth) + 2.0


def test_tiny_pipeline_makes_the_levels(scene):
    from dreamer.backends.diffusion import load_diffusers_pipeline

    _, estimator, result, _ = scene
    pipe = load_diffusers_pipeline("text2img", "tiny", device="cpu", dtype=torch.float32)
    config = DeepZoomConfig(zoom_levels=3, zoom_steps=2, zoom_guidance=1.0, zoom_seed=3, zoom_prompts=("a room",))
    a = zoom_scene(result, config, depth_estimator=estimator, pipeline=pipe)
    b = zoom_scene(result, config, depth_estimator=estimator, pipeline=pipe)
    assert a.images.shape == (3, S, S, 3) and torch.isfinite(a.images).all()
    assert torch.equal(a.images, b.images)  # the seed is the only randomness
    assert a.prompts == ["a room", "a room, close-up", "a room, macro photograph, fine detail"]
    assert len(a.result.views) == len(result.views) + 2 and len(a.points) > len(result.points)
    # Level 0's photo is the scene's render at the re-centred view.
    assert a.photo.shape == (S, S, 3)


@pytest.mark.slow
def test_cli_zoom_stage_with_splats(tmp_path, monkeypatch):
    """The splat branch of the stage: Gaussians of the zoomed cloud and the fly-in video (two
    training iterations; the training itself is tested above)."""
    import dreamer.splats
    from dreamer.run import main
    from dreamer.splats import Gaussians

    seen = []
    train = dreamer.splats.train_gaussians

    def counting_train(result, config, on_progress=None, **kw):
        seen.append(len(result.views))
        return train(result, config, on_progress, **kw)

    monkeypatch.setattr(dreamer.splats, "train_gaussians", counting_train)
    out = tmp_path / "s"
    assert main(["--models", "synthetic", "--views", "2", "--width", "64", "--height", "64", "-q",
                 "--render-frames", "2", "--gs-iters", "2", "--zoom-levels", "3", "--zoom-fly-frames", "5",
                 "--zoom-video-seconds-per-level", "0", "--export", "ply", "spz", "--out", str(out)]) == 0
    assert seen == [2, 4]  # the scene's views, then the scene's views plus levels 1 and 2
    z = out / "zoom"
    n = len(Gaussians.load_ply(z / "gaussians.ply"))  # the zoomed cloud merged on the footprint grid
    assert 0 < n <= read_json(z / "zoom.json")["points"]
    assert len(Gaussians.load_spz(z / "gaussians.spz")) == n
    import imageio.v3 as iio

    assert len(list(iio.imiter(z / "fly_in.mp4"))) == 5
    assert not (z / "zoom_2d.mp4").exists()
