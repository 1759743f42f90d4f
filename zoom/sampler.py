"""Joint multi-scale sampling of a zoom stack on a latent diffusion model.

One step, all N levels together (latents [N,c,h,w], pixels [N,3,H,W], H = f*h):

1. classifier-free guided UNet on one batch of 2N -> model output -> predicted clean latent
   ``x0`` (epsilon, v or sample prediction, from the scheduler config);
2. decode ``x0`` -> ``X`` [N,3,H,W] (pixels in [0,1], fp32);
3. photo zoom: a few Adam steps on ``X`` toward the photo, or replace the photo level's low
   frequencies;
4. ``Xr = render(blend(X))`` in pixel space, fp32, pasting at most ``paste_depth`` levels deep;
5. re-encode: ``x0' = Enc(Xr) + render(blend(Delta))`` with the LookingGlass residual
   ``Delta = x0 - Enc(Dec(x0))`` (what the VAE round trip loses, carried in latent space);
6. ancestral DDPM step (= DDIM with eta = 1) from ``x0'`` with the *rendered* latent noise
   ``render_noise(E)``, so that overlapping regions of the levels share one noise source.

Paste depth: a pasted tile must be a whole, centred block of at least 2 latents, so depth is at
most 5 on SD's 64x64 latents with p = 2 (2 with p = 4); deeper levels still exist, they are only
not pasted into far-coarser ones during sampling. The final output is decoded with the full VAE,
blended and rendered at full depth in pixel space, so ``consistency_error`` of the output is 0
up to rounding by construction; the decoded levels before that final render are kept as ``raw``
(their consistency error is the *agreement error*).

:func:`sample_with_denoiser` is the model-free core (any ``denoise(z, t) -> x0`` and codec);
:func:`sample_zoom_stack` wraps a diffusers Stable Diffusion pipeline (or its components). The
schedule and its step live in :mod:`zoom.schedule`, the latent <-> pixel codecs in
:mod:`zoom.codecs`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from dreamer.checks import check_choice, check_int, check_number
from zoom.codecs import Codec, VaeCodec
from zoom.photo import photo_guidance, photo_replace_low, prepare_photo
from zoom.pyramid import blend
from zoom.schedule import Schedule, ddpm_step, model_output_to_x0
from zoom.stack import (
    check_max_depth,
    check_p,
    consistency_error,
    max_paste_depth,
    render_noise_stack,
    render_stack,
    to_channels_first,
    to_channels_last,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ZoomResult",
    "sample_with_denoiser",
    "sample_zoom_stack",
    "seeded_generator",
    "execution_device",
]

ProgressFn = Callable[[str, int, int], None]
PHOTO_MODES = ("guidance", "replace_low")


# ----------------------------------------------------------------------------- result
@dataclass
class ZoomResult:
    """What :func:`sample_zoom_stack` returns.

    ``levels``: [N,H,W,3] float32 in [0,1], the final rendered stack (exactly consistent).
    ``raw``: [N,H,W,3] float32, the per-level decoded outputs before the final blend and render
    (for metrics: their consistency error is the agreement error). ``prompts``: one per level.
    ``settings``: the resolved settings (JSON-friendly). ``seconds``: wall time of sampling.
    """

    levels: Tensor
    raw: Tensor
    prompts: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def p(self) -> int:
        return int(self.settings.get("p", 2))

    def consistency(self) -> Tensor:
        """Consistency error of ``levels`` per adjacent pair -> [N-1] (0 up to rounding)."""
        return consistency_error(to_channels_first(self.levels), p=self.p)

    def agreement(self, lowpass: int = 1) -> Tensor:
        """Consistency error of ``raw`` per adjacent pair -> [N-1]."""
        return consistency_error(to_channels_first(self.raw), p=self.p, lowpass=lowpass)


# ----------------------------------------------------------------------------- randomness, devices
def seeded_generator(seed: int) -> torch.Generator:
    """The generator of a zoom stack for ``seed``: a CPU generator, whatever device samples, so one
    seed gives one stack on every machine and from every entry point (``python -m zoom.run`` and
    the 3D zoom); the noise is drawn on the CPU and moved (see :func:`sample_with_denoiser`)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def execution_device(pipeline_or_components) -> torch.device:
    """Where the pipeline's models run.

    A diffusers pipeline knows (``_execution_device``: right under ``enable_model_cpu_offload``,
    where the weights wait on the CPU and each model moves to the GPU only while it runs). For a
    dict of components: the execution device of accelerate's offload hook on the UNet, else the
    device of the UNet's parameters.
    """
    if not isinstance(pipeline_or_components, dict):
        device = getattr(pipeline_or_components, "_execution_device", None)
        if device is not None:
            return torch.device(device)
    unet = _component(pipeline_or_components, "unet")
    hooked = getattr(getattr(unet, "_hf_hook", None), "execution_device", None)
    if hooked is not None:
        return torch.device(hooked)
    return next(unet.parameters()).device


