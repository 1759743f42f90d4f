"""Deep zoom's depth estimates go through the dream loop's filter (pixel noise, rims), so a depth
model that draws objects too wide ("foreground fattening") lifts no halo of background pixels at
the object's depth around the zoom's silhouettes: checked against the procedural world's truth,
with the filter's off-switches bringing the raw estimate back."""

import dataclasses

import torch

from dreamer import dream
from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.deepzoom import DeepZoomConfig, zoom_scene
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds.procedural import ProceduralWorld

S = 64
LEVELS = 4
CENTER = (32.0, 38.4)  # the benchmark's zoom point: the levels and the fly-in pass the sphere's silhouette
# A lifted pixel this far (relative) from the true depth of its ray sits on another surface (the
# world's depth edges are steps of 8 % or more).
WRONG_SURFACE = 0.05


def _scene(seed: int):
    """(world, an estimator that does not fatten, the same one fattening objects by a pixel, a
    two-view scene). The two estimators draw the same scale and noise per camera: they differ
    only where the fattening moves a pixel onto the nearer surface."""
    torch.set_num_threads(1)
    world = ProceduralWorld(seed=seed)
    cam0 = world.first_camera(S, S)
    first = world.render(cam0)
    thin = WorldDepthEstimator.family(world, "scale", seed=seed)
    fat = WorldDepthEstimator.family(world, "fatten", seed=seed)
    traj = make_trajectory("forward", cam0, center_depth_from(first.depth), n=2, distance=0.3)
    result = dream(first.image, traj.cameras, "", inpainter=WorldInpainter(world), depth_estimator=thin,
                   depth=first.depth)
    return world, thin, fat, result


def _unfiltered(result):
    """The scene with the loop's filter switched off (no rims peeled, no denoising)."""
    return dataclasses.replace(result, config=dataclasses.replace(result.config, rim_width=0.0, denoise_radius=0))


def _wrong_surface(world, view) -> torch.Tensor:
    """bool [H,W]: the view's lifted pixels whose depth is another surface's than their ray's."""
    truth = world.depth(view.camera).to(view.depth)
    return view.mask & ((view.depth - truth).abs() / truth > WRONG_SURFACE)


def test_fattened_rims_of_the_zoom_levels_land_on_their_true_surface():
    """Across a silhouette a level pixel takes the coarser depth its estimate is nearest to; a
    fattened estimate gives the background pixels beside an object the object's depth, and
    unfiltered about nine in ten of them are lifted there. Filtered as the loop filters, most land
    on the surface their ray meets; without a fattening, the filter changes next to nothing."""
    world, thin, fat, result = _scene(0)
    config = DeepZoomConfig(zoom_levels=LEVELS, zoom_p=2, zoom_center=CENTER)
    n = len(result.views)
    zoomed = zoom_scene(result, config, depth_estimator=fat, world=world)
    raw = zoom_scene(_unfiltered(result), config, depth_estimator=fat, world=world)
    fattened = lifted = on_wrong = on_wrong_raw = 0
    for view, view_raw in zip(zoomed.result.views[n:], raw.result.views[n:]):
        # The pixels the fattening moved: the two estimators disagree there (and only there).
        e_fat, e_thin = fat.estimate(view.image, camera=view.camera), thin.estimate(view.image, camera=view.camera)
        moved = (e_fat - e_thin).abs() / e_thin > WRONG_SURFACE
        fattened += int(moved.sum())
        lifted += int((moved & view.mask).sum())
        on_wrong += int((moved & _wrong_surface(world, view)).sum())
        on_wrong_raw += int((moved & _wrong_surface(world, view_raw)).sum())
    assert lifted > 100, (fattened, lifted)  # the zoom sees silhouettes
    assert sum(s.rim_pixels for s in zoomed.stats) > 100 and all(s.rim_pixels == 0 for s in raw.stats)
    assert on_wrong_raw >= 0.8 * lifted, (on_wrong_raw, lifted)  # the raw estimate's rims, as before the filter
    assert on_wrong <= 0.5 * lifted, (on_wrong, lifted)
    # An estimate that does not fatten: the filter moves next to no lifted pixel onto another surface.
    plain = zoom_scene(result, config, depth_estimator=thin, world=world)
    plain_raw = zoom_scene(_unfiltered(result), config, depth_estimator=thin, world=world)
    wrong = sum(int(_wrong_surface(world, v).sum()) for v in plain.result.views[n:])
    wrong_raw = sum(int(_wrong_surface(world, v).sum()) for v in plain_raw.result.views[n:])
    assert wrong <= wrong_raw + 5, (wrong, wrong_raw)
    # Deterministic: the same zoom again is the same cloud, bit for bit (a rerun reproduces a run).
    again = zoom_scene(result, config, depth_estimator=fat, world=world)
    assert torch.equal(again.points.xyz, zoomed.points.xyz) and torch.equal(again.lod.lod_out, zoomed.lod.lod_out)


