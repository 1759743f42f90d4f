"""Stable Diffusion backends through diffusers: inpainting and text-to-image.

* :func:`load_diffusers_pipeline` is the one place that loads a diffusers pipeline (the dream loop's
  backends and the zoom sampler both call it). ``model="tiny"`` gives the tiny random pipelines of
  :mod:`dreamer.backends.tiny`; anything else is a hub id or a local folder, loaded through
  :func:`dreamer.backends.loading.load_pretrained` (fails at once with a clear message when the
  weights are not here).
* :class:`DiffusersInpainter` satisfies :class:`dreamer.backends.Inpainter`. It keeps every known
  pixel: only the hole (plus a feathered margin of a few pixels around it) takes generated
  content, so repeated inpainting never drifts the colours of what exists.
* :class:`DiffusersImageGenerator` satisfies :class:`dreamer.backends.ImageGenerator`: the first
  view from a prompt alone, no photo needed.

Images in and out are float32 tensors [H,W,3] in [0,1] on the caller's device; PIL / [-1,1]
conversions stay inside the pipelines.

Sharing: one loaded pipeline may serve several backends and several jobs at once (the app's
``--concurrency``). The pipeline is never changed by a call: each call samples with its own fresh
scheduler (schedulers hold per-call state), and calls on one model run one at a time under
:func:`pipeline_lock` (a pipeline sets more per-call attributes than its scheduler, CPU offload
moves its models between devices, and a fast tokenizer refuses concurrent use). Pass a
``generator`` per call for results that do not depend on which job ran first.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.backends.loading import load_pretrained, quiet_model_loading, resolve_device, resolve_dtype
from dreamer.cameras import Camera
from dreamer.checks import check_image

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_INPAINT_MODEL",
    "DEFAULT_TEXT2IMG_MODEL",
    "SD2_INPAINT_MODEL",
    "SDXL_INPAINT_MODEL",
    "SCHEDULERS",
    "DiffusionSettings",
    "check_strength",
    "DiffusersInpainter",
    "DiffusersImageGenerator",
    "load_diffusers_pipeline",
    "set_scheduler",
    "make_scheduler",
    "pipeline_lock",
    "feather_alpha",
    "latent_cell_mask",
]

#: Stable Diffusion 1.5 inpainting (the original research code's model; the community mirror of
#: the withdrawn ``runwayml/stable-diffusion-inpainting``).
DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
#: Stable Diffusion 1.5 text-to-image (mirror of the withdrawn ``runwayml/stable-diffusion-v1-5``).
DEFAULT_TEXT2IMG_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
#: Stable Diffusion 2 inpainting (512x512).
SD2_INPAINT_MODEL = "stabilityai/stable-diffusion-2-inpainting"
#: SDXL inpainting (1024x1024), loaded through ``AutoPipelineForInpainting``.
SDXL_INPAINT_MODEL = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"

#: Scheduler names -> (diffusers class name, extra config). ``"default"`` keeps the model's own.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "dpm++_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}

_KINDS = ("inpaint", "text2img", "img2img")
_KIND_NAMES = {"inpaint": "inpainting pipeline", "text2img": "text-to-image pipeline",
               "img2img": "image-to-image pipeline"}


def make_scheduler(base, name: str | None):
    """A scheduler called ``name`` (a key of :data:`SCHEDULERS`) built from ``base``'s config (same
    noise schedule), or ``base`` itself for ``None`` / ``"default"``."""
    if name is None or name == "default":
        return base
    key = name.strip().lower().replace("dpmpp", "dpm++")
    if key not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; expected 'default' or one of {sorted(SCHEDULERS)}")
    import diffusers

    cls_name, extra = SCHEDULERS[key]
    return getattr(diffusers, cls_name).from_config(base.config, **extra)


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_FALLBACK_LOCK = threading.RLock()


def pipeline_lock(pipe_or_components) -> threading.RLock:
    """The lock under which one call uses a shared diffusion model.

    Keyed by the denoiser (``unet``) of a pipeline or of a dict of components, so the backends
    and the zoom sampler that share one text-to-image model take the same lock. Re-entrant.
    """
    if isinstance(pipe_or_components, dict):
        key = pipe_or_components.get("unet") or pipe_or_components.get("transformer")
    else:
        key = getattr(pipe_or_components, "unet", None) or getattr(pipe_or_components, "transformer", None)
    key = pipe_or_components if key is None else key
    with _LOCKS_GUARD:
        try:
            lock = _LOCKS.get(key)
            if lock is None:
                lock = _LOCKS[key] = threading.RLock()
        except TypeError:  # not weak-referenceable (a dict): one lock for all of those
            lock = _FALLBACK_LOCK
    return lock


def set_scheduler(pipe, name: str | None) -> None:
    """Replace ``pipe.scheduler`` by :func:`make_scheduler` of it (``None`` / ``"default"`` keep it)."""
    pipe.scheduler = make_scheduler(pipe.scheduler, name)


def load_diffusers_pipeline(kind: str, model: str, *, device: str | torch.device | None = None,
                            dtype: str | torch.dtype | None = None, scheduler: str | None = None,
                            safety_checker: bool = True, cpu_offload: bool = False):
    """A diffusers pipeline on ``device`` in ``dtype``, ready to call.

    ``kind``: ``"inpaint"`` (``AutoPipelineForInpainting``: SD 1.x/2.x inpainting, SDXL inpainting,
    or any pipeline diffusers can turn into an inpainting one), ``"text2img"``
    (``AutoPipelineForText2Image``) or ``"img2img"`` (``AutoPipelineForImage2Image``: the refine
    step's repair model, e.g. SD-Turbo). ``model``: ``"tiny"`` (random tiny pipeline, no download), a
    hub id or a local folder (``save_pretrained`` layout with ``model_index.json``). ``device``:
    ``None``/``"auto"`` picks CUDA when present. ``dtype``: ``None``/``"auto"`` is float16 on CUDA,
    float32 on CPU. ``scheduler``: a name of :data:`SCHEDULERS` or ``None``/``"default"``.
    ``safety_checker``: keep the model's own safety checker when it ships one (``False`` loads
    none). ``cpu_offload``: on CUDA, keep the weights in CPU memory and move each model to the GPU
    only while it runs (diffusers' ``enable_model_cpu_offload``; needs accelerate): roughly half
    the GPU memory, somewhat slower. Ignored elsewhere.

    Raises :class:`~dreamer.backends.loading.ModelNotAvailable` when the weights are not here.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model == "tiny":
        from dreamer.backends import tiny

        make = {"inpaint": tiny.tiny_inpaint_pipeline, "text2img": tiny.tiny_text2img_pipeline,
                "img2img": tiny.tiny_img2img_pipeline}[kind]
        with quiet_model_loading():
            pipe = make()
        pipe = pipe.to(dev) if dt == torch.float32 else pipe.to(device=dev, dtype=dt)
    else:
        with quiet_model_loading():  # importing the pipelines makes transformers print its torchvision notice
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

        auto = {"inpaint": AutoPipelineForInpainting, "text2img": AutoPipelineForText2Image,
                "img2img": AutoPipelineForImage2Image}[kind]
        extra: dict[str, Any] = {}
        if not safety_checker:
            extra.update(safety_checker=None, requires_safety_checker=False)
        what = _KIND_NAMES[kind]
        pipe = load_pretrained(auto.from_pretrained, model, what=what, dtype=dt, **extra)
        if cpu_offload and dev.type == "cuda":
            pipe.enable_model_cpu_offload(device=dev)
        else:
            pipe = pipe.to(dev)
    set_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    logger.info("loaded %s pipeline %s (%s) on %s in %s", kind, model, type(pipe).__name__, dev, dt)
    return pipe


@dataclass(frozen=True)
class DiffusionSettings:
    """How the diffusion backends sample. Plain values only, so it saves to JSON."""

    prompt_suffix: str = ""
    """Text appended to every prompt (e.g. a style: ", photorealistic, high detail"); empty adds
    nothing."""
    negative_prompt: str = "text, watermark, signature, blurry, low quality, distorted, deformed"
    """What the samples should not show (classifier-free guidance pushes away from it)."""
    steps: int = 50
    """Number of denoising steps."""
    guidance: float = 7.5
    """Classifier-free guidance scale (1 turns guidance off)."""
    strength: float = 1.0
    """Inpainting only: how much of the hole's initial content is noised away (1 = start from
    pure noise, as inpainting models are trained; lower keeps more of the pre-filled hole)."""
    scheduler: str = "default"
    """Sampler name: ``"default"`` (the model's own) or a key of :data:`SCHEDULERS` (``"ddim"``,
    ``"dpm++"``, ``"euler_a"``, ``"pndm"``, ...)."""
    seed: int | None = 0
    """Seed of the backend's own generator, used when a call passes no generator (successive calls
    draw new noise from it, so a run is reproducible as a whole). ``None``: torch's global RNG."""
    feather: int = 4
    """Inpainting only: width in pixels of the soft margin outside the hole where generated and
    known pixels are blended; known pixels farther than this from the hole are returned exactly."""
    device: str = "auto"
    """``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``."""
    dtype: str = "auto"
    """``"auto"`` (float16 on CUDA, float32 on CPU), ``"float32"``, ``"float16"``, ``"bfloat16"``."""
    safety_checker: bool = True
    """Load the model's own safety checker when it ships one. A flagged sample comes back black
    from the pipeline; the backends log a warning when that happens."""
    cpu_offload: bool = False
    """On CUDA: keep weights in CPU memory and move each model to the GPU only while it runs
    (about half the GPU memory, slower). Ignored on CPU."""

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        check_strength(self.steps, self.strength)
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")
        if self.feather < 0:
            raise ValueError(f"feather must be >= 0 pixels, got {self.feather}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_strength(steps: int, strength: float, names: tuple[str, str] = ("steps", "strength")) -> None:
    """An inpainting or image-to-image call of ``steps`` steps at ``strength`` denoises diffusers'
    ``int(steps * strength)`` of them (``get_timesteps``), which must be at least one: with none
    the pipeline raises, or returns nothing, at its first call, after the models loaded and the
    first view was made. ``names``: the settings' names for the message."""
    if int(steps * strength) < 1:
        raise ValueError(f"{names[1]} {strength:g} of {names[0]} {steps} denoises no step (diffusers runs "
                         f"int({names[0]} x {names[1]}) = {int(steps * strength)} of them): raise either so that "
                         f"their product is at least 1")


def _check_size(height: int, width: int, multiple: int = 8) -> None:
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise ValueError(f"height and width must be positive multiples of {multiple} (the VAE downsamples "
                         f"by {multiple}), got {height}x{width} (HxW); resize or crop the image first")


def latent_cell_mask(mask: Tensor, factor: int = 8) -> Tensor:
    """Grow a hole mask [H,W] (bool) to whole ``factor`` x ``factor`` cells: a cell is True where any
    of its pixels is. The VAE latent has one value per cell, and pipelines subsample the mask to
    the latent grid, so a hole smaller than a cell could otherwise vanish. H and W must be
    multiples of ``factor``."""
    h, w = mask.shape
    cells = F.max_pool2d(mask[None, None].float(), kernel_size=factor, stride=factor)
    return F.interpolate(cells, size=(h, w), mode="nearest")[0, 0] > 0.5


def feather_alpha(mask: Tensor, feather: int) -> Tensor:
    """Blend weight [H,W] (float32) of generated content: 1 in the hole ``mask`` [H,W] (bool), then
    falling linearly over ``feather`` pixels (chessboard distance) outside it, 0 beyond. Pixels
    with weight 0 keep their known value exactly."""
    alpha = mask.float()
    if feather <= 0:
        return alpha
    grown = mask[None, None].float()
    for step in range(1, feather + 1):
        grown = F.max_pool2d(grown, kernel_size=3, stride=1, padding=1)
        ring = (grown[0, 0] > 0.5) & (alpha == 0)
        alpha = torch.where(ring, torch.full_like(alpha, 1.0 - step / (feather + 1)), alpha)
    return alpha


def _flagged(output) -> bool:
    flags = getattr(output, "nsfw_content_detected", None)
    return bool(flags) and any(bool(f) for f in flags)


# The scheduler each pipeline came with, so that backends sharing one pipeline can each use their own.
_DEFAULT_SCHEDULERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _PipelineBackend:
    """Shared plumbing: settings, the backend's scheduler and generator, prompt assembly.

    Several backends (and several jobs) may share one loaded pipeline (see
    dreamer.backends.model_sets). The pipeline is read-only to them: each call installs a fresh
    copy of the backend's scheduler for its own run under :func:`pipeline_lock`, and puts the
    pipeline's own scheduler back afterwards.
    """

    def __init__(self, pipe, settings: DiffusionSettings | None = None):
        self.pipe = pipe
        self.settings = settings or DiffusionSettings()
        try:
            base = _DEFAULT_SCHEDULERS.setdefault(pipe, pipe.scheduler)
        except TypeError:  # not weak-referenceable: use what it has now
            base = pipe.scheduler
        self.scheduler = make_scheduler(base, self.settings.scheduler)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)  # progress goes through the loop's on_progress
        self._generator = None
        if self.settings.seed is not None:
            self._generator = torch.Generator(device="cpu").manual_seed(int(self.settings.seed))

    @property
    def vae_scale_factor(self) -> int:
        return int(getattr(self.pipe, "vae_scale_factor", 8))

    def _prompt(self, prompt: str) -> str:
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
        return prompt + self.settings.prompt_suffix

    def _generator_for(self, generator: torch.Generator | None) -> torch.Generator | None:
        return generator if generator is not None else self._generator

    def _common_kwargs(self, generator: torch.Generator | None) -> dict[str, Any]:
        s = self.settings
        return dict(num_inference_steps=s.steps, guidance_scale=s.guidance,
                    negative_prompt=s.negative_prompt or None, generator=self._generator_for(generator),
                    output_type="pt")

    def _call_pipeline(self, **kwargs):
        """Run the shared pipeline with a scheduler of this call's own (see the class docstring).
        Raises if its images are not finite: NaN pixels would otherwise be clamped, lifted and
        trained on, and the run would end as done with a scene of garbage."""
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        with pipeline_lock(self.pipe):
            own = self.pipe.scheduler
            self.pipe.scheduler = scheduler
            try:
                output = self.pipe(**kwargs)
            finally:
                self.pipe.scheduler = own
        images = getattr(output, "images", None)
        if isinstance(images, Tensor) and not bool(torch.isfinite(images).all()):
            raise RuntimeError(
                "the diffusion model returned non-finite pixels (NaN): in float16 a model's VAE can overflow "
                "(load it in float32), and so can a very large guidance scale "
                f"(this call's: {self.settings.guidance:g})")
        return output


class DiffusersInpainter(_PipelineBackend):
    """Inpainter over a diffusers inpainting pipeline (SD 1.5 / SD 2 inpainting, SDXL inpainting, or
    any pipeline ``AutoPipelineForInpainting`` accepts).

    ``pipe``: a constructed pipeline (inject tiny components in tests); ``settings``: sampling
    settings. The model sees the hole grown to whole 8x8 latent cells; the result keeps known
    pixels exactly except in a ``settings.feather``-pixel margin around the hole.
    """

    def __init__(self, pipe, settings: DiffusionSettings | None = None):
        super().__init__(pipe, settings)

    def blend_weight(self, mask: Tensor) -> Tensor:
        """The weight [H,W] of generated content in :meth:`inpaint`'s result for the hole ``mask``:
        1 in the hole, falling over ``settings.feather`` pixels around it, 0 beyond (see
        :func:`feather_alpha`). The dream loop keeps the result wherever it is > 0."""
        return feather_alpha(mask.detach().to("cpu"), self.settings.feather)

    @classmethod
    def from_pretrained(cls, model: str, settings: DiffusionSettings | None = None) -> DiffusersInpainter:
        """Load ``model`` (hub id, local folder or ``"tiny"``) with :func:`load_diffusers_pipeline`."""
        settings = settings or DiffusionSettings()
        pipe = load_diffusers_pipeline("inpaint", model, device=settings.device, dtype=settings.dtype,
                                       safety_checker=settings.safety_checker, cpu_offload=settings.cpu_offload)
        return cls(pipe, settings)

    def inpaint(self, image: Tensor, mask: Tensor, prompt: str, *, camera: Camera | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Fill ``image`` [H,W,3] (float in [0,1]) where ``mask`` [H,W] (bool) is True.

        H and W must be multiples of 8. Returns float32 [H,W,3] in [0,1] on ``image``'s device:
        generated pixels in the hole, a feathered blend within ``settings.feather`` pixels of it,
        the input exactly elsewhere. ``camera`` is ignored (learned backends do not need it).
        """
        check_image(image)
        if not isinstance(mask, Tensor) or mask.shape != image.shape[:2]:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a tensor [H,W] = {tuple(image.shape[:2])}, got {got}")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool (True = fill), got dtype {mask.dtype}")
        height, width = image.shape[:2]
        _check_size(height, width, self.vae_scale_factor)
        out_device = image.device
        image = image.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
        mask = mask.detach().to("cpu")
        if not bool(mask.any()):
            return image.clone().to(out_device)

        model_mask = latent_cell_mask(mask, self.vae_scale_factor)
        # The pipeline normalises [0,1] -> [-1,1] itself; masked pixels are zeroed by it too.
        output = self._call_pipeline(
            prompt=self._prompt(prompt),
            image=image.permute(2, 0, 1)[None],
            mask_image=model_mask[None, None].float(),
            height=height,
            width=width,
            strength=self.settings.strength,
            **self._common_kwargs(generator),
        )
        if _flagged(output):
            logger.warning("the safety checker flagged the inpainted view for prompt %r; its hole comes back "
                           "black (set safety_checker=False in the settings to load none)", prompt)
        generated = output.images[0].detach().to("cpu", torch.float32).permute(1, 2, 0)
        if generated.shape != image.shape:
            raise RuntimeError(f"the pipeline returned an image of shape {tuple(generated.shape)} for an input "
                               f"of shape {tuple(image.shape)}")
        alpha = self.blend_weight(mask)[..., None]
        result = torch.where(alpha > 0, alpha * generated + (1.0 - alpha) * image, image)
        return result.clamp(0.0, 1.0).to(out_device)


class DiffusersImageGenerator(_PipelineBackend):
    """Text-to-image over a diffusers pipeline (SD 1.5 by default; anything
    ``AutoPipelineForText2Image`` loads). Makes the first view when there is no photo."""

    def __init__(self, pipe, settings: DiffusionSettings | None = None):
        super().__init__(pipe, settings)

    @classmethod
    def from_pretrained(cls, model: str, settings: DiffusionSettings | None = None) -> DiffusersImageGenerator:
        """Load ``model`` (hub id, local folder or ``"tiny"``) with :func:`load_diffusers_pipeline`."""
        settings = settings or DiffusionSettings()
        pipe = load_diffusers_pipeline("text2img", model, device=settings.device, dtype=settings.dtype,
                                       safety_checker=settings.safety_checker, cpu_offload=settings.cpu_offload)
        return cls(pipe, settings)

    def generate(self, prompt: str, *, width: int, height: int,
                 generator: torch.Generator | None = None) -> Tensor:
        """A new image float32 [height,width,3] in [0,1] (on CPU) for ``prompt``. ``width`` and
        ``height`` must be multiples of 8."""
        _check_size(int(height), int(width), self.vae_scale_factor)
        output = self._call_pipeline(prompt=self._prompt(prompt), height=int(height), width=int(width),
                                     **self._common_kwargs(generator))
        if _flagged(output):
            logger.warning("the safety checker flagged the generated image for prompt %r; it comes back black",
                           prompt)
        return output.images[0].detach().to("cpu", torch.float32).permute(1, 2, 0).clamp(0.0, 1.0)
