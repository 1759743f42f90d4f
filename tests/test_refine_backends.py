"""The refine step's repair models: the procedural world's imperfect refiner, the diffusers
image-to-image refiner (tiny weights saved to a folder and loaded back, the real-model path),
colour matching, and clear failures."""

import pytest
import torch

from dreamer.backends import Refiner
from dreamer.backends.loading import ModelNotAvailable
from dreamer.backends.refiners import DiffusersRefiner, match_colors, refine_settings
from dreamer.backends.synthetic import WorldRefiner, gaussian_blur
from dreamer.io import read_json
from dreamer.worlds import ProceduralWorld


@pytest.fixture(scope="module")
def world():
    return ProceduralWorld(0)


def _render_and_truth(world, size=32):
    cam = world.first_camera(size, size)
    truth = world.render(cam).image
    g = torch.Generator().manual_seed(1)
    render = (truth + 0.3 * torch.randn(truth.shape, generator=g)).clamp(0, 1)
    render[8:16, 8:20] = 0.0  # a hole
    return cam, render, truth


def test_world_refiner_moves_the_documented_fraction_toward_the_truth(world):
    cam, render, truth = _render_and_truth(world)
    exact = WorldRefiner(world, fraction=0.6, blur=0.0, noise=0.0)
    assert isinstance(exact, Refiner)
    out = exact.refine(render, camera=cam)
    assert torch.allclose(out, (render + 0.6 * (truth - render)).clamp(0, 1), atol=1e-6)
    assert torch.allclose(out - truth, 0.4 * (render - truth), atol=1e-5)  # 40% of the error is left


def test_world_refiner_is_imperfect_and_repeatable(world):
    cam, render, truth = _render_and_truth(world)
    refiner = WorldRefiner(world)  # 70%, blur 1 px, noise 0.02
    out = refiner.refine(render, camera=cam)
    err_before = float((render - truth).abs().mean())
    err_after = float((out - truth).abs().mean())
    assert err_after < 0.5 * err_before  # a real repair...
    assert err_after > 0.01  # ...that is not the truth
    assert torch.equal(out, refiner.refine(render, camera=cam))  # same camera, same answer
    g = torch.Generator().manual_seed(5)
    other = refiner.refine(render, camera=cam, generator=g)
    assert not torch.equal(out, other) and float((other - out).abs().max()) < 0.2  # only the noise differs
    with pytest.raises(TypeError, match="camera"):
        refiner.refine(render)
    with pytest.raises(ValueError, match="fraction"):
        WorldRefiner(world, fraction=1.5)


def test_gaussian_blur_keeps_constants_and_the_mean():
    flat = torch.full((9, 11, 3), 0.25)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat)
    x = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0))
    y = gaussian_blur(x, 1.0)
    assert y.shape == x.shape and y.std() < x.std()
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_match_colors_gives_the_target_statistics():
    g = torch.Generator().manual_seed(0)
    image = 0.4 + 0.1 * torch.rand(20, 24, 3, generator=g)
    target = 0.5 + 0.2 * (torch.rand(12, 12, 3, generator=g) - 0.5)
    out = match_colors(image, target)
    for c in range(3):
        assert abs(float(out[..., c].mean() - target[..., c].mean())) < 1e-5
        assert abs(float(out[..., c].std(unbiased=False) - target[..., c].std(unbiased=False))) < 1e-4


@pytest.fixture(scope="module")
def tiny_refiner_folder(tmp_path_factory):
    from dreamer.backends.tiny import tiny_img2img_pipeline

    folder = tmp_path_factory.mktemp("tiny-img2img")
    tiny_img2img_pipeline().save_pretrained(folder)
    return folder


