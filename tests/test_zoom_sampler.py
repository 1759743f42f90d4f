"""The joint zoom sampler (zoom/sampler.py): scheduler math, oracle denoisers, a
linear fake VAE, and tiny random-weight diffusers models end to end. CPU, no weights."""

import math
import pytest
import torch

from zoom import consistency_error, sample_zoom_stack
from zoom.photo import photo_psnr, prepare_photo
from zoom.codecs import IdentityCodec, VaeCodec
from zoom.sampler import sample_with_denoiser
from zoom.schedule import Schedule, ddpm_step, model_output_to_x0
from zoom.stack import max_paste_depth, render_stack, stack_from_image, to_channels_first
from zoom.testing import LinearVAE

from test_zoom import procedural_image

def DDIMScheduler(*args, **kwargs):  # noqa: N802 - diffusers' class, imported when a test needs it
    from diffusers import DDIMScheduler

    return DDIMScheduler(*args, **kwargs)


def tiny_sd_components(**kwargs):
    # diffusers' models are imported here, not at collection: importing them takes seconds
    from dreamer.backends.tiny import tiny_sd_components

    return tiny_sd_components(**kwargs)


SD_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                   clip_sample=False)


@pytest.fixture(scope="module")
def tiny_pipe():
    from dreamer.backends.tiny import tiny_text2img_pipeline

    return tiny_text2img_pipeline()


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _photo(size=64):
    t = torch.linspace(0, 1, size)
    y, x = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([x, y, 0.5 + 0.4 * torch.sin(6 * x)], dim=-1)  # [H,W,3]


# ----------------------------------------------------------------------------- scheduler math
@pytest.mark.parametrize("config", [dict(SD_SCHEDULE, set_alpha_to_one=False), dict(clip_sample=False)],
                         ids=["sd15", "default"])
def test_ddpm_step_matches_ddim_eta1_with_variance_noise(config):
    steps = 7
    ref = DDIMScheduler(prediction_type="sample", **config)
    ref.set_timesteps(steps)
    sched = Schedule.from_scheduler(ref, steps)
    assert sched.timesteps == tuple(int(t) for t in ref.timesteps)
    g = _gen(0)
    z = torch.randn(2, 4, 8, 8, generator=g)
    for t in sched.timesteps:
        x0 = torch.randn(2, 4, 8, 8, generator=g)
        noise = torch.randn(2, 4, 8, 8, generator=g)
        expected = ref.step(x0, t, z, eta=1.0, variance_noise=noise).prev_sample
        ours = ddpm_step(x0, z, sched.alpha(t), sched.alpha_prev(t), noise)
        assert (ours - expected).abs().max() < 1e-4  # diffusers keeps alphas in fp32, we in fp64
        # the DDPM posterior form of the notes: mu = c0 x0 + ct z, sigma^2 = (1-a')/(1-a) beta
        a, a_prev = sched.alpha(t), sched.alpha_prev(t)
        beta = 1 - a / a_prev
        mu = math.sqrt(a_prev) * beta / (1 - a) * x0 + math.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * z
        sigma = math.sqrt((1 - a_prev) / (1 - a) * beta)
        assert (ours - (mu + sigma * noise)).abs().max() < 1e-5
        z = ours


def test_model_output_conversions_invert_the_forward_process():
    g = _gen(1)
    x0, eps = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    a = 0.37
    z = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    v = math.sqrt(a) * eps - math.sqrt(1 - a) * x0
    assert (model_output_to_x0(eps, z, a, "epsilon") - x0).abs().max() < 1e-5
    assert (model_output_to_x0(v, z, a, "v_prediction") - x0).abs().max() < 1e-5
    with pytest.raises(ValueError):
        model_output_to_x0(v, z, a, "flow")


