"""The refine step in splat training and before it: the depth loss, the repair cameras, repaired
pseudo-views (and resuming with them), the completion pass, and the repaired video."""

import math

import pytest
import torch

from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter, WorldRefiner
from dreamer.scene import DreamConfig, DreamResult, dream
from dreamer.scene.completion import COMPLETION, complete_scene, hole_fraction
from dreamer.splats import SplatConfig, train_gaussians
from dreamer.splats.losses import inverse_depth_l1
from dreamer.splats.repair import camera_offset, repair_rounds, safe_box
from dreamer.splats.train import repair_cameras
from dreamer.trajectories import center_depth_from, make_trajectory
from test_splats_train import FAST, world_scene


@pytest.fixture(scope="module")
def scene():
    return world_scene()


def test_inverse_depth_loss_is_scale_free_and_masked():
    g = torch.Generator().manual_seed(0)
    truth = 1.0 + 3.0 * torch.rand(12, 10, generator=g)
    assert float(inverse_depth_l1(truth, truth)) == 0.0
    pred = truth * 1.1
    loss = inverse_depth_l1(pred, truth)
    assert abs(float(loss) - (1 - 1 / 1.1)) < 1e-5  # a uniform 10% error costs 0.0909
    assert abs(float(inverse_depth_l1(pred * 7.0, truth * 7.0)) - float(loss)) < 1e-5  # any units
    mask = torch.zeros(12, 10, dtype=torch.bool)
    mask[:6] = True
    p = pred.clone().requires_grad_(True)
    inverse_depth_l1(p, truth, mask).backward()
    assert (p.grad[~mask] == 0).all() and (p.grad[mask] != 0).all()
    unknown = truth.clone()
    unknown[6:] = 0.0  # 0 = no depth known there
    q = pred.clone().requires_grad_(True)
    inverse_depth_l1(q, unknown).backward()
    assert (q.grad[6:] == 0).all()


def test_repair_rounds_start_between_the_views_and_move_outward(scene):
    result, _ = scene
    cams = [v.camera for v in result.views]
    pivots = [center_depth_from(v.depth) for v in result.views]
    rounds = repair_rounds(cams, pivots, rounds=4, views=6, angle=24.0, dolly=0.1)
    assert len(rounds) == 4 and all(len(r) == 6 for r in rounds[1:])
    # Round 0: halfway between neighbouring dreamed cameras (yaws -12, 0, 12: two pairs).
    assert len(rounds[0]) == 2
    for cam in rounds[0]:
        d = sorted(camera_offset(cam, c, 3.0) for c in cams)
        assert abs(d[0] - d[1]) < 1e-3 and 10.0 < d[0] < 14.0  # 6 degrees of turn and 6 of move
    # Later rounds look from further out: the nearest dreamed camera is further away each round.
    nearest = [min(min(camera_offset(c, d, p) for d, p in zip(cams, pivots)) for c in ring) for ring in rounds]
    assert nearest[1] < nearest[2] < nearest[3]
    assert nearest[3] > 20.0  # the last round is 24 degrees out (and moved)


def test_outward_rounds_look_where_no_dreamed_camera_looked(scene):
    """A pan (yaws -12, 0, 12): an outward round's cameras orbit 24 degrees and none of them
    toward a neighbour (that would turn it 12 degrees from the neighbour); the two ends of the
    pan are orbited outward, and the rest across the pan (up, down, diagonally)."""
    result, _ = scene
    cams = [v.camera for v in result.views]
    pivots = [center_depth_from(v.depth) for v in result.views]
    ring = repair_rounds(cams, pivots, rounds=2, views=6, angle=24.0, dolly=0.0)[1]
    assert len(ring) == 6
    turns = [min(camera_offset(c, d, 1e12) for d in cams) for c in ring]  # pure turn: a pivot at infinity
    assert min(turns) > 23.9
    # Each camera's view direction in the middle camera's frame: yaw (right +) and elevation (up +).
    rot = cams[1].c2w[:3, :3].double()
    yaws, ups = [], []
    for c in ring:
        f = rot.T @ c.forward.double()
        yaws.append(math.degrees(math.atan2(float(f[0]), float(f[2]))))
        ups.append(math.degrees(math.asin(float(-f[1]))))  # OpenCV axes: y points down
    assert min(yaws) < -35.0 and max(yaws) > 35.0  # the ends, 12 + 24 degrees out
    assert sum(abs(u) > 20.0 for u in ups) >= 2  # and across the pan
    # Distinct cameras: farthest-point sampling takes no direction twice.
    centres = torch.stack([c.center for c in ring])
    assert float(torch.cdist(centres, centres).add(torch.eye(6) * 1e9).min()) > 0.1


