"""Training Gaussian splats on a small scene of the procedural world: the loss falls, the PSNR on
a held-out camera beats the point cloud's, densification works on CPU, the masked loss,
checkpoints and resuming, bad inputs."""

import copy
import json

import pytest
import torch

from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.render import lift, render_points
from dreamer.scene import DreamResult, DreamView
from dreamer.splats import Gaussians, SplatConfig, SplatTrainingError, build_training_views, train_gaussians
from dreamer.splats.losses import masked_psnr
from dreamer.trajectories import center_depth_from, orbit_camera

world_mod = pytest.importorskip("dreamer.worlds")

# PSNR (dB) on the held-out camera of the training test: measured 30.2 dB after 150 iterations
# (the point cloud rendered with render_points: 25.8 dB); see bench/bench_splats.py for the
# figures on a larger scene.
MIN_PSNR = 28.0


def world_scene(width=48, height=36, yaws=(-12.0, 0.0, 12.0), pivot=3.0, seed=0) -> tuple[DreamResult, object]:
    """A DreamResult made from the procedural world's ground truth: the views are true renders,
    the first view is lifted whole and every later view adds the pixels the cloud does not cover
    yet (what the dream loop does, without its errors)."""
    world = world_mod.ProceduralWorld(seed)
    first = world.first_camera(width, height)
    cams = [orbit_camera(first, pivot, y, 0.0) if y else first for y in yaws]
    views, points = [], None
    for cam in cams:
        truth = world.render(cam)
        mask = torch.ones(height, width, dtype=torch.bool) if points is None else ~render_points(points, cam).covered
        new = lift(truth.image, truth.depth, cam, mask)
        points = new if points is None else points.cat(new)
        views.append(DreamView(cam, truth.image, truth.depth, mask))
    return DreamResult(points, views), world


@pytest.fixture(scope="module")
def scene():
    return world_scene()


FAST = dict(device="cpu", sh_degree=1, sh_degree_interval=50, log_every=1000)


@pytest.mark.slow
def test_training_reduces_the_loss_and_beats_the_points(scene):
    result, world = scene
    history = []
    cfg = SplatConfig(iterations=150, refine_start_iter=40, refine_every=40, refine_stop_iter=130, **FAST)
    g = train_gaussians(result, cfg, history=history)
    assert len(history) == 150
    first = sum(h["loss"] for h in history[:15]) / 15
    last = sum(h["loss"] for h in history[-15:]) / 15
    assert last < 0.7 * first, (first, last)
    assert len(g) != len(result.points)  # densification / pruning ran on CPU
    held_out = orbit_camera(result.views[0].camera, 3.0, 6.0, 3.0)
    truth = world.render(held_out).image
    rgb, depth, alpha = g.render(held_out)
    psnr = masked_psnr(rgb, truth)
    psnr_points = masked_psnr(render_points(result.points, held_out).image, truth)
    assert psnr > MIN_PSNR and psnr > psnr_points + 2.0, (psnr, psnr_points)
    assert float(alpha.mean()) > 0.95


def test_training_views_and_masks(scene):
    result, _ = scene
    cfg = SplatConfig(**FAST)
    views = build_training_views(result, cfg)
    assert len(views) == 3 * 5
    dreamed = [v for v in views if not v.extra]
    extra = [v for v in views if v.extra]
    assert all(v.mask is None for v in dreamed)
    assert all(v.mask is not None and v.mask.dtype == torch.bool for v in extra)
    assert all(0 < v.mask.float().mean() < 1 for v in extra)  # the orbits see past the cloud's edge
    # Each extra view orbits its dreamed camera's pivot: the pivot stays on the optical axis.
    d0 = result.views[1]
    pivot = d0.camera.center + d0.camera.forward * center_depth_from(d0.depth)
    for v in [v for v in extra if v.source == 1]:
        to_pivot = pivot - v.camera.center
        cos = float(torch.dot(to_pivot / to_pivot.norm(), v.camera.forward))
        assert cos > 0.99999
        assert abs(float((v.camera.center - d0.camera.center).norm())) > 1e-3
    unmasked = build_training_views(result, SplatConfig(masked=False, **FAST))
    assert all(v.mask is None for v in unmasked)
    assert len(build_training_views(result, SplatConfig(extra_views=False, **FAST))) == 3
    assert len(build_training_views(result, SplatConfig(extra_yaws=(), extra_pitches=(), **FAST))) == 3