# ----------------------------------------------------------------------------- T5 oracle
@pytest.mark.parametrize("steps", [1, 3, 10])
@pytest.mark.parametrize("p", [2, 4])
def test_oracle_denoiser_returns_the_true_stack(steps, p):
    n = 3 if p == 2 else 2
    truth = stack_from_image(procedural_image(32 * p ** (n - 1)), n, p=p).float()
    sched = Schedule.from_scheduler(DDIMScheduler(**SD_SCHEDULE, set_alpha_to_one=True), steps)
    levels, raw = sample_with_denoiser(lambda z, t: truth, IdentityCodec(), sched, num_levels=n,
                                       latent_shape=truth.shape[1:], p=p, generator=_gen(0))
    assert (levels - truth).abs().max() < 1e-4
    assert (raw - truth).abs().max() < 1e-4


# ----------------------------------------------------------------------------- T6 Gaussian prior
def _gaussian_prior(mu, s, steps):
    """Schedule, MMSE denoiser of x ~ N(mu, s^2) and the exact mean and variance of the
    sampler's output (the step is linear in z, so they follow a scalar recurrence)."""
    sched = Schedule.from_scheduler(DDIMScheduler(**SD_SCHEDULE, set_alpha_to_one=False), steps)

    def gain(t):
        a = sched.alpha(t)
        return math.sqrt(a) * s * s / (a * s * s + 1 - a)

    def denoise(z, t):
        return mu + gain(t) * (z - math.sqrt(sched.alpha(t)) * mu)

    mean, var = 0.0, 1.0
    for t in sched.timesteps:
        a, a_prev = sched.alpha(t), sched.alpha_prev(t)
        v = (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        k2 = math.sqrt(1 - a_prev - v) / math.sqrt(1 - a)
        k1 = math.sqrt(a_prev) - k2 * math.sqrt(a)
        g = gain(t)
        mean = (k1 * g + k2) * mean + k1 * mu * (1 - g * math.sqrt(a))
        var = (k1 * g + k2) ** 2 * var + v
    return sched, denoise, mean, var


def test_analytic_gaussian_prior_gives_the_exact_discrete_chain_statistics():
    """x ~ N(mu, s^2) per element: checks the schedule, the step and the noise together."""
    mu, s = 0.3, 0.5
    sched, denoise, mean, var = _gaussian_prior(mu, s, 25)
    levels, _ = sample_with_denoiser(denoise, IdentityCodec(), sched, num_levels=1, latent_shape=(4, 64, 64),
                                     generator=_gen(0), clamp=None)
    assert abs(float(levels.mean()) - mean) < 0.02
    assert abs(float(levels.var()) / var - 1) < 0.05
    # plugging the posterior mean in loses variance at few steps (0.18 at 25 steps); the chain
    # approaches the prior itself as the steps grow
    _, _, mean_many, var_many = _gaussian_prior(mu, s, 500)
    assert abs(mean_many - mu) < 0.005 and abs(var_many / (s * s) - 1) < 0.04
    # N > 1: the output is consistent by construction, the mean is kept
    levels, raw = sample_with_denoiser(denoise, IdentityCodec(), sched, num_levels=3, latent_shape=(4, 32, 32),
                                       generator=_gen(0), clamp=None)
    assert consistency_error(levels).max() < 1e-6
    assert abs(float(levels.mean()) - mean) < 0.03


# ----------------------------------------------------------------------------- T7 linear VAE
def test_linear_vae_pixel_paste_with_residual_equals_latent_paste():
    """With a linear VAE, re-encoding the pixel-space render plus the rendered residual is
    exactly the latent-space render, because every pasted tile is latent-aligned."""
    codec = VaeCodec(LinearVAE())
    p, n, h = 2, 4, 8
    depth = max_paste_depth(h, h, p, min_size=2)
    x0 = torch.randn(n, 4, h, h, generator=_gen(2))
    pixels = codec.decode(x0)  # clamps to [0,1]: the residual carries what the clamp removed
    delta = x0 - codec.encode(pixels)
    ours = codec.encode(render_stack(pixels, p=p, max_depth=depth)) + render_stack(delta, p=p, max_depth=depth)
    assert (ours - render_stack(x0, p=p, max_depth=depth)).abs().max() < 1e-5
    # one level deeper the pixel tile (8 px at offset 28) straddles latents: no longer exact
    deeper = codec.encode(render_stack(pixels, p=p, max_depth=depth + 1)) + render_stack(delta, p=p, max_depth=depth)
    assert (deeper - render_stack(x0, p=p, max_depth=depth)).abs().max() > 1e-3


# ----------------------------------------------------------------------------- T8 tiny models
def _decoded_agreement(vae):
    """An ``on_step`` hook recording how far the levels of each step's raw prediction disagree."""
    errors = []

    def on_step(k, x0):
        with torch.no_grad():
            pixels = vae.decode(x0 / vae.config.scaling_factor).sample.float()
        errors.append(float(consistency_error(pixels, p=2).mean()))

    return errors, on_step


@pytest.mark.slow
def test_tiny_pipeline_three_levels_end_to_end(tiny_pipe):
    calls = []
    prompts = ["a galaxy", "a solar system", "a planet"]
    kw = dict(steps=4, guidance=3.0, height=64, width=64)
    joint_err, on_step = _decoded_agreement(tiny_pipe.vae)
    r = sample_zoom_stack(tiny_pipe, prompts, generator=_gen(0), on_step=on_step,
                          on_progress=lambda *a: calls.append(a), **kw)
    assert r.levels.shape == (3, 64, 64, 3) and r.raw.shape == (3, 64, 64, 3)
    assert r.levels.dtype == torch.float32
    assert torch.isfinite(r.levels).all() and torch.isfinite(r.raw).all()
    assert r.levels.min() >= 0 and r.levels.max() <= 1
    assert r.settings["paste_depth"] == 2 and r.settings["latent_size"] == [8, 8]
    assert calls[-1] == ("decode", 1, 1) and ("denoise", 4, 4) in calls
    # The denoiser's own predictions come to agree across levels as joint sampling proceeds
    # (measured 0.369 -> 0.314); sampled independently they do not (0.370 -> 0.363).
    indep_err, on_step = _decoded_agreement(tiny_pipe.vae)
    sample_zoom_stack(tiny_pipe, prompts, generator=_gen(0), joint=False, on_step=on_step, **kw)
    assert len(joint_err) == 4 and joint_err[-1] < 0.9 * joint_err[0], joint_err
    assert joint_err[-1] < 0.9 * indep_err[-1], (joint_err, indep_err)
    again = sample_zoom_stack(tiny_pipe, prompts, generator=_gen(0), **kw)
    assert torch.equal(again.levels, r.levels)
    other = sample_zoom_stack(tiny_pipe, prompts, generator=_gen(1), **kw)
    assert not torch.equal(other.levels, r.levels)


def test_tiny_pipeline_options(tiny_pipe):
    kw = dict(steps=3, guidance=3.0, height=64, width=64)
    r4 = sample_zoom_stack(tiny_pipe, ["a", "b"], p=4, generator=_gen(0), **kw)
    assert r4.settings["paste_depth"] == 1 and torch.isfinite(r4.levels).all()
    rb = sample_zoom_stack(tiny_pipe, ["a", "b", "c"], blend_every=2, residual_correction=False,
                           negative_prompt=["x", "y", "z"], generator=_gen(0), **kw)
    assert torch.isfinite(rb.levels).all() and rb.settings["blend_every"] == 2
    r1 = sample_zoom_stack(tiny_pipe, ["a"], generator=_gen(0), **kw)
    assert r1.levels.shape == (1, 64, 64, 3) and torch.equal(r1.levels, r1.raw)
    # one level: joint sampling is plain ancestral sampling
    assert torch.equal(r1.levels, sample_zoom_stack(tiny_pipe, ["a"], joint=False, generator=_gen(0), **kw).levels)
    ind = sample_zoom_stack(tiny_pipe, ["a", "b", "c"], joint=False, generator=_gen(0), **kw)
    assert torch.equal(ind.levels, ind.raw) and not ind.settings["joint"]


def test_components_dict_v_prediction_and_tiny_vae():
    comps = tiny_sd_components()
    from diffusers import AutoencoderTiny, DDIMScheduler

    comps["scheduler"] = DDIMScheduler.from_config(comps["scheduler"].config, prediction_type="v_prediction")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        taesd = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                                num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).eval()
    r = sample_zoom_stack(comps, ["a", "b", "c"], steps=2, guidance=1.0, height=64, width=64,
                          tiny_vae=taesd, generator=_gen(0))
    assert r.settings["prediction_type"] == "v_prediction" and r.settings["tiny_vae"]
    assert torch.isfinite(r.levels).all()