def test_repair_cameras_stay_in_the_safe_box(scene):
    result, _ = scene
    cams = [v.camera for v in result.views]
    box = safe_box(result.points.xyz, torch.stack([c.center for c in cams]))
    lo, hi = box
    pivots = [50.0] * len(cams)  # a far pivot: a wide orbit would leave the scene
    rounds = repair_rounds(cams, pivots, rounds=3, views=8, angle=40.0, dolly=0.0, box=box)
    for ring in rounds:
        for cam in ring:
            c = cam.center.double()
            assert bool(((c >= lo - 1e-6) & (c <= hi + 1e-6)).all())


def _median_depth_error(g, cams, world):
    errs = []
    for cam in cams:
        _, d, a = g.render(cam)
        truth = world.depth(cam)
        m = a > 0.5
        errs.append(float(((d[m] - truth[m]).abs() / truth[m]).median()))
    return sum(errs) / len(errs)


@pytest.mark.slow  # splat training, 2-3 s
def test_depth_supervision_pulls_the_splats_to_the_views_depth(scene):
    """A cloud lifted with a wrong depth (+-10% noise along the rays) initializes the splats; the
    views' depth maps are right. Photometric training alone leaves much of the error; the depth
    loss removes much of it within a few iterations."""
    from dreamer.pointcloud import PointCloud

    result, world = scene
    centre = result.views[0].camera.center
    g = torch.Generator().manual_seed(3)
    factor = 1.0 + 0.1 * torch.randn(len(result.points), 1, generator=g)
    pts = result.points
    noisy = DreamResult(PointCloud(centre + (pts.xyz - centre) * factor, pts.rgb, pts.radius * factor[:, 0]),
                        result.views, result.config)
    cfg = dict(iterations=40, densify=False, **FAST)
    cams = [v.camera for v in result.views]
    start = _median_depth_error(train_gaussians(noisy, SplatConfig(**{**cfg, "iterations": 1})), cams, world)
    plain = _median_depth_error(train_gaussians(noisy, SplatConfig(**cfg)), cams, world)
    supervised = _median_depth_error(train_gaussians(noisy, SplatConfig(depth_weight=1.0, **cfg)), cams, world)
    assert supervised < 0.8 * plain and supervised < 0.8 * start, (start, plain, supervised)  # measured 0.69


class CountingRefiner(WorldRefiner):
    def __init__(self, world):
        super().__init__(world)
        self.calls, self.outputs = [], []

    def refine(self, render, *, reference=None, camera=None, generator=None):
        self.calls.append((camera, reference))
        out = super().refine(render, reference=reference, camera=camera, generator=generator)
        self.outputs.append(out)
        return out


REPAIR = dict(iterations=30, checkpoint_every=10, refine_start_iter=4, refine_every=5, refine_stop_iter=25,
              repair_start=5, repair_every=8, repair_rounds=4, repair_views=3, **FAST)


@pytest.mark.slow  # splat training, 2-3 s
def test_repaired_views_join_training_and_a_resumed_run_matches(tmp_path):
    result, world = world_scene(24, 16, yaws=(0.0, 10.0))
    cfg = SplatConfig(**REPAIR)
    refiner = CountingRefiner(world)
    history, seen = [], []
    straight = train_gaussians(result, cfg, lambda s, d, t: seen.append((s, d, t)), history=history, refiner=refiner)
    # Rounds at iterations 5, 13, 21, 29: 1 between the two views, then 3 per round.
    assert len(refiner.calls) == 1 + 3 * 3
    assert [e for e in seen if e[0] == "repair"][-1] == ("repair", 10, 10)
    assert any(h["pseudo"] for h in history) and not any(h["pseudo"] for h in history[:5])
    # Every reference is one of the dreamed views' images (the nearest view to the novel camera).
    assert all(any(torch.equal(ref, v.image) for v in result.views) for _, ref in refiner.calls)
    assert {id(cam) for cam, _ in refiner.calls}.isdisjoint({id(v.camera) for v in result.views})
    rounds = repair_cameras(result, cfg)
    assert [len(r) for r in rounds] == [1, 3, 3, 3]

    class Stop(Exception):
        pass

    def interrupt(stage, done, total):
        if stage == "splats" and done == 25:
            raise Stop

    with pytest.raises(Stop):
        train_gaussians(result, cfg, interrupt, checkpoint_dir=tmp_path, refiner=WorldRefiner(world))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 20 and len(state["pseudo_views"]) == 1 + 3  # rounds at 5 and 13
    resumed = train_gaussians(result, cfg, checkpoint_dir=tmp_path, refiner=WorldRefiner(world))
    for a, b in zip(resumed.params().values(), straight.params().values()):
        assert torch.equal(a, b)
    # Another refiner is another result: the finished stage is not reused.
    seen.clear()
    train_gaussians(result, SplatConfig(**{**REPAIR, "iterations": 6}), lambda s, d, t: seen.append((s, d)),
                    checkpoint_dir=tmp_path, refiner=WorldRefiner(world, fraction=0.5))
    assert [d for s, d in seen if s == "splats"] == list(range(1, 7))


