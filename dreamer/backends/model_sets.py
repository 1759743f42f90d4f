"""Model sets: which backends a run uses, built once per process and shared across scenes.

``ModelConfig.models`` picks the set:

* ``"default"``: Stable Diffusion inpainting and text-to-image (diffusers) and metric depth
  (transformers), from the hub ids or local folders in the config;
* ``"tiny"``: the same classes with tiny random weights (:mod:`dreamer.backends.tiny`), no download;
* ``"synthetic"``: the procedural world answers as inpainter, depth estimator and image
  generator, with a controllable depth error (:mod:`dreamer.backends.synthetic`).

:func:`build_backends` loads each model once per process: pipelines are cached by the settings
that change what is loaded (model id/folder, device, dtype, safety checker, offloading), and the same config
returns the same :class:`Backends` object, so a batch of scenes reuses the weights. Call
:func:`clear_backend_cache` to free them; :func:`model_loads` counts the loads of this process.
:func:`build_refiner` makes the refine step's repair model of the same set (loaded only when the
refine step runs).

The rule for what is cached: **shared models are read-only; per-call state is the call's.** A
cached pipeline, depth model or :class:`Backends` may serve several scenes at once (threads, the
app's ``--concurrency``), so no call may change it: a diffusion call samples with a fresh
scheduler of its own and takes :func:`dreamer.backends.diffusion.pipeline_lock` while it uses
the model; randomness comes from the ``generator`` each call is given (the dream loop seeds one
per view), never from state kept between calls.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal

from dreamer.backends import DepthEstimator, ImageGenerator, Inpainter
from dreamer.backends.depth import DEFAULT_DEPTH_MODEL
from dreamer.checks import check_number
from dreamer.backends.diffusion import DEFAULT_INPAINT_MODEL, DEFAULT_TEXT2IMG_MODEL

logger = logging.getLogger(__name__)

__all__ = ["ModelConfig", "Backends", "build_backends", "build_refiner", "clear_backend_cache", "model_loads",
           "MODEL_SETS"]

MODEL_SETS = ("default", "tiny", "synthetic")


@dataclass(frozen=True)
class ModelConfig:
    """Which models make the views and their depth, and how they sample."""

    models: Literal["default", "tiny", "synthetic"] = "default"
    """Model set: ``default`` (real weights from the hub or local folders), ``tiny`` (random tiny
    models, no download: plumbing only) or ``synthetic`` (the procedural world as oracle)."""
    inpaint_model: str = DEFAULT_INPAINT_MODEL
    """Inpainting pipeline: a hub id or a local folder (SD 1.5 / SD 2 / SDXL inpainting, or any
    pipeline diffusers' AutoPipelineForInpainting loads)."""
    text2img_model: str = DEFAULT_TEXT2IMG_MODEL
    """Text-to-image pipeline for the first view when there is no photo: a hub id or a local folder."""
    depth_model: str = DEFAULT_DEPTH_MODEL
    """Metric depth model: a hub id, a local folder, or a short name (e.g.
    ``depth-anything-v2-indoor-small``; see dreamer.backends.depth.DEPTH_MODELS)."""
    steps: int = 50
    """Denoising steps per inpainted or generated view."""
    guidance: float = 7.5
    """Classifier-free guidance scale."""
    negative_prompt: str = "text, watermark, signature, blurry, low quality, distorted, deformed"
    """What the generated views should not show."""
    prompt_suffix: str = ""
    """Text appended to every prompt (e.g. a style)."""
    scheduler: str = "default"
    """Sampler: ``default`` (the model's own), ``ddim``, ``dpm++``, ``dpm++_karras``, ``euler``,
    ``euler_a``, ``pndm``, ``unipc``, ``lms``, ``heun``, ``ddpm``."""
    strength: float = 1.0
    """Inpainting strength in (0, 1]: 1 starts the hole from pure noise."""
    feather: int = 4
    """Pixels of soft blending outside each hole; known pixels farther away are kept exactly."""
    safety_checker: bool = True
    """Load a model's own safety checker when it ships one (flagged samples come back black)."""
    cpu_offload: bool = False
    """On CUDA: keep diffusion weights in CPU memory and move each model to the GPU only while it
    runs (about half the GPU memory, slower). Ignored on CPU."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N``."""
    dtype: str = "auto"
    """Diffusion weights: ``auto`` (float16 on CUDA, float32 on CPU), ``float32``, ``float16``, ``bfloat16``."""
    depth_dtype: str = "float32"
    """Depth model weights: ``float32`` (default), ``auto``, ``float16``, ``bfloat16``."""
    world_seed: int = 0
    """``synthetic`` only: seed of the procedural world (its layout) and of the depth error's noise."""
    scale_range: tuple[float, float] = (0.5, 2.0)
    """``synthetic`` only: the depth estimate's unknown global scale is drawn from this range."""
    distortion: float = 0.10
    """``synthetic`` only: relative amplitude of the smooth depth distortion."""
    noise: float = 0.01
    """``synthetic`` only: relative amplitude of per-pixel depth noise."""
    distortion_kind: Literal["bend", "waves"] = "bend"
    """``synthetic`` only: shape of the smooth depth distortion: a random tilt and bow across the
    picture ("bend") or low-frequency plane waves ("waves", harder)."""

    def __post_init__(self):
        try:
            object.__setattr__(self, "scale_range", tuple(float(x) for x in self.scale_range))
        except (TypeError, ValueError) as e:
            raise ValueError(f"scale_range must be two numbers (lo, hi), got {self.scale_range!r}") from e
        if self.models not in MODEL_SETS:
            raise ValueError(f"models must be one of {MODEL_SETS}, got {self.models!r}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (lo, hi) with 0 < lo <= hi, got {self.scale_range}")
        # The ranges WorldDepthEstimator accepts, checked here so a bad value fails before the run starts.
        for name, top in (("distortion", 1.0), ("noise", 0.5)):
            if not 0 <= check_number(getattr(self, name), name, min=0.0) < top:
                raise ValueError(f"{name} must be in [0, {top}), got {getattr(self, name)}")

    def diffusion_settings(self):
        """The :class:`~dreamer.backends.diffusion.DiffusionSettings` these fields describe."""
        from dreamer.backends.diffusion import DiffusionSettings

        return DiffusionSettings(prompt_suffix=self.prompt_suffix, negative_prompt=self.negative_prompt,
                                 steps=self.steps, guidance=self.guidance, strength=self.strength,
                                 scheduler=self.scheduler, feather=self.feather, device=self.device,
                                 dtype=self.dtype, safety_checker=self.safety_checker,
                                 cpu_offload=self.cpu_offload)

    def depth_settings(self):
        """The :class:`~dreamer.backends.depth.DepthSettings` these fields describe."""
        from dreamer.backends.depth import DepthSettings

        return DepthSettings(device=self.device, dtype=self.depth_dtype)


@dataclass
class Backends:
    """The three backends a scene needs (and, for ``synthetic``, the world behind them)."""

    inpainter: Inpainter
    depth_estimator: DepthEstimator
    image_generator: ImageGenerator
    world: Any = None
    """The ``ProceduralWorld`` of the ``synthetic`` set (ground truth for metrics); else None."""


_LOCK = threading.RLock()
_PIPELINES: dict[tuple, Any] = {}
_DEPTH: dict[tuple, Any] = {}
_BACKENDS: dict[ModelConfig, Backends] = {}
_LOADS = [0]  # models loaded by this process (a batch worker reports it: loads must not grow with scenes)


def model_loads() -> int:
    """How many models (pipelines and depth models) this process has loaded so far."""
    return _LOADS[0]


def clear_backend_cache() -> None:
    """Forget every cached model (their memory is freed once nothing else holds them)."""
    with _LOCK:
        _PIPELINES.clear()
        _DEPTH.clear()
        _BACKENDS.clear()


def _pipeline(kind: str, model: str, config: ModelConfig):
    from dreamer.backends.diffusion import load_diffusers_pipeline
    from dreamer.backends.loading import resolve_device, resolve_dtype

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    key = (kind, model, str(device), str(dtype), bool(config.safety_checker), bool(config.cpu_offload))
    if key not in _PIPELINES:
        _PIPELINES[key] = load_diffusers_pipeline(kind, model, device=device, dtype=dtype,
                                                  safety_checker=config.safety_checker,
                                                  cpu_offload=config.cpu_offload)
        _LOADS[0] += 1
    return _PIPELINES[key]


def _depth_estimator(model: str, config: ModelConfig):
    from dreamer.backends.depth import TransformersDepthEstimator
    from dreamer.backends.loading import resolve_device, resolve_dtype

    settings = config.depth_settings()
    device = resolve_device(settings.device)
    key = (model, str(device), str(resolve_dtype(settings.dtype, device)))
    if key not in _DEPTH:
        _DEPTH[key] = TransformersDepthEstimator.from_pretrained(model, settings)
        _LOADS[0] += 1
    return _DEPTH[key]


def _synthetic(config: ModelConfig) -> Backends:
    from dreamer.backends.synthetic import WorldDepthEstimator, WorldImageGenerator, WorldInpainter
    from dreamer.worlds.procedural import ProceduralWorld

    world = ProceduralWorld(seed=config.world_seed)
    return Backends(
        inpainter=WorldInpainter(world),
        depth_estimator=WorldDepthEstimator(world, scale_range=tuple(config.scale_range),
                                            distortion=config.distortion, noise=config.noise,
                                            seed=config.world_seed, distortion_kind=config.distortion_kind),
        image_generator=WorldImageGenerator(world),
        world=world,
    )


def build_backends(config: ModelConfig | None = None) -> Backends:
    """The backends of ``config``'s model set, loading each model at most once per process.

    The same config returns the same :class:`Backends` object; configs that differ only in
    sampling settings (steps, guidance, scheduler, ...) share the loaded pipelines. ``synthetic``
    builds a fresh world and fresh oracle backends every call (they hold no weights; a fresh depth
    error generator keeps every scene reproducible). Raises
    :class:`~dreamer.backends.loading.ModelNotAvailable` when weights are missing.
    """
    from dreamer.backends.diffusion import DiffusersImageGenerator, DiffusersInpainter

    config = config or ModelConfig()
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
    if config.models == "synthetic":
        return _synthetic(config)
    with _LOCK:
        if config in _BACKENDS:
            return _BACKENDS[config]
        tiny = config.models == "tiny"
        settings = config.diffusion_settings()
        inpaint_pipe = _pipeline("inpaint", "tiny" if tiny else config.inpaint_model, config)
        text_pipe = _pipeline("text2img", "tiny" if tiny else config.text2img_model, config)
        depth = _depth_estimator("tiny" if tiny else config.depth_model, config)
        backends = Backends(
            inpainter=DiffusersInpainter(inpaint_pipe, settings),
            depth_estimator=depth,
            image_generator=DiffusersImageGenerator(text_pipe, settings),
        )
        _BACKENDS[config] = backends
        logger.info("built %s backends: %s", config.models,
                    {k: v for k, v in dataclasses.asdict(config).items() if k.endswith("_model")})
        return backends


def build_refiner(config: ModelConfig, refine, *, world=None, prompt: str = ""):
    """The refine step's :class:`~dreamer.backends.Refiner` for ``config``'s model set.

    ``refine`` is the scene's RefineConfig (:mod:`dreamer.pipeline.settings`). ``default``: a
    :class:`~dreamer.backends.refiners.DiffusersRefiner` of ``refine.refine_model`` (loaded once
    per process, like the other pipelines); ``tiny``: the same class over a tiny random
    image-to-image pipeline; ``synthetic``: a :class:`~dreamer.backends.synthetic.WorldRefiner`
    on ``world`` (the Backends' world). ``prompt`` describes the scene to the learned models.
    Raises :class:`~dreamer.backends.loading.ModelNotAvailable` when the weights are missing.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    if config.models == "synthetic":
        from dreamer.backends.synthetic import WorldRefiner

        if world is None:
            raise ValueError("the synthetic refiner needs the procedural world: pass world=backends.world")
        return WorldRefiner(world, fraction=refine.refine_fraction, blur=refine.refine_blur,
                            noise=refine.refine_noise, seed=config.world_seed)
    from dreamer.backends.refiners import DiffusersRefiner, refine_settings

    settings = refine_settings(strength=refine.refine_strength, steps=refine.refine_steps,
                               guidance=refine.refine_guidance, device=config.device, dtype=config.dtype,
                               prompt_suffix=config.prompt_suffix)
    with _LOCK:
        pipe = _pipeline("img2img", "tiny" if config.models == "tiny" else refine.refine_model, config)
    return DiffusersRefiner(pipe, settings, prompt=prompt, color_match=refine.refine_color_match)