def test_joint_sampling_agrees_better_than_independent_sampling():
    comps = tiny_sd_components()
    comps["vae"] = LinearVAE()
    kw = dict(steps=4, guidance=3.0, height=64, width=64)
    joint = sample_zoom_stack(comps, ["a", "b", "c"], generator=_gen(0), **kw)
    indep = sample_zoom_stack(comps, ["a", "b", "c"], generator=_gen(0), joint=False, **kw)
    assert (joint.agreement() < 0.7 * indep.agreement()).all()


@pytest.mark.parametrize("mode", ["guidance", "replace_low"])
def test_photo_zoom_brings_level_zero_closer_to_the_photo(mode):
    # The tiny AutoencoderKL has random weights (Dec(Enc(photo)) is unrelated to the photo), so
    # the pixel-space steering can only show through a VAE that round-trips: the linear one.
    comps = tiny_sd_components()
    comps["vae"] = LinearVAE()
    photo = _photo()
    kw = dict(steps=4, guidance=3.0, height=64, width=64)
    free = sample_zoom_stack(comps, ["a", "b", "c"], generator=_gen(0), **kw)
    fixed = sample_zoom_stack(comps, ["a", "b", "c"], generator=_gen(0), photo=photo, photo_mode=mode, **kw)
    target = prepare_photo(photo, 64, 64)
    before = photo_psnr(to_channels_first(free.levels), target)
    after = photo_psnr(to_channels_first(fixed.levels), target)
    assert after[0] > before[0] + 0.5, (before, after)
    # Already before the final blend and render: the sampler itself moved the photo's level.
    raw_before = photo_psnr(to_channels_first(free.raw), target)
    raw_after = photo_psnr(to_channels_first(fixed.raw), target)
    assert raw_after[0] > raw_before[0] + 0.5, (raw_before, raw_after)