@pytest.fixture(scope="module")
def dreamed_room():
    """A rotation-only dream (one camera centre) on the procedural world: a camera that moves
    sees behind the foreground, where nothing was dreamed."""
    from dreamer.worlds import ProceduralWorld

    world = ProceduralWorld(0)
    first = world.first_camera(48, 48)
    depth = world.render(first).depth
    traj = make_trajectory("lookaround", first, center_depth_from(depth), yaws=(20.0,), pitches=())
    config = DreamConfig(joint_refinement=False)
    inpainter, estimator = WorldInpainter(world), WorldDepthEstimator(world, seed=1)
    result = dream(world.render(first).image, traj.cameras, "", inpainter=inpainter, depth_estimator=estimator,
                   config=config, depth=depth)
    path = make_trajectory("llff", first, center_depth_from(depth), n=24, angle=8.0).cameras
    return world, result, path, inpainter, estimator


@pytest.mark.slow  # a dreamed room and its completion pass
def test_completion_dreams_the_render_path_holes(dreamed_room):
    world, result, path, inpainter, estimator = dreamed_room
    before = [hole_fraction(result.points, c, result.config, 1) for c in path]
    assert max(before) > 0.01  # the orbit sees behind the foreground
    seen = []
    state = complete_scene(result, path, inpainter=inpainter, depth_estimator=estimator, threshold=0.005,
                           max_views=6, close_px=1, on_progress=lambda s, d, t: seen.append((s, d, t)))
    new = state.result.views[len(result.views):]
    assert 1 <= len(new) <= 6 and all(v.stats[COMPLETION] for v in new)
    assert len(state.dreamed) == len(new) and len(set(state.dreamed)) == len(new)
    # The first camera dreamed is the one with the largest hole (greedy).
    assert state.dreamed[0] == max(range(len(path)), key=lambda i: (before[i], -i))
    after = [hole_fraction(state.result.points, c, result.config, 1) for c in path]
    assert max(after) < max(before)
    if len(new) < 6:
        assert max(after) <= 0.005  # done before the budget ran out: no hole left over the threshold
    assert state.holes == pytest.approx([h if h > 0.005 else state.holes[i] for i, h in enumerate(after)])
    assert seen[-1][0] == "complete" and seen[-1][1] == seen[-1][2]
    # New points lie on the true surface (the world inpaints, the aligned estimate places them).
    added = state.result.points.xyz[len(result.points):]
    assert added.shape[0] > 0
    assert float(world.distance_to_surface(added).median()) < 0.05 * world.extent


@pytest.mark.slow  # a dreamed room and its completion pass
def test_completion_resumes_to_the_same_scene(dreamed_room):
    world, result, path, inpainter, estimator = dreamed_room
    kw = dict(inpainter=inpainter, depth_estimator=estimator, threshold=0.005, max_views=3, close_px=1)
    states = []
    straight = complete_scene(result, path, on_view=states.append, **kw)
    first = states[0]  # after the first dreamed view
    assert len(first.dreamed) == 1
    resumed = complete_scene(result, path, resume=first, **kw)
    assert resumed.dreamed == straight.dreamed
    assert torch.equal(resumed.result.points.xyz, straight.result.points.xyz)
    nothing = complete_scene(result, path, threshold=0.99, max_views=3, inpainter=inpainter,
                             depth_estimator=estimator)
    assert nothing.dreamed == [] and len(nothing.result.views) == len(result.views)