def test_masked_pixels_get_no_gradient_in_training(scene):
    """Through the training loss: the gradients w.r.t. the rendered image and depth are exactly
    0 on the extra views' holes."""
    from dreamer.splats.train import _loss

    result, _ = scene
    cfg = SplatConfig(depth_weight=0.5, **FAST)
    view = next(v for v in build_training_views(result, cfg) if v.extra)
    init = Gaussians.from_points(result.points)
    g = Gaussians(*(t.clone().requires_grad_(True) for t in init.params().values()))
    out = g.rasterize(view.camera)
    out.rgb.retain_grad()
    out.depth.retain_grad()
    loss, _, _, depth_loss = _loss(out, view, cfg)
    loss.backward()
    hole = ~view.mask
    assert hole.any() and (out.alpha[hole] > 0.1).any()  # splats do render into the holes...
    assert (out.rgb.grad[hole] == 0).all()  # ...and nothing pulls them there
    assert (out.depth.grad[hole] == 0).all()
    assert out.rgb.grad[view.mask].abs().sum() > 0
    assert depth_loss > 0 and out.depth.grad[view.mask].abs().sum() > 0


def _tiny_scene():
    return world_scene(24, 18, yaws=(0.0, 10.0))[0]


TINY = dict(iterations=30, checkpoint_every=10, refine_start_iter=4, refine_every=5, refine_stop_iter=25, **FAST)


@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_result(tmp_path):
    result = _tiny_scene()
    cfg = SplatConfig(**TINY)
    straight = train_gaussians(result, cfg)

    class Stop(Exception):
        pass

    def interrupt(stage, done, total):
        if stage == "splats" and done == 25:
            raise Stop

    with pytest.raises(Stop):
        train_gaussians(result, cfg, interrupt, checkpoint_dir=tmp_path)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["iteration"] == 20
    assert not (tmp_path / "done.json").exists()
    seen = []
    resumed = train_gaussians(result, cfg, lambda s, d, t: seen.append((s, d)), checkpoint_dir=tmp_path)
    assert [d for s, d in seen if s == "splats"] == list(range(21, 31))  # only the missing iterations
    assert len(resumed) == len(straight)
    for a, b in zip(resumed.params().values(), straight.params().values()):
        assert torch.equal(a, b)  # bit for bit: same views, same splits, same optimizer state
    marker = json.loads((tmp_path / "done.json").read_text())
    assert marker["iterations"] == 30 and marker["gaussians"] == len(resumed)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["iterations"] == 30

    # Finished: a rerun loads the result and trains nothing.
    seen.clear()
    again = train_gaussians(result, cfg, lambda s, d, t: seen.append((s, d)), checkpoint_dir=tmp_path)
    assert seen == [("splats", 30)]
    assert all(torch.equal(a, b) for a, b in zip(again.params().values(), resumed.params().values()))

    # Other settings: the stale marker and checkpoint are not reused.
    seen.clear()
    other = SplatConfig(**{**TINY, "iterations": 12})
    train_gaussians(result, other, lambda s, d, t: seen.append((s, d)), checkpoint_dir=tmp_path)
    assert [d for s, d in seen if s == "splats"] == list(range(1, 13))
    assert json.loads((tmp_path / "done.json").read_text())["iterations"] == 12