def test_photo_at_a_deeper_level():
    comps = tiny_sd_components()
    comps["vae"] = LinearVAE()
    kw = dict(steps=4, guidance=1.0, height=64, width=64, generator=_gen(0))
    photo = _photo(80)
    free = sample_zoom_stack(comps, ["a", "b", "c"], **kw)
    kw["generator"] = _gen(0)
    fixed = sample_zoom_stack(comps, ["a", "b", "c"], photo=photo, photo_level=1, **kw)
    target = prepare_photo(photo, 64, 64)
    before = photo_psnr(to_channels_first(free.raw), target, level=1)
    after = photo_psnr(to_channels_first(fixed.raw), target, level=1)
    assert after[0] > before[0] + 0.5, (before, after)  # level 1 follows the photo, level 0 is free


def test_sampler_inputs_are_validated(tiny_pipe):
    kw = dict(steps=2, height=64, width=64)
    with pytest.raises(ValueError, match="prompts"):
        sample_zoom_stack(tiny_pipe, "a galaxy", **kw)
    with pytest.raises(ValueError, match="prompts"):
        sample_zoom_stack(tiny_pipe, [], **kw)
    with pytest.raises(ValueError, match="photo_mode"):
        sample_zoom_stack(tiny_pipe, ["a", "b"], photo_mode="paint", **kw)
    with pytest.raises(ValueError, match="photo_level"):
        sample_zoom_stack(tiny_pipe, ["a", "b"], photo=_photo(), photo_level=2, **kw)
    with pytest.raises(ValueError, match="multiples"):
        sample_zoom_stack(tiny_pipe, ["a", "b"], steps=2, height=60, width=64)
    with pytest.raises(ValueError, match="latent grid"):
        sample_zoom_stack(tiny_pipe, ["a", "b"], p=4, steps=2, height=48, width=48)
    with pytest.raises(ValueError, match="negative_prompt"):
        sample_zoom_stack(tiny_pipe, ["a", "b"], negative_prompt=["x"], **kw)
    with pytest.raises(ValueError, match="steps"):
        sample_zoom_stack(tiny_pipe, ["a", "b"], steps=0, height=64, width=64)
    with pytest.raises(ValueError, match="unet"):
        sample_zoom_stack({"vae": None}, ["a"], **kw)
    with pytest.raises(ValueError, match="photo"):
        sample_zoom_stack(tiny_pipe, ["a"], photo=torch.rand(3, 64, 64), **kw)
    with pytest.raises(ValueError, match="inpainting"):
        sample_zoom_stack(tiny_sd_components(in_channels=9), ["a"], **kw)
    with pytest.raises(ValueError, match="joint"):
        sample_zoom_stack(tiny_pipe, ["a", "b"], photo=_photo(), joint=False, **kw)