def test_fattened_rims_of_the_dolly_views_land_on_their_true_surface():
    """A dolly view lifts its holes (the background a nearer surface uncovers as the camera moves
    in) at its aligned estimate: unfiltered, a fattened estimate puts a third of them on the
    object that uncovers them; filtered as the loop filters, nearly none."""
    world, thin, fat, result = _scene(2)
    config = DeepZoomConfig(zoom_levels=LEVELS, zoom_p=2, zoom_center=CENTER)
    inpainter = WorldInpainter(world)

    def dolly_pixels(res, estimator):
        z = zoom_scene(res, config, depth_estimator=estimator, world=world, inpainter=inpainter)
        views = z.result.views[len(z.result.views) - len(z.dolly_levels):]
        return (sum(int(v.mask.sum()) for v in views), sum(int(_wrong_surface(world, v).sum()) for v in views),
                sum(s.rim_pixels for s in z.dolly_stats))

    lifted, wrong, rims = dolly_pixels(result, fat)
    lifted_raw, wrong_raw, rims_raw = dolly_pixels(_unfiltered(result), fat)
    assert lifted >= 20 and lifted_raw >= 20, (lifted, lifted_raw)
    assert rims > 50 and rims_raw == 0
    assert wrong_raw >= 0.2 * lifted_raw, (wrong_raw, lifted_raw)
    assert wrong <= 0.05 * lifted, (wrong, lifted)
    # Without a fattening nothing lands on another surface, and next to nothing is peeled.
    lifted_thin, wrong_thin, rims_thin = dolly_pixels(result, thin)
    assert wrong_thin == 0 and rims_thin <= 5, (lifted_thin, wrong_thin, rims_thin)


def test_bench_counts_pixels_on_no_surface_of_their_pixel():
    """The README's lift table (bench/bench_deepzoom.py): a view lifted at the world's own depth
    has no pixel on no surface of its pixel; a pixel moved to a depth no sub-ray of it meets has;
    a pixel across a silhouette moved to the other side's depth (a quarter or more of its area)
    is on another surface than its ray's, but not on none."""
    import importlib.util
    from pathlib import Path

    from dreamer.scene.result import DreamView

    script = Path(__file__).parents[1] / "bench" / "bench_deepzoom.py"
    spec = importlib.util.spec_from_file_location("bench_deepzoom", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    world = ProceduralWorld(seed=0)
    cam = world.first_camera(S, S)
    depth = world.depth(cam)
    mask = torch.ones_like(depth, dtype=torch.bool)
    exact = DreamView(cam, world.render(cam).image, depth, mask, "")
    assert int(bench.stray_pixels(world, exact).sum()) == 0
    # A silhouette pixel: its ray meets the near surface, a quarter or more of its area the far one.
    sub = 4
    fine = world.depth(cam.resized(S * sub, S * sub)).view(S, sub, S, sub).permute(0, 2, 1, 3).reshape(S, S, -1)
    far = fine.max(-1).values
    mixed = ((far - depth) / depth > 0.2) & ((fine >= 0.95 * far[..., None]).float().mean(-1) >= 0.5)
    assert int(mixed.sum()) > 0
    moved = depth.clone()
    moved[mixed] = far[mixed]
    floating = torch.zeros_like(mask)
    floating[5, 7] = True
    moved[floating] = 0.5 * depth[floating]  # nothing in the pixel is that near
    view = DreamView(cam, exact.image, moved, mask, "")
    # The silhouette pixels now sit on another surface than their ray's, yet on one of their pixel.
    assert bool(((moved - depth).abs() / depth > bench.WRONG_SURFACE)[mixed].all())
    assert torch.equal(bench.stray_pixels(world, view), floating)