def test_diffusers_refiner_runs_from_a_saved_folder(tiny_refiner_folder):
    """The real-model path end to end: AutoPipelineForImage2Image.from_pretrained on a folder,
    one denoising step for SD-Turbo's 2 steps x strength 0.5, colours matched to the reference."""
    refiner = DiffusersRefiner.from_pretrained(str(tiny_refiner_folder), refine_settings(device="cpu"))
    assert isinstance(refiner, Refiner) and type(refiner.pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    calls = []
    hook = refiner.pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    g = torch.Generator().manual_seed(0)
    render = torch.rand(32, 48, 3, generator=g)
    reference = 0.3 + 0.2 * torch.rand(16, 16, 3, generator=g)
    try:
        out = refiner.refine(render, reference=reference, generator=torch.Generator().manual_seed(1))
    finally:
        hook.remove()
    assert len(calls) == 1
    assert out.shape == render.shape and out.dtype == torch.float32 and 0 <= float(out.min()) <= float(out.max()) <= 1
    assert torch.allclose(out.mean((0, 1)), reference.mean((0, 1)), atol=0.02)
    again = refiner.refine(render, reference=reference, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="multiples of 8"):
        refiner.refine(torch.rand(30, 48, 3))
    assert refiner.with_prompt("a room").prompt == "a room" and refiner.with_prompt("x").pipe is refiner.pipe


def test_missing_refine_model_names_the_id():
    with pytest.raises(ModelNotAvailable, match="no-org/no-such-refiner"):
        DiffusersRefiner.from_pretrained("no-org/no-such-refiner", refine_settings(device="cpu"))


def test_model_sets_build_the_refiner_of_each_set(world):
    from dreamer.backends.model_sets import ModelConfig, build_refiner
    from dreamer.pipeline.settings import RefineConfig

    rc = RefineConfig(refine=True, refine_fraction=0.5, refine_noise=0.0)
    synthetic = build_refiner(ModelConfig(models="synthetic"), rc, world=world)
    assert isinstance(synthetic, WorldRefiner) and synthetic.fraction == 0.5
    tiny = build_refiner(ModelConfig(models="tiny", device="cpu"), rc, prompt="a room")
    assert isinstance(tiny, DiffusersRefiner) and tiny.prompt == "a room"
    assert tiny.refine(torch.rand(32, 32, 3)).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="world"):
        build_refiner(ModelConfig(models="synthetic"), rc)


def test_splat_training_repairs_novel_views_with_the_saved_diffusers_model(tiny_refiner_folder, tmp_path):
    """The refine step's training loop on the real-model path: novel views rendered, repaired by
    the image-to-image pipeline loaded from a folder, trained on; the model is in the stage's
    fingerprint (a rerun with it loads the finished stage)."""
    from dreamer.splats import SplatConfig, train_gaussians
    from dreamer.splats.train import repair_cameras
    from test_splats_train import FAST, world_scene

    result, _ = world_scene(24, 16, yaws=(0.0, 10.0))
    cfg = SplatConfig(iterations=12, densify=False, repair_start=3, repair_every=5, repair_rounds=2,
                      repair_views=2, **FAST)
    refiner = DiffusersRefiner.from_pretrained(str(tiny_refiner_folder), refine_settings(device="cpu"))
    calls = []
    hook = refiner.pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    history = []
    try:
        train_gaussians(result, cfg, checkpoint_dir=tmp_path, history=history, refiner=refiner)
    finally:
        hook.remove()
    expected = sum(len(ring) for ring in repair_cameras(result, cfg))  # 1 between the views, then 2
    assert expected == 3 and len(calls) == expected  # one denoising step per repaired view
    assert read_json(tmp_path / "done.json")["repaired_views"] == expected
    assert read_json(tmp_path / "config.json")["refiner"]["model"] == str(tiny_refiner_folder)
    assert any(h["pseudo"] for h in history) and not any(h["pseudo"] for h in history[:3])
    seen = []
    train_gaussians(result, cfg, lambda s, d, t: seen.append(s), checkpoint_dir=tmp_path, refiner=refiner)
    assert "repair" not in seen  # finished: loaded, nothing repaired again