def test_repaired_video_chains_its_references(tmp_path):
    from dreamer.splats import Gaussians
    from dreamer.splats.video import render_video

    result, world = world_scene(32, 24, yaws=(0.0,))
    g = Gaussians.from_points(result.points, sh_degree=0)
    path = make_trajectory("llff", result.views[0].camera, 3.0, n=5).cameras
    refiner = CountingRefiner(world)
    seen = []
    files = render_video(g, path, tmp_path, name="llff", fps=5, refiner=refiner, reference=result.views[0].image,
                         preview=False, depth=False, on_progress=lambda s, d, t: seen.append(s))
    assert files.repaired is not None and files.repaired.exists() and "repair video" in seen
    assert len(files.coverage) == 5 and all(0.0 < c <= 1.0 for c in files.coverage)
    assert refiner.calls[0][1] is result.views[0].image
    for k in range(1, 5):  # frame k's reference is frame k-1's repaired image
        assert torch.equal(refiner.calls[k][1], refiner.outputs[k - 1])
    assert all(math.isfinite(c) for c in files.coverage)


def test_every_preset_fits_all_repair_rounds_in_its_iterations():
    import dataclasses

    from dreamer.pipeline.presets import PRESETS
    from dreamer.splats.train import _repair_schedule

    fields = {f.name for f in dataclasses.fields(SplatConfig)}
    for name, values in PRESETS.items():
        cfg = SplatConfig(**{k: v for k, v in values.items() if k in fields})
        assert sorted(_repair_schedule(cfg, cfg.repair_rounds).values()) == list(range(cfg.repair_rounds)), name


def test_pseudo_views_carry_the_clouds_depth_where_its_colours_agree(scene):
    """A repaired view's depth is the cloud's closed render where the cloud covers the pixel and
    its colour agrees with the repaired image; where the repair drew something else (here a
    magenta block) the depth is unknown (0)."""
    from dreamer.render import clean_coverage, render_points
    from dreamer.splats.pseudo_views import pseudo_view_depth
    from dreamer.trajectories import orbit_camera

    result, world = scene
    cfg = SplatConfig(depth_weight=0.3, **FAST)
    cam = orbit_camera(result.views[1].camera, 3.0, 4.0, 2.0)
    fixed, masks = clean_coverage(render_points(result.points, cam, splat_scale=1.5, max_splat_px=32.0),
                                  close_px=cfg.path_close_px, grow_px=0)
    image = fixed.image.float().clamp(0, 1).clone()
    image[10:20, 12:30] = torch.tensor([1.0, 0.0, 1.0])
    depth = pseudo_view_depth(result, cam, image, cfg)
    block = torch.zeros_like(masks.known)
    block[10:20, 12:30] = True
    assert (depth[block] == 0).all()
    keep = masks.known & ~block
    assert keep.float().mean() > 0.5 and torch.equal(depth[keep], fixed.depth.float()[keep])
    assert (depth[~masks.known] == 0).all()
    assert pseudo_view_depth(result, cam, image, SplatConfig(repair_depth=False, **FAST)) is None


@pytest.mark.slow  # splat training, 2-3 s
def test_pseudo_view_depth_joins_the_loss_and_a_resumed_run_matches(tmp_path):
    result, world = world_scene(24, 16, yaws=(0.0, 10.0))
    cfg = SplatConfig(**{**REPAIR, "depth_weight": 0.3})
    history = []
    straight = train_gaussians(result, cfg, history=history, refiner=WorldRefiner(world))
    assert any(h["pseudo"] and h["depth_loss"] > 0 for h in history)
    off = []
    train_gaussians(result, SplatConfig(**{**REPAIR, "depth_weight": 0.3, "repair_depth": False}), history=off,
                    refiner=WorldRefiner(world))
    assert all(h["depth_loss"] == 0 for h in off if h["pseudo"])

    class Stop(Exception):
        pass

    def interrupt(stage, done, total):
        if stage == "splats" and done == 25:
            raise Stop

    with pytest.raises(Stop):
        train_gaussians(result, cfg, interrupt, checkpoint_dir=tmp_path, refiner=WorldRefiner(world))
    resumed = train_gaussians(result, cfg, checkpoint_dir=tmp_path, refiner=WorldRefiner(world))
    for a, b in zip(resumed.params().values(), straight.params().values()):
        assert torch.equal(a, b)


