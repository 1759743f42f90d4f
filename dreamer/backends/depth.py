"""Monocular metric depth through transformers: ZoeDepth and Depth Anything V2 (metric).

:class:`TransformersDepthEstimator` satisfies :class:`dreamer.backends.DepthEstimator`. It wraps
any ``AutoModelForDepthEstimation`` checkpoint whose output is metric depth:

* ZoeDepth (default ``Intel/zoedepth-nyu-kitti``; also ``Intel/zoedepth-nyu`` for indoor,
  ``Intel/zoedepth-kitti`` for driving scenes). Metric bins (NYU Kinect / KITTI LiDAR ground
  truth) -> z-depth in metres. Its image processor pads the input with a reflection border of
  ``int(sqrt(side / 2) * 3)`` pixels per side before resizing; the prediction covers the padded
  image, so the border is cut off here.
* Depth Anything V2 metric (``depth-anything/Depth-Anything-V2-Metric-{Indoor,Outdoor}-{Small,
  Base,Large}-hf``): ``sigmoid * max_depth`` (20 m indoor / Hypersim, 80 m outdoor / Virtual
  KITTI 2) -> z-depth in metres. No padding.

Relative-depth checkpoints (DPT, Depth Anything without the metric head) predict an inverse
depth with no unit and are refused. The depth is resized to exactly the input's [H,W] here
(bilinear; transformers' ZoeDepth post-processing is not used: it needs torchvision).
Monocular depth is only metric-ish: the dream loop aligns it to the rendered geometry anyway.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamer.backends.loading import load_pretrained, quiet_model_loading, resolve_device, resolve_dtype
from dreamer.cameras import Camera

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DEPTH_MODEL",
    "DEPTH_MODELS",
    "TINY_DEPTH_MODELS",
    "DepthSettings",
    "TransformersDepthEstimator",
    "zoedepth_padding",
]

#: ZoeDepth fine-tuned on NYU (indoor) and KITTI (outdoor), with a router between the two heads.
DEFAULT_DEPTH_MODEL = "Intel/zoedepth-nyu-kitti"

#: Short names for the checkpoints this backend is known to work with (ids on the Hugging Face hub).
#: Depth model names built as tiny random models (no weights to find): "tiny" is ZoeDepth's.
TINY_DEPTH_MODELS = ("tiny", "tiny-zoedepth", "tiny-depth-anything")

DEPTH_MODELS: dict[str, str] = {
    "zoedepth": "Intel/zoedepth-nyu-kitti",
    "zoedepth-nyu": "Intel/zoedepth-nyu",
    "zoedepth-kitti": "Intel/zoedepth-kitti",
    "depth-anything-v2-indoor-small": "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf",
    "depth-anything-v2-indoor-base": "depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf",
    "depth-anything-v2-indoor-large": "depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf",
    "depth-anything-v2-outdoor-small": "depth-anything/Depth-Anything-V2-Metric-Outdoor-Small-hf",
    "depth-anything-v2-outdoor-base": "depth-anything/Depth-Anything-V2-Metric-Outdoor-Base-hf",
    "depth-anything-v2-outdoor-large": "depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf",
}

# Model types whose output is metric depth (in metres) and those whose output is relative inverse depth.
_METRIC_TYPES = {"zoedepth", "glpn"}
_RELATIVE_TYPES = {"dpt"}


@dataclass(frozen=True)
class DepthSettings:
    """How the depth backend runs. Plain values only, so it saves to JSON."""

    device: str = "auto"
    """``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``."""
    dtype: str = "float32"
    """Model weights' dtype: ``"float32"`` (default: depth heads are cheap and fp16 costs accuracy
    at far range), ``"auto"`` (float16 on CUDA), ``"float16"``, ``"bfloat16"``."""
    flip_average: bool = True
    """Also predict the horizontally mirrored image and average both (as ZoeDepth's own
    ``infer_pil`` does): smoother, more symmetric depth for twice the cost."""
    min_depth: float = 1e-3
    """Lower clamp in metres: the result is always > 0."""

    def __post_init__(self):
        if not self.min_depth > 0:
            raise ValueError(f"min_depth must be > 0, got {self.min_depth}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def zoedepth_padding(height: int, width: int) -> tuple[int, int]:
    """The reflection border (rows, columns per side) ZoeDepth's image processor adds to an image of
    ``height`` x ``width`` pixels before resizing: ``int(sqrt(side / 2) * 3)``."""
    return int(math.sqrt(height / 2) * 3), int(math.sqrt(width / 2) * 3)


def _model_kind(model) -> str:
    config = model.config
    kind = getattr(config, "model_type", "")
    if kind == "depth_anything":
        est = getattr(config, "depth_estimation_type", "relative")
        if est != "metric":
            raise ValueError(
                "this Depth Anything checkpoint predicts relative inverse depth (depth_estimation_type="
                f"{est!r}), not metres; use a metric one, e.g. {DEPTH_MODELS['depth-anything-v2-indoor-small']!r}")
        return "depth_anything"
    if kind in _RELATIVE_TYPES:
        raise ValueError(f"{kind!r} checkpoints predict relative inverse depth, not metres; use a metric depth "
                         f"model such as {DEFAULT_DEPTH_MODEL!r}")
    if kind not in _METRIC_TYPES:
        logger.warning("depth model type %r is not known to predict metric z-depth; using its output as metres", kind)
    return kind


class TransformersDepthEstimator:
    """Metric z-depth (metres) from a transformers depth model and its image processor.

    ``model``: a ``*ForDepthEstimation`` module (its device and dtype are used as they are);
    ``processor``: its image processor; ``settings``: :class:`DepthSettings`.
    """

    def __init__(self, model, processor, settings: DepthSettings | None = None):
        self.model = model.eval()
        self.processor = processor
        self.settings = settings or DepthSettings()
        self.kind = _model_kind(model)
        self._undo_zoe_padding = "ZoeDepth" in type(processor).__name__ and bool(getattr(processor, "do_pad", False))
        if bool(getattr(processor, "do_pad", False)) and not self._undo_zoe_padding:
            logger.warning("image processor %s pads its input in a way this backend does not undo; the depth "
                           "map may be slightly shifted", type(processor).__name__)

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_DEPTH_MODEL,
                        settings: DepthSettings | None = None) -> TransformersDepthEstimator:
        """Load ``model`` (a hub id, a short name of :data:`DEPTH_MODELS`, a local folder written by
        ``save_pretrained``, or ``"tiny"`` / ``"tiny-depth-anything"`` for tiny random models)
        through :func:`dreamer.backends.loading.load_pretrained`."""
        settings = settings or DepthSettings()
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        if model in TINY_DEPTH_MODELS:
            from dreamer.backends.tiny import tiny_depth_model

            with quiet_model_loading():
                net, processor = tiny_depth_model("depth_anything" if model == "tiny-depth-anything" else "zoedepth")
        else:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation

            model = DEPTH_MODELS.get(model, model)
            net = load_pretrained(AutoModelForDepthEstimation.from_pretrained, model, what="depth model", dtype=dtype)
            processor = load_pretrained(AutoImageProcessor.from_pretrained, model, what="depth image processor")
        net = net.to(device=device, dtype=dtype)
        logger.info("loaded depth model %s (%s) on %s in %s", model, type(net).__name__, device, dtype)
        return cls(net, processor, settings)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _predict(self, image) -> Tensor:
        """Raw prediction [h,w] (float32, on the model's device) for a float array [H,W,3] in [0,1]."""
        inputs = self.processor(images=image, return_tensors="pt", do_rescale=False,
                                input_data_format="channels_last")
        param = next(self.model.parameters())
        pixel_values = inputs["pixel_values"].to(device=param.device, dtype=param.dtype)
        depth = self.model(pixel_values=pixel_values).predicted_depth
        if self.settings.flip_average:
            flipped = self.model(pixel_values=torch.flip(pixel_values, dims=[-1])).predicted_depth
            depth = 0.5 * (depth + torch.flip(flipped, dims=[-1]))
        if depth.ndim == 4:
            depth = depth[:, 0]
        return depth[0].float()

    def estimate(self, image: Tensor, *, camera: Camera | None = None) -> Tensor:
        """z-depth [H,W] in metres (float32, > 0) of ``image`` [H,W,3] (float in [0,1]), exactly
        the input's size and on its device. ``camera`` is ignored."""
        if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[-1] != 3:
            got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"image must be a tensor [H,W,3], got {got}")
        if not image.is_floating_point():
            raise ValueError(f"image must be float in [0,1], got dtype {image.dtype}")
        height, width = image.shape[:2]
        if height < 2 or width < 2:
            raise ValueError(f"image must be at least 2x2 pixels, got {height}x{width}")
        array = image.detach().to("cpu", torch.float32).clamp(0.0, 1.0).numpy()
        depth = self._predict(array)[None, None]
        if self._undo_zoe_padding:
            pad_h, pad_w = zoedepth_padding(height, width)
            depth = F.interpolate(depth, size=(height + 2 * pad_h, width + 2 * pad_w), mode="bilinear",
                                  align_corners=False)
            depth = depth[..., pad_h:pad_h + height, pad_w:pad_w + width]
        else:
            depth = F.interpolate(depth, size=(height, width), mode="bilinear", align_corners=False)
        depth = depth[0, 0]
        if not bool(torch.isfinite(depth).all()):
            raise RuntimeError("the depth model returned non-finite values (try dtype='float32')")
        return depth.clamp_min(self.settings.min_depth).to(image.device, torch.float32)