def test_fine_tuning_starts_from_the_given_gaussians(tmp_path):
    """``init``: training continues from trained Gaussians (their count, their loss), at their
    full SH degree from the first iteration, and the checkpoint fingerprint knows the init."""
    result = _tiny_scene()
    cfg = SplatConfig(**{**TINY, "densify": False})
    scratch, trained = [], train_gaussians(result, cfg)
    train_gaussians(result, SplatConfig(**{**TINY, "densify": False, "iterations": 1}), history=scratch)
    extra = Gaussians.from_points(result.points.select(torch.arange(5)), sh_degree=1)
    init = Gaussians(*(torch.cat([getattr(trained, f), getattr(extra, f)])
                       for f in ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")))
    tuned_history = []
    tuned = train_gaussians(result, SplatConfig(**{**TINY, "densify": False, "iterations": 5}), init=init,
                            history=tuned_history, checkpoint_dir=tmp_path)
    assert len(tuned) == len(trained) + 5 != len(result.points)
    assert tuned_history[0]["loss"] < 0.8 * scratch[0]["loss"]  # it starts where the training ended
    assert not torch.equal(tuned.shN, init.shN)  # degree 1 is in use at once (trained.shN was all 0)
    fp = json.loads((tmp_path / "done.json").read_text())["fingerprint"]
    train_gaussians(result, SplatConfig(**{**TINY, "densify": False, "iterations": 5}), init=trained,
                    checkpoint_dir=tmp_path)
    assert json.loads((tmp_path / "done.json").read_text())["fingerprint"] != fp
    with pytest.raises(ValueError, match="init has SH degree 1 but config.sh_degree is 3"):
        train_gaussians(result, SplatConfig(**{**TINY, "sh_degree": 3}), init=trained)


def test_nan_loss_stops_with_the_iteration(monkeypatch):
    import dreamer.splats.train as T

    result = _tiny_scene()
    real = T._loss
    calls = {"n": 0}

    def poisoned(out, view, config, background=None):
        calls["n"] += 1
        total, l1, ssim, depth = real(out, view, config, background)
        return (total * float("nan") if calls["n"] == 4 else total), l1, ssim, depth

    monkeypatch.setattr(T, "_loss", poisoned)
    with pytest.raises(SplatTrainingError, match="iteration 3"):
        train_gaussians(result, SplatConfig(iterations=10, **FAST))


def test_bad_inputs(scene):
    result, _ = scene
    with pytest.raises(ValueError, match="iterations"):
        SplatConfig(iterations=0)
    with pytest.raises(ValueError, match="pair up"):
        SplatConfig(extra_yaws=(5.0,), extra_pitches=())
    with pytest.raises(ValueError, match="init_opacity"):
        SplatConfig(init_opacity=0.0)
    with pytest.raises(ValueError, match="sh_degree"):
        SplatConfig(sh_degree=4)
    empty = DreamResult(PointCloud.empty(), result.views)
    with pytest.raises(ValueError, match="empty point cloud"):
        train_gaussians(empty, SplatConfig(**FAST))
    with pytest.raises(ValueError, match="no views"):
        train_gaussians(DreamResult(result.points, []), SplatConfig(**FAST))
    v = result.views[0]
    nan_image = v.image.clone()
    nan_image[0, 0, 0] = float("nan")
    bad = DreamResult(result.points, [DreamView(v.camera, nan_image, v.depth, v.mask)])
    with pytest.raises(ValueError, match="non-finite"):
        train_gaussians(bad, SplatConfig(**FAST))
    small = DreamResult(result.points, [DreamView(v.camera, v.image[:10], v.depth, v.mask)])
    with pytest.raises(ValueError, match="size"):
        train_gaussians(small, SplatConfig(**FAST))
    with pytest.raises(TypeError, match="SplatConfig"):
        train_gaussians(result, {"iterations": 3})


def test_config_round_trips_through_a_dict():
    """The lead's CLI rebuilds configs from saved JSON (lists for tuples)."""
    from dreamer.configs import dataclass_from_dict

    cfg = SplatConfig(iterations=7, extra_yaws=(3.0, -3.0), extra_pitches=(1.0, -1.0))
    back = dataclass_from_dict(SplatConfig, json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


def test_camera_size_is_checked_at_render():
    g = Gaussians.from_points(PointCloud(torch.tensor([[0.0, 0.0, 2.0]]), torch.rand(1, 3), torch.tensor([0.1])))
    with pytest.raises(ValueError, match="positive integer"):
        g.render(Camera(torch.eye(3) * 10, torch.eye(4), 8, 0))


def test_skipped_sh_steps_equal_zero_gradient_steps():
    """At SH degree 0 the higher coefficients get no gradient and their Adam step is skipped
    (only counted): the parameters afterwards are exactly those of Adam stepped with zero
    gradients all along, for a fresh run and for one resumed from a checkpoint."""
    from dreamer.splats.train import _adam, _adam_steps

    g = torch.Generator().manual_seed(0)
    start = {"sh0": torch.randn(50, 1, 3, generator=g), "shN": torch.randn(50, 3, 3, generator=g)}
    grads = [{k: torch.randn(v.shape, generator=g) for k, v in start.items()} for _ in range(8)]
    degree = [0, 0, 0, 1, 1, 1, 1, 1]  # the degree rises at iteration 3

    def run(skip: bool, first: int = 0, state=None):
        params = {k: torch.nn.Parameter(v.clone()) for k, v in (start if state is None else state["params"]).items()}
        opts = {k: _adam(p, 1e-2) for k, p in params.items()}
        saved = None
        if state is not None:
            for k, o in opts.items():
                o.load_state_dict(state["opts"][k])
        for it in range(first, 8):
            deg = degree[it]
            params["sh0"].grad = grads[it]["sh0"].clone()
            if deg > 0:
                params["shN"].grad = grads[it]["shN"].clone()
            elif not skip:
                params["shN"].grad = torch.zeros_like(params["shN"])
            if skip:
                _adam_steps(params, opts, it, deg)
            else:
                for o in opts.values():
                    o.step()
                    o.zero_grad(set_to_none=True)
            if it == 1:
                saved = {"params": {k: p.detach().clone() for k, p in params.items()},
                         "opts": {k: copy.deepcopy(o.state_dict()) for k, o in opts.items()}}
        return params, saved

    naive, _ = run(skip=False)
    skipped, checkpoint = run(skip=True)
    assert not checkpoint["opts"]["shN"]["state"]  # no Adam pass over shN while it had no gradient
    resumed, _ = run(skip=True, first=2, state=checkpoint)
    for k in start:
        assert torch.equal(naive[k], skipped[k]), k
        assert torch.equal(naive[k], resumed[k]), k
    assert not torch.equal(naive["shN"], start["shN"])  # shN did train after the degree rose


@pytest.mark.slow  # three short trainings (about 3 s)
def test_a_prune_that_would_remove_every_gaussian_keeps_them(caplog):
    """prune_opa above every Gaussian's opacity pruned them all and training stopped with an error
    (at a refine step, possibly an hour into a run, the scene's splats lost). The prune keeps them
    instead, with one warning naming the settings: the training is the one that prunes nothing
    (prune_opa 0), Gaussian for Gaussian; a prune that leaves some keeps working."""
    result = _tiny_scene()
    strict = dict(TINY, iterations=16, refine_stop_iter=16)
    with caplog.at_level("WARNING", logger="dreamer.splats.train"):
        kept = train_gaussians(result, SplatConfig(**strict, prune_opa=0.99))
    warnings = [r.getMessage() for r in caplog.records if "pruning would remove all" in r.getMessage()]
    assert len(warnings) == 1 and "prune_opa 0.99" in warnings[0] and "iteration 5" in warnings[0]
    unpruned = train_gaussians(result, SplatConfig(**strict, prune_opa=0.0))
    assert len(kept) > len(result.points) // 8  # grown, not emptied
    for a, b in zip(kept.params().values(), unpruned.params().values(), strict=True):
        assert torch.equal(a, b)
    some = train_gaussians(result, SplatConfig(**strict, prune_opa=0.4999))  # init 0.5: those that faded go
    assert 0 < len(some) < len(unpruned)