def see_through_scene(with_column: bool = False):
    """The procedural world's first view lifted without its column (2.3 m away, a tenth of the
    image) and two cameras orbited 25 degrees, which see the wall behind it, lifted where the
    cloud is empty and not on the column: the cloud shows the wall where the column stands,
    with no hole (``with_column``: the column lifted too, a cloud that lacks nothing there)."""
    from dreamer.render import lift, render_points
    from dreamer.scene import DreamView
    from dreamer.trajectories import orbit_camera
    from dreamer.worlds import ProceduralWorld

    world = ProceduralWorld(0)
    column_id = world.object_names.index("column")
    first = world.first_camera(48, 48)
    truth = world.render(first)
    column = truth.object_id == column_id
    keep = torch.ones_like(column) if with_column else ~column
    points = lift(truth.image, truth.depth, first, keep)
    views = [DreamView(first, truth.image, truth.depth, keep)]
    for yaw in (25.0, -25.0):
        side = orbit_camera(first, center_depth_from(truth.depth), yaw, 0.0)
        seen = world.render(side)
        new = ~render_points(points, side).covered & (with_column or seen.object_id != column_id)
        points = points.cat(lift(seen.image, seen.depth, side, new))
        views.append(DreamView(side, seen.image, seen.depth, new))
    return world, DreamResult(points, views, DreamConfig(joint_refinement=False)), first, column


def _cloud_abs_rel(world, points, camera, where):
    from dreamer.render import clean_coverage, render_points

    fixed, masks = clean_coverage(render_points(points, camera, splat_scale=1.5), close_px=2, grow_px=0)
    truth = world.render(camera).depth
    m = where & masks.known
    return float(((fixed.depth - truth).abs() / truth)[m].mean()), int(m.sum())


def test_completion_lifts_a_surface_the_cloud_shows_through():
    from dreamer.scene.completion import suspect_pixels

    world, result, first, column = see_through_scene()
    before, seen = _cloud_abs_rel(world, result.points, first, column)
    assert before > 0.5 and seen > 0.6 * int(column.sum())  # the wall 6 m away where the column stands, no hole
    refiner = WorldRefiner(world)
    suspect = suspect_pixels(result.points, first, result.config, refiner, generator=torch.Generator().manual_seed(0))
    assert int((suspect & column).sum()) > 0.8 * seen and int((suspect & ~column).sum()) < 0.5 * int(suspect.sum())
    kw = dict(inpainter=WorldInpainter(world), depth_estimator=WorldDepthEstimator(world, seed=1), threshold=0.99,
              max_views=0, refiner=refiner)
    assert complete_scene(result, [first], **kw).result is result  # suspect_views 0: no such round
    state = complete_scene(result, [first], suspect_views=2, **kw)
    assert state.suspect_dreamed == [0] and state.dreamed == []
    view = state.result.views[-1]
    assert view.stats[COMPLETION] and view.stats["suspect_nearer"] > 0.8 * seen
    after, _ = _cloud_abs_rel(world, state.result.points, first, column)
    assert after < 0.2 * before
    added = state.result.points.xyz[len(result.points):]
    # On the column, within the depth estimate's error (10% distortion, an error per object).
    assert float(world.distance_to_surface(added).median()) < 0.1 * float(world.render(first).depth[column].median())
    again = suspect_pixels(state.result.points, first, result.config, refiner,
                           generator=torch.Generator().manual_seed(0))
    assert int((again & column).sum()) < 0.2 * int((suspect & column).sum())


def test_completion_lifts_nothing_where_only_colours_disagree():
    """The cloud lacks nothing: a repair that disagrees with its render (texture, edges) makes
    pixels suspect, but the depth there is the cloud's, so nothing is lifted."""
    world, result, first, column = see_through_scene(with_column=True)
    state = complete_scene(result, [first], inpainter=WorldInpainter(world),
                           depth_estimator=WorldDepthEstimator(world, seed=1), threshold=0.99, max_views=0,
                           refiner=WorldRefiner(world), suspect_views=1, suspect_threshold=0.0)
    assert state.suspect_dreamed == [0]
    view = state.result.views[-1]
    assert view.stats["suspect_pixels"] > 0 and view.stats["suspect_nearer"] == 0


def test_completion_suspect_round_resumes_to_the_same_scene():
    from dreamer.trajectories import orbit_camera

    world, result, first, column = see_through_scene()
    cams = [first] + [orbit_camera(first, 3.0, y, 0.0) for y in (8.0, -8.0)]
    kw = dict(inpainter=WorldInpainter(world), depth_estimator=WorldDepthEstimator(world, seed=1), threshold=0.99,
              max_views=0, refiner=WorldRefiner(world), suspect_views=3, suspect_threshold=0.01)
    states = []
    straight = complete_scene(result, cams, on_view=states.append, **kw)
    assert len(straight.suspect_dreamed) >= 2
    resumed = complete_scene(result, cams, resume=states[0], **kw)
    assert resumed.suspect_dreamed == straight.suspect_dreamed and resumed.suspects == straight.suspects
    assert torch.equal(resumed.result.points.xyz, straight.result.points.xyz)
