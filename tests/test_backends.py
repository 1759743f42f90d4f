"""Learned backends with tiny random models: saved to a folder and loaded back through the same
from_pretrained path a real hub id takes. Never the network (conftest sets HF_HUB_OFFLINE)."""

import dataclasses
import time
import types

import pytest
import torch

from dreamer.backends import DepthEstimator, ImageGenerator, Inpainter
from dreamer.backends.depth import DepthSettings, TransformersDepthEstimator, zoedepth_padding
from dreamer.backends.diffusion import (
    DiffusersImageGenerator,
    DiffusersInpainter,
    DiffusionSettings,
    feather_alpha,
    latent_cell_mask,
    load_diffusers_pipeline,
)
from dreamer.backends.loading import (
    ModelNotAvailable,
    default_dtype,
    is_local_model,
    load_pretrained,
    resolve_device,
    resolve_dtype,
)
from dreamer.backends.model_sets import Backends, ModelConfig, build_backends, clear_backend_cache
from dreamer.backends.tiny import (
    tiny_clip_tokenizer,
    tiny_depth_model,
    tiny_inpaint_pipeline,
    tiny_sd_components,
    tiny_text2img_pipeline,
)
from dreamer.cameras import Camera

FAST = DiffusionSettings(steps=2, device="cpu", feather=3)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads; on a shared 2-core machine torch's spinning worker
    threads made a 2-step inpaint 10x slower (0.34 s instead of 0.03 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def inpaint_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-inpaint")
    tiny_inpaint_pipeline(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def text2img_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-text2img")
    tiny_text2img_pipeline(seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["zoedepth", "depth_anything"])
def depth_dir(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"tiny-{request.param}")
    model, processor = tiny_depth_model(request.param, seed=0)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def inpainter(inpaint_dir):
    return DiffusersInpainter.from_pretrained(str(inpaint_dir), FAST)


def cam(width, height):
    return Camera.from_fov(60.0, width, height)


# ---- tiny models ---------------------------------------------------------------------------------

def test_tiny_components_geometry_and_determinism():
    a = tiny_sd_components(in_channels=9, seed=3)
    b = tiny_sd_components(in_channels=9, seed=3)
    c = tiny_sd_components(in_channels=9, seed=4)
    assert a["unet"].config.in_channels == 9
    assert 2 ** (len(a["vae"].config.block_out_channels) - 1) == 8
    assert all(torch.equal(p, q) for p, q in zip(a["unet"].parameters(), b["unet"].parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a["unet"].parameters(), c["unet"].parameters()))
    with torch.no_grad():
        latent = a["vae"].encode(torch.zeros(1, 3, 48, 64)).latent_dist.mean
    assert latent.shape == (1, 4, 6, 8)
    with pytest.raises(ValueError):
        tiny_sd_components(in_channels=5)


def test_tiny_tokenizer_builds_without_files():
    tok = tiny_clip_tokenizer()
    ids = tok("A cozy Room!", padding="max_length", max_length=tok.model_max_length).input_ids
    assert len(ids) == 77
    assert ids[0] == tok.bos_token_id and tok.eos_token_id in ids
    assert tok.unk_token_id not in ids[1:ids.index(tok.eos_token_id)]


def test_tiny_seed_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_depth_model("zoedepth", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_load_diffusers_pipeline_tiny_and_schedulers():
    pipe = load_diffusers_pipeline("inpaint", "tiny", device="cpu", scheduler="ddim")
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline"
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert type(load_diffusers_pipeline("text2img", "tiny", device="cpu")).__name__ == "StableDiffusionPipeline"
    with pytest.raises(ValueError, match="unknown scheduler"):
        load_diffusers_pipeline("inpaint", "tiny", device="cpu", scheduler="warp-drive")
    img2img = load_diffusers_pipeline("img2img", "tiny", device="cpu")
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    with pytest.raises(ValueError, match="kind"):
        load_diffusers_pipeline("upscale", "tiny")


# ---- inpainting ----------------------------------------------------------------------------------

def test_feather_alpha_and_latent_cells():
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[5, 6] = True
    alpha = feather_alpha(mask, 2)
    assert alpha[5, 6] == 1.0 and alpha[5, 7] == pytest.approx(2 / 3) and alpha[5, 8] == pytest.approx(1 / 3)
    assert alpha[5, 9] == 0.0 and alpha[0, 0] == 0.0
    cells = latent_cell_mask(mask, 8)
    assert cells[0:8, 0:8].all() and int(cells.sum()) == 64


@pytest.mark.parametrize("height,width", [(64, 64), (48, 64)])
def test_inpainter_keeps_known_pixels(inpainter, height, width):
    assert isinstance(inpainter, Inpainter)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(height, width, 3, generator=g)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[10:30, 20:40] = True
    mask[2, 2] = True  # a one-pixel hole must still be filled (the model sees whole latent cells)
    out = inpainter.inpaint(image, mask, "a cozy room", camera=cam(width, height),
                            generator=torch.Generator().manual_seed(0))
    assert out.shape == (height, width, 3) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    far = feather_alpha(mask, FAST.feather) == 0
    assert torch.equal(out[far], image[far])
    assert (out[mask] - image[mask]).abs().mean() > 0.01
    assert not torch.equal(out[2, 2], image[2, 2])
    # Repeated rounds never drift what is known.
    again = inpainter.inpaint(out, mask, "a cozy room", camera=cam(width, height))
    assert torch.equal(again[far], image[far])


def test_inpainter_is_seeded(inpainter):
    image = torch.rand(32, 32, 3)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:24, 8:24] = True
    a = inpainter.inpaint(image, mask, "x", generator=torch.Generator().manual_seed(5))
    b = inpainter.inpaint(image, mask, "x", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_inpainter_validates_inputs(inpainter):
    image = torch.rand(64, 64, 3)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    with pytest.raises(ValueError, match="multiples of 8"):
        inpainter.inpaint(torch.rand(60, 64, 3), torch.ones(60, 64, dtype=torch.bool), "x")
    with pytest.raises(ValueError, match="bool"):
        inpainter.inpaint(image, mask.float(), "x")
    with pytest.raises(ValueError, match=r"\[H,W\]"):
        inpainter.inpaint(image, mask[:32], "x")
    with pytest.raises(ValueError, match=r"\[H,W,3\]"):
        inpainter.inpaint(image[..., :2], mask, "x")
    assert torch.equal(inpainter.inpaint(image, mask, "x"), image)  # nothing to fill


def test_non_finite_pixels_of_the_model_are_an_error_not_a_scene(inpainter):
    """A guidance scale of 1e30 makes the tiny pipeline's pixels NaN (in float16 a VAE's overflow
    does the same): the call fails, naming the cause, instead of handing NaN to the loop (clamping
    keeps NaN, so they were lifted and trained on, and the run ended as done)."""
    image = torch.rand(32, 32, 3)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:24, 8:24] = True
    fine = DiffusersInpainter(inpainter.pipe, dataclasses.replace(FAST, guidance=1e10))
    assert torch.isfinite(fine.inpaint(image, mask, "x", generator=torch.Generator().manual_seed(0))).all()
    huge = DiffusersInpainter(inpainter.pipe, dataclasses.replace(FAST, guidance=1e30))
    with pytest.raises(RuntimeError, match=r"non-finite pixels \(NaN\).*float32.*guidance scale.*1e\+30"):
        huge.inpaint(image, mask, "x", generator=torch.Generator().manual_seed(0))


def test_backends_sharing_a_pipeline_keep_their_schedulers(inpainter, inpaint_dir):
    """Each backend samples with its own scheduler and leaves the shared pipeline as it was."""
    own = inpainter.pipe.scheduler
    euler_a = DiffusionSettings(steps=2, scheduler="euler_a", device="cpu")
    other = DiffusersInpainter(inpainter.pipe, euler_a)
    alone = DiffusersInpainter.from_pretrained(str(inpaint_dir), euler_a)  # a pipeline of its own
    image, mask = torch.rand(32, 32, 3), torch.zeros(32, 32, dtype=torch.bool)
    mask[:8] = True
    shared = other.inpaint(image, mask, "x", generator=torch.Generator().manual_seed(3))
    assert inpainter.pipe.scheduler is own
    assert torch.equal(shared, alone.inpaint(image, mask, "x", generator=torch.Generator().manual_seed(3)))
    first = inpainter.inpaint(image, mask, "x", generator=torch.Generator().manual_seed(3))
    assert inpainter.pipe.scheduler is own and type(own).__name__ == "PNDMScheduler"
    assert not torch.equal(first, shared)  # PNDM, not the other backend's Euler ancestral


def _run_at_once(jobs):
    """Run the callables in threads that start together; return their results (or raise the first error)."""
    import threading

    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def run(i):
        barrier.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as e:  # re-raised below, in the test's thread
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def test_concurrent_calls_on_one_shared_pipeline_match_sequential_ones():
    """Two jobs in threads on one shared pipeline (the app's --concurrency 2): the same images as
    one after the other, and no scheduler state mixed between them (before per-call schedulers,
    this raised IndexError / TypeError inside the scheduler every time)."""
    pipe = tiny_inpaint_pipeline(seed=0)
    settings = DiffusionSettings(steps=4, device="cpu")
    a, b = DiffusersInpainter(pipe, settings), DiffusersInpainter(pipe, dataclasses.replace(settings, scheduler="ddim"))
    image = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[:, 32:] = True

    def job(backend, seed, prompt):
        return lambda: backend.inpaint(image, mask, prompt, generator=torch.Generator().manual_seed(seed))

    jobs = [job(a, 1, "a cozy room"), job(a, 2, "a garden"), job(b, 3, "a beach")]
    sequential = [j() for j in jobs]
    for _ in range(3):
        together = _run_at_once(jobs)
        for s, t in zip(sequential, together):
            assert torch.equal(s, t)
    assert not torch.equal(sequential[0], sequential[1])


# ---- text to image -------------------------------------------------------------------------------

def test_image_generator_from_folder(text2img_dir):
    gen = DiffusersImageGenerator.from_pretrained(str(text2img_dir), FAST)
    assert isinstance(gen, ImageGenerator)
    img = gen.generate("a beach at dusk", width=64, height=48, generator=torch.Generator().manual_seed(0))
    assert img.shape == (48, 64, 3) and img.dtype == torch.float32
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0 and float(img.std()) > 0
    again = gen.generate("a beach at dusk", width=64, height=48, generator=torch.Generator().manual_seed(0))
    assert torch.equal(img, again)
    with pytest.raises(ValueError, match="multiples of 8"):
        gen.generate("x", width=63, height=48)


# ---- depth ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width", [(48, 64), (64, 48), (37, 53)])
def test_depth_from_folder_exact_size(depth_dir, height, width):
    est = TransformersDepthEstimator.from_pretrained(str(depth_dir), DepthSettings(device="cpu"))
    assert isinstance(est, DepthEstimator)
    depth = est.estimate(torch.rand(height, width, 3), camera=cam(width, height))
    assert depth.shape == (height, width) and depth.dtype == torch.float32
    assert bool((depth > 0).all()) and bool(torch.isfinite(depth).all())


def test_depth_validates_input(depth_dir):
    est = TransformersDepthEstimator.from_pretrained(str(depth_dir), DepthSettings(device="cpu"))
    with pytest.raises(ValueError, match=r"\[H,W,3\]"):
        est.estimate(torch.rand(32, 32))
    with pytest.raises(ValueError, match="float"):
        est.estimate(torch.zeros(32, 32, 3, dtype=torch.uint8))


class _EchoDepth(torch.nn.Module):
    """A fake metric depth model: depth = 1 + the red channel of its (un-normalised) input,
    predicted at twice the input size, as ZoeDepth does."""

    def __init__(self, mean=0.5, std=0.5):
        super().__init__()
        self.config = types.SimpleNamespace(model_type="zoedepth")
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.mean, self.std = mean, std

    def forward(self, pixel_values):
        red = pixel_values[:, 0:1] * self.std + self.mean
        up = torch.nn.functional.interpolate(red, scale_factor=2, mode="bilinear", align_corners=False)
        return types.SimpleNamespace(predicted_depth=1.0 + up[:, 0] + 0 * self.anchor)


def test_zoedepth_padding_is_undone_exactly():
    """With an echo model the returned depth must reproduce the image: any error in undoing
    ZoeDepth's reflection padding shows up as a shifted or stretched copy."""
    from transformers import ZoeDepthImageProcessor

    processor = ZoeDepthImageProcessor(size={"height": 96, "width": 128}, ensure_multiple_of=32,
                                       keep_aspect_ratio=True, do_pad=True)
    est = TransformersDepthEstimator(_EchoDepth(), processor, DepthSettings(device="cpu", flip_average=True))
    height, width = 60, 90
    u = (torch.arange(width) + 0.5) / width
    v = (torch.arange(height) + 0.5) / height
    red = 0.2 + 0.6 * (0.5 * u[None, :] + 0.5 * v[:, None] ** 2)
    image = torch.stack([red, torch.zeros_like(red), torch.zeros_like(red)], dim=-1)
    depth = est.estimate(image)
    assert depth.shape == (height, width)
    interior = (slice(3, -3), slice(3, -3))
    assert (depth[interior] - (1.0 + red[interior])).abs().max() < 0.02
    # Without undoing the padding the same check fails: the test can see the bug it guards against.
    pad_h, pad_w = zoedepth_padding(height, width)
    assert pad_h > 5 and pad_w > 5
    naive = torch.nn.functional.interpolate(est._predict(image.numpy())[None, None], size=(height, width),
                                            mode="bilinear")[0, 0]
    assert (naive[interior] - (1.0 + red[interior])).abs().max() > 0.05


def test_relative_depth_models_are_refused():
    model, processor = tiny_depth_model("depth_anything")
    model.config.depth_estimation_type = "relative"
    with pytest.raises(ValueError, match="relative"):
        TransformersDepthEstimator(model, processor)


# ---- missing models ------------------------------------------------------------------------------

MISSING_ID = "dreamer-tests/no-such-model-anywhere"


@pytest.mark.parametrize("load", [
    lambda m: DiffusersInpainter.from_pretrained(m, FAST),
    lambda m: DiffusersImageGenerator.from_pretrained(m, FAST),
    lambda m: TransformersDepthEstimator.from_pretrained(m, DepthSettings(device="cpu")),
], ids=["inpaint", "text2img", "depth"])
def test_missing_models_fail_fast_with_a_hint(load, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    empty = tmp_path / "empty-model-folder"
    empty.mkdir()
    for model, words in [(MISSING_ID, [MISSING_ID, "huggingface-cli download", "HF_HUB_OFFLINE",
                                       str(tmp_path / "hf-home")]),
                         (str(tmp_path / "does" / "not" / "exist"), ["does not exist", "save_pretrained"]),
                         (str(empty), [str(empty), "does not hold"])]:
        t0 = time.perf_counter()
        with pytest.raises(ModelNotAvailable) as info:
            load(model)
        assert time.perf_counter() - t0 < 10.0  # no network retries (they take 25 s and more)
        message = str(info.value)
        for word in words:
            assert word in message, (word, message)
        assert info.value.model == model


def test_uncached_id_without_network_fails_fast(tmp_path, monkeypatch):
    """Not offline, not cached, hub unreachable: no retries for tens of seconds, a clear error."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    calls = []

    def loader(model, local_files_only=False, **kwargs):
        calls.append(local_files_only)
        raise OSError("not cached")

    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailable, match="cannot be reached") as info:
        load_pretrained(loader, MISSING_ID, what="test model")
    assert time.perf_counter() - t0 < 10.0
    assert calls == [True]  # the cache was asked, the network never was
    assert MISSING_ID in str(info.value) and "huggingface-cli download" in str(info.value)


def test_load_pretrained_validates_and_classifies():
    with pytest.raises(ValueError):
        load_pretrained(lambda m, **k: m, "  ")
    assert is_local_model("./models/sd") and is_local_model("/abs/path") and is_local_model("a/b/c")
    assert not is_local_model("org/name")


def test_device_and_dtype_defaults():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected and resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert default_dtype("cpu") == torch.float32
    assert resolve_dtype("fp16", "cpu") == torch.float16 and resolve_dtype("auto", "cpu") == torch.float32
    with pytest.raises(ValueError):
        resolve_dtype("float8", "cpu")
    with pytest.raises(ValueError):
        resolve_device("warp")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")


# ---- model sets ----------------------------------------------------------------------------------

def test_build_backends_caches_models():
    clear_backend_cache()
    config = ModelConfig(models="tiny", steps=2, device="cpu")
    first = build_backends(config)
    assert isinstance(first, Backends)
    assert isinstance(first.inpainter, Inpainter) and isinstance(first.depth_estimator, DepthEstimator)
    assert isinstance(first.image_generator, ImageGenerator) and first.world is None
    assert build_backends(ModelConfig(models="tiny", steps=2, device="cpu")) is first
    other = build_backends(ModelConfig(models="tiny", steps=3, guidance=2.0, device="cpu"))
    assert other is not first and other.inpainter.settings.steps == 3
    assert other.inpainter.pipe is first.inpainter.pipe  # sampling settings do not reload weights
    assert other.depth_estimator is first.depth_estimator
    image = first.image_generator.generate("x", width=32, height=32)
    depth = first.depth_estimator.estimate(image, camera=cam(32, 32))
    assert image.shape == (32, 32, 3) and depth.shape == (32, 32)
    clear_backend_cache()
    assert build_backends(config) is not first


def test_model_config_validates():
    with pytest.raises(ValueError, match="models"):
        ModelConfig(models="huge")
    with pytest.raises(ValueError, match="scale_range"):
        ModelConfig(scale_range=(2.0, 1.0))
    with pytest.raises(ValueError):
        build_backends("tiny")


def test_build_backends_synthetic():
    pytest.importorskip("dreamer.backends.synthetic")
    config = ModelConfig(models="synthetic", world_seed=3)
    backends = build_backends(config)
    assert backends.world is not None and backends.world.seed == 3
    assert isinstance(backends.inpainter, Inpainter) and isinstance(backends.depth_estimator, DepthEstimator)
    assert isinstance(backends.image_generator, ImageGenerator)


def test_two_dream_jobs_in_threads_on_shared_tiny_models_match_one_after_the_other():
    """Two whole dream loops (the app's jobs) at once on the one cached set of tiny models: the
    same views and points as running them one after the other."""
    from dreamer import DreamConfig, dream
    from dreamer.trajectories import make_trajectory

    config = ModelConfig(models="tiny", steps=2, device="cpu")
    backends = build_backends(config)
    assert build_backends(config) is backends  # one shared set, as the app's jobs get
    cam0 = Camera.from_fov(60.0, 64, 64)
    image = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    depth = torch.full((64, 64), 2.0)
    cams = make_trajectory("lookaround", cam0, 2.0, n=3).cameras

    def job(prompt, seed):
        return lambda: dream(image, cams, prompt, inpainter=backends.inpainter,
                             depth_estimator=backends.depth_estimator, depth=depth,
                             config=DreamConfig(seed=seed, joint_refinement=False))

    jobs = [job("a cozy room", 1), job("a garden", 2)]
    sequential = [j() for j in jobs]
    together = _run_at_once(jobs)
    for s, t in zip(sequential, together):
        assert torch.equal(s.points.xyz, t.points.xyz) and torch.equal(s.points.rgb, t.points.rgb)
        for a, b in zip(s.views, t.views):
            assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    assert not torch.equal(sequential[0].views[1].image, sequential[1].views[1].image)
