"""The learned repair model of the refine step: diffusers image-to-image over a render.

:class:`DiffusersRefiner` satisfies :class:`dreamer.backends.Refiner`. It runs an image-to-image
pipeline (``AutoPipelineForImage2Image``; by default the one-step ``stabilityai/sd-turbo``) on a
render of the 3D model at a low ``strength``: the model re-noises the render part of the way and
denoises it back, which removes the artefacts a model trained on real images has never seen
(holes, floaters, smears) and keeps the layout. Plain image-to-image models take no second
image, so the ``reference`` view (the nearest dreamed view) is used for colour: the repaired
image's per-channel mean and spread are matched to the reference's (:func:`match_colors`), which
undoes the colour drift of the diffusion round trip. Weights load in float16 on CUDA and
float32 on CPU (:func:`dreamer.backends.diffusion.load_diffusers_pipeline`); a model that is not
here fails at once with :class:`~dreamer.backends.loading.ModelNotAvailable` naming it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import torch
from torch import Tensor

from dreamer.backends.diffusion import DiffusionSettings, _check_size, _flagged, _PipelineBackend
from dreamer.cameras import Camera
from dreamer.checks import check_image

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_REFINE_MODEL", "COLOR_MATCH", "DiffusersRefiner", "refine_settings", "match_colors"]

#: SD-Turbo: a one-step distilled Stable Diffusion 2.1 (512x512), the refine step's default.
DEFAULT_REFINE_MODEL = "stabilityai/sd-turbo"
#: What the repaired image's colours are matched to: the reference view (the render when there
#: is none), the render itself, or nothing.
COLOR_MATCH = ("reference", "render", "none")

# Pixels at or below this brightness in every channel count as empty (splat renders composite
# holes over black) and are left out of colour statistics.
_EMPTY = 1.0 / 255.0


def refine_settings(*, strength: float = 0.5, steps: int = 2, guidance: float = 0.0, seed: int | None = 0,
                    device: str = "auto", dtype: str = "auto", prompt_suffix: str = "") -> DiffusionSettings:
    """Sampling settings of a one-step repair model: ``steps`` x ``strength`` denoising steps
    (SD-Turbo: 2 x 0.5 = one step), no classifier-free guidance (``guidance`` 0, as the distilled
    models are trained), no negative prompt."""
    return DiffusionSettings(steps=steps, strength=strength, guidance=guidance, seed=seed, device=device,
                             dtype=dtype, negative_prompt="", prompt_suffix=prompt_suffix)


def match_colors(image: Tensor, target: Tensor) -> Tensor:
    """``image`` [H,W,3] with each channel's mean and standard deviation moved to ``target``'s
    ([h,w,3], any size); pixels that are empty (black) in either image are left out of the
    statistics. Returns float [H,W,3] clamped to [0,1]."""
    def stats(x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.reshape(-1, 3).float()
        keep = x.amax(1) > _EMPTY
        if int(keep.sum()) < 16:  # nearly empty: use every pixel
            keep = torch.ones_like(keep)
        x = x[keep]
        return x.mean(0), x.std(0, unbiased=False).clamp_min(1e-3)

    mu_i, sd_i = stats(image)
    mu_t, sd_t = stats(target.to(image))
    return ((image.float() - mu_i) / sd_i * sd_t + mu_t).clamp(0.0, 1.0)


class DiffusersRefiner(_PipelineBackend):
    """A :class:`~dreamer.backends.Refiner` over a diffusers image-to-image pipeline.

    ``pipe``: a constructed pipeline (inject tiny components in tests); ``settings``: sampling
    settings (:func:`refine_settings` for the defaults of a one-step model); ``prompt``: text
    describing the scene (the scene prompt; empty works for one-step models); ``color_match``: one
    of :data:`COLOR_MATCH`.
    """

    def __init__(self, pipe, settings: DiffusionSettings | None = None, *, prompt: str = "",
                 color_match: Literal["reference", "render", "none"] = "reference"):
        super().__init__(pipe, settings if settings is not None else refine_settings())
        if color_match not in COLOR_MATCH:
            raise ValueError(f"color_match must be one of {COLOR_MATCH}, got {color_match!r}")
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        self.prompt = prompt
        self.color_match = color_match

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_REFINE_MODEL, settings: DiffusionSettings | None = None, *,
                        prompt: str = "", color_match: Literal["reference", "render", "none"] = "reference"
                        ) -> DiffusersRefiner:
        """Load ``model`` (hub id, local folder or ``"tiny"``) as an image-to-image pipeline."""
        from dreamer.backends.diffusion import load_diffusers_pipeline

        settings = settings if settings is not None else refine_settings()
        pipe = load_diffusers_pipeline("img2img", model, device=settings.device, dtype=settings.dtype,
                                       safety_checker=settings.safety_checker, cpu_offload=settings.cpu_offload)
        return cls(pipe, settings, prompt=prompt, color_match=color_match)

    def with_prompt(self, prompt: str) -> DiffusersRefiner:
        """The same model and settings with another prompt (the pipeline is shared, not copied)."""
        return DiffusersRefiner(self.pipe, self.settings, prompt=prompt, color_match=self.color_match)

    def describe(self) -> dict:
        """What decides this refiner's answers (for checkpoint fingerprints)."""
        model = getattr(getattr(self.pipe, "config", None), "_name_or_path", None) or type(self.pipe).__name__
        return {"kind": "diffusers", "model": str(model), "prompt": self.prompt, "color_match": self.color_match,
                **{k: v for k, v in dataclasses.asdict(self.settings).items()
                   if k in ("steps", "strength", "guidance", "scheduler", "prompt_suffix")}}

    def refine(self, render: Tensor, *, reference: Tensor | None = None, camera: Camera | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """Repair ``render`` [H,W,3] (float in [0,1]; H and W multiples of 8). Returns float32
        [H,W,3] in [0,1] on ``render``'s device. ``camera`` is ignored."""
        check_image(render, "render")
        if reference is not None:
            check_image(reference, "reference")
        height, width = render.shape[:2]
        _check_size(height, width, self.vae_scale_factor)
        out_device = render.device
        image = render.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
        output = self._call_pipeline(
            prompt=self._prompt(self.prompt),
            image=image.permute(2, 0, 1)[None],
            strength=self.settings.strength,
            **self._common_kwargs(generator),
        )
        if _flagged(output):
            logger.warning("the safety checker flagged a repaired render; it comes back black")
        repaired = output.images[0].detach().to("cpu", torch.float32).permute(1, 2, 0)
        if repaired.shape != image.shape:
            raise RuntimeError(f"the pipeline returned an image of shape {tuple(repaired.shape)} for a render "
                               f"of shape {tuple(image.shape)}")
        if self.color_match == "reference" and reference is not None:
            repaired = match_colors(repaired, reference.detach().to("cpu", torch.float32))
        elif self.color_match != "none":
            repaired = match_colors(repaired, image)
        return repaired.clamp(0.0, 1.0).to(out_device)