# ----------------------------------------------------------------------------- devices
class _Offloaded(torch.nn.Module):
    """A model as ``enable_model_cpu_offload`` leaves it between calls, seen from outside: its
    parameters sit elsewhere ("meta" here) than where it runs. Calls go to the real model."""

    def __init__(self, real):
        super().__init__()
        self.stand_in = torch.nn.Parameter(torch.empty(1, device="meta"))
        object.__setattr__(self, "_real", real)  # not a submodule: its weights stay out of parameters()
        self.config = real.config

    def forward(self, *args, **kwargs):
        return self._real(*args, **kwargs)

    def encode(self, x):
        return self._real.encode(x)

    def decode(self, z):
        return self._real.decode(z)


class _OffloadedPipeline:
    def __init__(self, pipe, device):
        self.unet, self.vae, self.text_encoder = (_Offloaded(m) for m in (pipe.unet, pipe.vae, pipe.text_encoder))
        self.tokenizer, self.scheduler = pipe.tokenizer, pipe.scheduler
        self._execution_device = torch.device(device)


def test_sampler_runs_where_the_pipeline_executes_not_where_its_weights_wait(tiny_pipe):
    """Under CPU offload the parameters are not on the execution device: the sampler asks the
    pipeline where it runs (as diffusers' own pipelines do) and gives the same stack."""
    from zoom.sampler import execution_device

    offloaded = _OffloadedPipeline(tiny_pipe, "cpu")
    assert next(offloaded.unet.parameters()).device.type == "meta"
    assert execution_device(offloaded) == torch.device("cpu")
    kw = dict(steps=2, guidance=3.0, height=64, width=64)
    expected = sample_zoom_stack(tiny_pipe, ["a", "b"], generator=_gen(0), **kw)
    got = sample_zoom_stack(offloaded, ["a", "b"], generator=_gen(0), **kw)
    assert got.levels.device.type == "cpu" and torch.equal(got.levels, expected.levels)
    # A dict of components: accelerate's hook on the UNet names the execution device.
    comps = dict(unet=offloaded.unet, vae=offloaded.vae, text_encoder=offloaded.text_encoder,
                 tokenizer=tiny_pipe.tokenizer, scheduler=tiny_pipe.scheduler)
    object.__setattr__(offloaded.unet, "_hf_hook", type("Hook", (), {"execution_device": "cpu"})())
    assert execution_device(comps) == torch.device("cpu")
    assert torch.equal(sample_zoom_stack(comps, ["a", "b"], generator=_gen(0), **kw).levels, expected.levels)
    assert execution_device(tiny_pipe) == torch.device("cpu")


def test_seeded_generator_is_the_same_on_every_device():
    from zoom.sampler import seeded_generator

    g = seeded_generator(7)
    assert g.device.type == "cpu" and g.initial_seed() == 7
    assert torch.equal(torch.randn(5, generator=g), torch.randn(5, generator=seeded_generator(7)))