# ----------------------------------------------------------------------------- core loop
def _randn(shape, generator: torch.Generator | None, device: torch.device) -> Tensor:
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32).to(device)


def _blend_render(x: Tensor, p: int, depth: int) -> Tensor:
    return render_stack(blend(x, p=p, max_depth=depth), p=p, max_depth=depth)


def sample_with_denoiser(
    denoise: Callable[[Tensor, int], Tensor],
    codec: Codec,
    schedule: Schedule,
    *,
    num_levels: int,
    latent_shape: Sequence[int],
    p: int = 2,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    joint: bool = True,
    paste_depth: int | None = None,
    blend_every: int = 1,
    residual_correction: bool = True,
    loop_codec: Codec | None = None,
    photo: Tensor | None = None,
    photo_level: int = 0,
    photo_mode: str = "guidance",
    photo_steps: int = 5,
    photo_lr: float = 0.05,
    photo_until: float = 0.8,
    photo_keep_bands: int = 2,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    on_progress: ProgressFn | None = None,
    on_step: Callable[[int, Tensor], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """The sampler on any denoiser: returns ``(levels, raw)``, both [N,C,H,W] channels-first.

    ``denoise(z [N,c,h,w] fp32, t) -> x0 [N,c,h,w]``: the (guided) clean-latent prediction.
    ``codec``: decodes the final latents; ``loop_codec`` (default ``codec``) does the in-loop
    round trip. ``latent_shape``: ``(c, h, w)``. ``paste_depth``: deepest paste during sampling
    (``None``: the deepest whole block of >= 2 latents). ``joint=False`` samples the levels
    independently (no blending, independent noise: the baseline; ``levels`` is then ``raw``);
    with the same ``generator`` seed it draws exactly the same base noise as the joint run.
    ``clamp``: value range of pixels after blending (``None`` for unbounded test signals).
    Photo settings are described in :func:`sample_zoom_stack`. Randomness only through
    ``generator``: one [N,c,h,w] draw for the start and one per step. ``on_step(k, x0)`` sees
    the denoiser's own clean-latent prediction [N,c,h,w] of step k, before any blending (a
    preview; how far its levels disagree shows how the joint sampling converges).
    """
    p = check_p(p)
    device = torch.device(device)
    n = int(num_levels)
    c, h, w = (int(s) for s in latent_shape)
    loop_codec = loop_codec if loop_codec is not None else codec
    k_lat = max_paste_depth(h, w, p, min_size=2)
    if n > 1 and joint and k_lat < 1:
        raise ValueError(f"a {h}x{w} latent grid has no centred 1/{p} block of >= 2 latents: use image "
                         f"sides that are multiples of {2 * p} latents")
    depth = k_lat if paste_depth is None else min(int(paste_depth), k_lat)
    steps = len(schedule.timesteps)
    photo_last = int(round(photo_until * steps))  # photo applied on steps k < photo_last

    def progress(stage: str, done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(stage, done, total)

    def clamp_(x: Tensor) -> Tensor:
        return x if clamp is None else x.clamp(*clamp)

    if photo is not None and not joint:
        raise ValueError("photo zoom needs joint sampling (joint=True)")
    if photo_mode not in PHOTO_MODES:
        raise ValueError(f"photo_mode must be one of {PHOTO_MODES}, got {photo_mode!r}")
    # one level and no photo: blending and rendering are identities, skip the lossy VAE round trip
    round_trip = joint and (n > 1 or photo is not None)

    noise0 = _randn((n, c, h, w), generator, device)
    z = render_noise_stack(noise0, p=p, max_depth=depth) if joint else noise0
    for k, t in enumerate(schedule.timesteps):
        a_t, a_prev = schedule.alpha(t), schedule.alpha_prev(t)
        x0 = denoise(z, t).float()
        if on_step is not None:
            on_step(k, x0)
        if round_trip and (k % blend_every == 0 or k == steps - 1):
            pixels = loop_codec.decode(x0).float()
            steered = pixels
            if photo is not None and k < photo_last:
                if photo_mode == "guidance":
                    steered = photo_guidance(pixels, photo, level=photo_level, p=p, steps=photo_steps,
                                             lr=photo_lr)
                else:
                    steered = photo_replace_low(pixels, photo, level=photo_level, keep_bands=photo_keep_bands,
                                                p=p)
            rendered = clamp_(blend(steered, p=p, max_depth=depth))
            rendered = render_stack(rendered, p=p, max_depth=depth)
            if residual_correction:
                both = loop_codec.encode(torch.cat([rendered, pixels])).float()
                enc_rendered, enc_pixels = both[:n], both[n:]
                x0 = enc_rendered + _blend_render(x0 - enc_pixels, p, depth)
            else:
                x0 = loop_codec.encode(rendered).float()
        noise = _randn((n, c, h, w), generator, device)
        if joint:
            noise = render_noise_stack(noise, p=p, max_depth=depth)
        z = ddpm_step(x0, z, a_t, a_prev, noise)
        progress("denoise", k + 1, steps)

    raw = codec.decode(z).float()
    progress("decode", 1, 1)
    if not joint or n == 1:
        return raw.clone(), raw
    levels = render_stack(clamp_(blend(raw, p=p, max_depth=depth)), p=p)
    return levels, raw


# ----------------------------------------------------------------------------- diffusers
def _component(source, name: str):
    value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
    if value is None:
        raise ValueError(f"pipeline_or_components has no {name!r}: pass a diffusers Stable Diffusion "
                         f"pipeline or a dict with unet, vae, text_encoder, tokenizer and scheduler")
    return value


@torch.no_grad()
def _encode_text(tokenizer, text_encoder, texts: list[str], device) -> Tensor:
    max_len = int(getattr(tokenizer, "model_max_length", 77) or 77)
    max_pos = getattr(getattr(text_encoder, "config", None), "max_position_embeddings", None)
    if max_pos:
        max_len = min(max_len, int(max_pos))
    ids = tokenizer(texts, padding="max_length", max_length=max_len, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    return text_encoder(ids)[0]


class _GuidedUNet:
    """``denoise(z, t) -> x0``: classifier-free guidance on one batch of 2N, then conversion."""

    def __init__(self, unet, cond: Tensor, uncond: Tensor | None, guidance: float, schedule: Schedule,
                 device: torch.device):
        self.unet = unet
        self.cond = cond
        self.uncond = uncond
        self.guidance = float(guidance)
        self.schedule = schedule
        self.device, self.dtype = torch.device(device), next(unet.parameters()).dtype

    def __call__(self, z: Tensor, t: int) -> Tensor:
        timestep = torch.tensor(t, device=self.device)
        if self.uncond is None:
            out = self.unet(z.to(self.device, self.dtype), timestep, encoder_hidden_states=self.cond).sample.float()
        else:
            zz = torch.cat([z, z]).to(self.device, self.dtype)
            emb = torch.cat([self.uncond, self.cond])
            uncond, cond = self.unet(zz, timestep, encoder_hidden_states=emb).sample.float().chunk(2)
            out = uncond + self.guidance * (cond - uncond)
        return model_output_to_x0(out, z.float(), self.schedule.alpha(t), self.schedule.prediction_type)


def _vae_factor(vae) -> int:
    blocks = getattr(vae.config, "block_out_channels", None) or vae.config.encoder_block_out_channels
    return 2 ** (len(blocks) - 1)


@torch.no_grad()
def _check_prompts(prompts, negative_prompt) -> tuple[list[str], list[str]]:
    """One prompt per level (a list of N >= 1 strings) and one negative prompt or one per level."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) < 1:
        raise ValueError(f"prompts must be a list of N >= 1 strings (one per level), got {prompts!r}")
    prompts = list(prompts)
    if not all(isinstance(s, str) for s in prompts):
        raise ValueError("every prompt must be a string")
    if isinstance(negative_prompt, str):
        return prompts, [negative_prompt] * len(prompts)
    negatives = list(negative_prompt)
    if len(negatives) != len(prompts) or not all(isinstance(s, str) for s in negatives):
        raise ValueError(f"negative_prompt must be one string or {len(prompts)} strings, got {negative_prompt!r}")
    return prompts, negatives


def sample_zoom_stack(
    pipeline_or_components,
    prompts: Sequence[str],
    *,
    p: int = 2,
    steps: int = 50,
    guidance: float = 7.5,
    negative_prompt: str | Sequence[str] = "",
    height: int | None = None,
    width: int | None = None,
    generator: torch.Generator | None = None,
    photo: Tensor | None = None,
    photo_level: int = 0,
    photo_mode: str = "guidance",
    photo_steps: int = 5,
    photo_lr: float = 0.05,
    photo_until: float = 0.8,
    photo_keep_bands: int = 2,
    blend_every: int = 1,
    paste_depth: int | None = None,
    residual_correction: bool = True,
    tiny_vae=None,
    joint: bool = True,
    vae_batch_size: int | None = None,
    on_progress: ProgressFn | None = None,
    on_step: Callable[[int, Tensor], None] | None = None,
) -> ZoomResult:
    """Sample a zoom stack: level ``i`` shows ``prompts[i]``, level ``i+1`` the centre ``1/p`` of
    level ``i`` at ``p`` times the resolution.

    ``pipeline_or_components``: a diffusers Stable Diffusion pipeline (SD 1.x/2.x; anything with
    ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``) or a dict of those. Only
    the scheduler's config is used (its schedule and ``prediction_type``: epsilon or v).
    ``prompts``: N >= 1 strings, widest view first. ``steps``: denoising steps. ``guidance``:
    classifier-free guidance scale (diffusers' ``guidance_scale``; <= 1 runs no unconditional
    batch). ``negative_prompt``: one string or one per level. ``height``/``width``: image size
    in pixels (default: the UNet's native size); the latent grid must have a centred ``1/p``
    block of >= 2 latents (multiples of ``16*p`` px with SD's VAE always work).
    ``generator``: the only source of randomness (:func:`seeded_generator` makes the one that
    gives the same stack on every device).

    Photo zoom: ``photo`` [H',W',3] in [0,1] fixes level ``photo_level`` (it is centre-cropped
    and resized to ``height x width``). ``photo_mode="guidance"``: ``photo_steps`` Adam steps
    (``photo_lr``, [0,1] pixel units) on the decoded predictions per step; ``"replace_low"``:
    that level's bands coarser than its ``photo_keep_bands`` finest are replaced by the photo's.
    Either runs on the blending steps among the first ``photo_until`` fraction of the steps.

    ``blend_every``: decode-blend-render-encode every k-th step (and on the last); other steps
    only share rendered noise. ``paste_depth``: see :func:`sample_with_denoiser` (bounded by the
    latent grid automatically). ``residual_correction``: add the LookingGlass latent residual of
    the VAE round trip. ``tiny_vae``: an ``AutoencoderTiny`` (TAESD) for the in-loop round trip;
    the pipeline's VAE still decodes the final output. ``joint=False``: independent per-level
    sampling with the same noise draws (the benchmark baseline). ``on_progress(stage, done,
    total)``: stages ``"denoise"`` and ``"decode"``. ``on_step(k, x0)``: see
    :func:`sample_with_denoiser`.

    Returns a :class:`ZoomResult` with ``levels`` [N,H,W,3] and ``raw`` [N,H,W,3] (float32,
    on the :func:`execution_device`).
    """
    unet = _component(pipeline_or_components, "unet")
    vae = _component(pipeline_or_components, "vae")
    text_encoder = _component(pipeline_or_components, "text_encoder")
    tokenizer = _component(pipeline_or_components, "tokenizer")
    scheduler = _component(pipeline_or_components, "scheduler")

    prompts, negatives = _check_prompts(prompts, negative_prompt)
    n = len(prompts)
    p = check_p(p)
    check_number(guidance, "guidance", min=0)
    check_int(blend_every, "blend_every", min=1)
    check_max_depth(paste_depth, "paste_depth")
    check_choice(photo_mode, "photo_mode", PHOTO_MODES)
    check_int(photo_level, "photo_level", min=0, max=n - 1)
    check_number(photo_until, "photo_until", min=0, max=1)
    check_int(photo_steps, "photo_steps", min=0)
    check_int(photo_keep_bands, "photo_keep_bands", min=0)

    if getattr(unet.config, "addition_embed_type", None) is not None:
        raise ValueError("this UNet needs added conditions (SDXL-style); the zoom sampler supports Stable "
                         "Diffusion 1.x / 2.x text-to-image UNets")
    if unet.config.in_channels != unet.config.out_channels:
        raise ValueError(f"the UNet takes {unet.config.in_channels} input channels but predicts "
                         f"{unet.config.out_channels} (an inpainting UNet?); use a text-to-image model")
    factor = _vae_factor(vae)
    sample_size = unet.config.sample_size
    native = sample_size if isinstance(sample_size, int) else sample_size[0]
    height = int(height) if height is not None else native * factor
    width = int(width) if width is not None else native * factor
    if height <= 0 or width <= 0 or height % factor or width % factor:
        raise ValueError(f"height and width must be positive multiples of {factor} (the VAE factor), "
                         f"got {height}x{width}")
    h, w = height // factor, width // factor
    k_lat = max_paste_depth(h, w, p, min_size=2)
    if n > 1 and k_lat < 1:
        raise ValueError(f"{height}x{width} px gives a {h}x{w} latent grid without a centred 1/{p} block "
                         f"of >= 2 latents; use sides that are multiples of {2 * p * factor} px")
    depth = k_lat if paste_depth is None else min(paste_depth, k_lat)
    if paste_depth is not None and paste_depth > k_lat:
        logger.info("paste_depth %d bounded to %d by the %dx%d latent grid (tiles >= 2 latents)",
                    paste_depth, k_lat, h, w)

    device = execution_device(pipeline_or_components)
    schedule = Schedule.from_scheduler(scheduler, steps)
    photo_px = None
    if photo is not None:
        photo_px = prepare_photo(photo, height, width).to(device)

    start = time.perf_counter()
    cond = _encode_text(tokenizer, text_encoder, prompts, device)
    uncond = _encode_text(tokenizer, text_encoder, negatives, device) if guidance > 1.0 else None
    dtype = next(unet.parameters()).dtype
    cond = cond.to(dtype)
    uncond = uncond.to(dtype) if uncond is not None else None
    denoise = _GuidedUNet(unet, cond, uncond, guidance, schedule, device)
    codec = VaeCodec(vae, vae_batch_size, device=device)
    loop_codec = VaeCodec(tiny_vae, vae_batch_size, device=device) if tiny_vae is not None else codec
    levels, raw = sample_with_denoiser(
        denoise, codec, schedule, num_levels=n, latent_shape=(unet.config.in_channels, h, w), p=p,
        generator=generator, device=device, joint=joint, paste_depth=depth, blend_every=blend_every,
        residual_correction=residual_correction, loop_codec=loop_codec, photo=photo_px,
        photo_level=photo_level, photo_mode=photo_mode, photo_steps=photo_steps, photo_lr=photo_lr,
        photo_until=photo_until, photo_keep_bands=photo_keep_bands, clamp=(0.0, 1.0),
        on_progress=on_progress, on_step=on_step)
    seconds = time.perf_counter() - start
    settings = dict(
        p=p, steps=steps, guidance=float(guidance), negative_prompt=negatives, height=height, width=width,
        latent_size=[h, w], paste_depth=depth, blend_every=blend_every, residual_correction=residual_correction,
        tiny_vae=tiny_vae is not None, joint=joint, prediction_type=schedule.prediction_type,
        timesteps=list(schedule.timesteps), photo=photo is not None,
        photo_level=photo_level, photo_mode=photo_mode, photo_steps=photo_steps, photo_lr=photo_lr,
        photo_until=photo_until, photo_keep_bands=photo_keep_bands,
    )
    logger.info("sampled a %d-level zoom stack (p=%d, %d steps, %s) in %.1f s", n, p, steps,
                "joint" if joint else "independent", seconds)
    return ZoomResult(levels=to_channels_last(levels).contiguous(), raw=to_channels_last(raw).contiguous(),
                      prompts=prompts, settings=settings, seconds=seconds)
