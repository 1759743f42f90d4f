"""User inputs at the edge: a photo (and its depth map) of any size, mode and aspect ratio.

:func:`load_image` turns any image file into the working size [H,W,3] float32 in [0,1]:

* ``fit="crop"``: scale until the image covers the canvas, keep the centre (nothing to invent);
* ``fit="pad"``: scale until the whole image fits, centre it, and return ``outpaint_mask``
  (True on the padding, which the inpainter fills).

Handled on the way: EXIF orientation (phone photos), grayscale, palette, 1-bit, CMYK, RGBA / LA /
transparent palettes (composited over neutral grey), 16-bit grayscale PNGs (scaled by 65535, not
clipped at 255), 16-bit RGB PNGs (Pillow reads their top 8 bits), animated files (first frame).
Very large inputs are cropped before they are resampled, so a 3000x200 strip costs no more than
its visible part. Anything that is not an image raises ``ValueError`` naming the file.

:func:`load_depth` reads the depth map of that photo (``.npy`` float metres, 16-bit PNG / TIFF in
millimetres, float TIFF in metres, ``.exr`` metres when the ``OpenEXR`` package is installed) and
applies exactly the same crop / pad geometry, resampled nearest-neighbour (depth is not blended
across edges). See its docstring for how unknown and padded pixels are treated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = ["ImageFit", "LoadedImage", "compute_fit", "load_image", "load_depth", "load_depth_with_mask",
           "PAD_VALUE"]

Fit = Literal["crop", "pad"]

#: Grey used for transparent pixels and for the padding of ``fit="pad"`` (before outpainting).
PAD_VALUE = 0.5


@dataclass(frozen=True)
class ImageFit:
    """How a source image of ``source_width`` x ``source_height`` pixels maps onto the canvas.

    The source rectangle ``source_box`` = (x0, y0, x1, y1) (source pixels, float, edges) is
    resampled onto the canvas rectangle ``target_box`` (canvas pixels, int, edges). With
    ``fit="crop"`` the target box is the whole canvas; with ``fit="pad"`` the source box is the whole
    image and the canvas outside the target box is padding.
    """

    fit: str
    source_width: int
    source_height: int
    width: int
    height: int
    source_box: tuple[float, float, float, float]
    target_box: tuple[int, int, int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """Canvas pixels per source pixel along x and y (equal up to rounding)."""
        sx0, sy0, sx1, sy1 = self.source_box
        tx0, ty0, tx1, ty1 = self.target_box
        return (tx1 - tx0) / (sx1 - sx0), (ty1 - ty0) / (sy1 - sy0)

    def source_to_canvas(self, u: Tensor | float, v: Tensor | float):
        """Source pixel coordinates (u, v) (continuous, pixel edges at integers) -> canvas ones."""
        sx, sy = self.scale
        return (u - self.source_box[0]) * sx + self.target_box[0], (v - self.source_box[1]) * sy + self.target_box[1]

    def intrinsics(self, K: Tensor) -> Tensor:
        """The canvas intrinsics [3,3] of a photo whose own (source-size) intrinsics are ``K`` [3,3]."""
        if not isinstance(K, Tensor) or K.shape != (3, 3):
            raise ValueError(f"K must be a tensor [3,3], got {getattr(K, 'shape', type(K).__name__)}")
        sx, sy = self.scale
        out = K.clone()
        out[0, 0] = K[0, 0] * sx
        out[0, 1] = K[0, 1] * sx
        out[1, 1] = K[1, 1] * sy
        out[0, 2] = (K[0, 2] - self.source_box[0]) * sx + self.target_box[0]
        out[1, 2] = (K[1, 2] - self.source_box[1]) * sy + self.target_box[1]
        return out

    def padding_mask(self) -> Tensor:
        """bool [height,width]: True outside ``target_box`` (the padding)."""
        mask = torch.ones(self.height, self.width, dtype=torch.bool)
        x0, y0, x1, y1 = self.target_box
        mask[y0:y1, x0:x1] = False
        return mask

    def to_dict(self) -> dict:
        return {"fit": self.fit, "source_size": [self.source_width, self.source_height],
                "size": [self.width, self.height], "source_box": list(self.source_box),
                "target_box": list(self.target_box)}


@dataclass
class LoadedImage:
    """A photo at the working size.

    ``image``: float32 [H,W,3] in [0,1] (padding, if any, is :data:`PAD_VALUE` grey).
    ``outpaint_mask``: bool [H,W], True on padding to outpaint (``fit="pad"``); None for ``"crop"``.
    ``transform``: the :class:`ImageFit` (use it for the photo's depth map and intrinsics).
    """

    image: Tensor
    outpaint_mask: Tensor | None
    transform: ImageFit


def compute_fit(source_width: int, source_height: int, width: int, height: int, fit: Fit = "crop") -> ImageFit:
    """The :class:`ImageFit` of a ``source_width`` x ``source_height`` image on a ``width`` x
    ``height`` canvas, centred; ``fit`` is ``"crop"`` (cover) or ``"pad"`` (contain)."""
    for name, value in (("source_width", source_width), ("source_height", source_height),
                        ("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    w, h, W, H = int(source_width), int(source_height), int(width), int(height)
    if fit == "crop":
        scale = max(W / w, H / h)
        cw, ch = W / scale, H / scale  # the visible part, in source pixels
        x0, y0 = (w - cw) / 2.0, (h - ch) / 2.0
        return ImageFit("crop", w, h, W, H, (x0, y0, x0 + cw, y0 + ch), (0, 0, W, H))
    if fit == "pad":
        scale = min(W / w, H / h)
        tw = min(W, max(1, round(w * scale)))
        th = min(H, max(1, round(h * scale)))
        x0, y0 = (W - tw) // 2, (H - th) // 2
        return ImageFit("pad", w, h, W, H, (0.0, 0.0, float(w), float(h)), (x0, y0, x0 + tw, y0 + th))
    raise ValueError(f"fit must be 'crop' or 'pad', got {fit!r}")


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image file")
    try:
        im = Image.open(path)
        im.load()
    except UnidentifiedImageError as e:
        raise ValueError(f"{path} is not an image file Pillow can read (PNG, JPEG, WebP, TIFF, BMP, GIF, ...)") from e
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path} is too large to open safely ({e}); downscale it first") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path} could not be decoded as an image: {e}") from e
    return im


def _to_rgb_float(im) -> np.ndarray:
    """Any Pillow image -> float32 [h,w,3] in [0,1]; transparency composited over grey."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale (PNG opens as I;16, older Pillow as I): scale the full 16-bit range.
        arr = np.asarray(im, dtype=np.float64)
        if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"32-bit integer image with values in [{arr.min()}, {arr.max()}]: not a 16-bit image")
        gray = (arr / 65535.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        gray = np.asarray(im, dtype=np.float32)
        if not np.isfinite(gray).all():
            raise ValueError("floating-point image holds non-finite values")
        if gray.size and (gray.min() < 0 or gray.max() > 1):
            logger.warning("floating-point image with values in [%g, %g]: clipped to [0, 1]", gray.min(), gray.max())
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "L"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...
    if im.mode == "L" and "transparency" in im.info:
        im = im.convert("RGBA")
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if im.mode == "L":
        return np.repeat(arr[..., None], 3, axis=-1)
    if im.mode == "RGBA":
        alpha = arr[..., 3:4]
        return arr[..., :3] * alpha + PAD_VALUE * (1.0 - alpha)
    return arr


def _resample_channel(channel: np.ndarray, fit: ImageFit, resample) -> np.ndarray:
    """One float32 channel [h,w] (source) -> [th,tw] (the target box), via Pillow's mode F."""
    from PIL import Image

    tx0, ty0, tx1, ty1 = fit.target_box
    src = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))  # 2-D float32 -> mode F
    out = src.resize((tx1 - tx0, ty1 - ty0), resample=resample, box=fit.source_box)
    return np.asarray(out, dtype=np.float32)


def _place(content: np.ndarray, fit: ImageFit, fill: float) -> np.ndarray:
    canvas = np.full((fit.height, fit.width) + content.shape[2:], fill, dtype=np.float32)
    tx0, ty0, tx1, ty1 = fit.target_box
    canvas[ty0:ty1, tx0:tx1] = content
    return canvas


def _check_canvas(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def load_image(path: str | Path, width: int, height: int, *, fit: Fit = "crop") -> LoadedImage:
    """Read an image file and fit it to ``width`` x ``height``.

    Returns a :class:`LoadedImage`: ``image`` float32 [height,width,3] in [0,1] (antialiased
    Lanczos resampling, EXIF orientation applied), ``outpaint_mask`` bool [height,width] (True on
    padding) for ``fit="pad"`` and None for ``fit="crop"``, and the ``transform``. Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` for anything that is not an image.
    """
    from PIL import Image, ImageOps

    _check_canvas(width, height)
    if fit not in ("crop", "pad"):
        raise ValueError(f"fit must be 'crop' or 'pad', got {fit!r}")
    path = Path(path)
    with _open(path) as im:
        im = ImageOps.exif_transpose(im) or im
        rgb = _to_rgb_float(im)
    h, w = rgb.shape[:2]
    transform = compute_fit(w, h, width, height, fit)
    content = np.stack([_resample_channel(rgb[..., c], transform, Image.Resampling.LANCZOS) for c in range(3)],
                       axis=-1)
    image = torch.from_numpy(np.clip(_place(content, transform, PAD_VALUE), 0.0, 1.0))
    mask = transform.padding_mask() if fit == "pad" else None
    logger.debug("loaded %s (%dx%d, mode %s) -> %dx%d (%s)", path, w, h, im.mode, width, height, fit)
    return LoadedImage(image=image, outpaint_mask=mask, transform=transform)


def _read_exr(path: Path) -> np.ndarray:
    try:
        import OpenEXR  # type: ignore[import-not-found]
    except ImportError as e:
        raise ValueError(f"{path}: reading .exr needs the OpenEXR package (`pip install OpenEXR`); or save the "
                         f"depth as .npy (float32 metres) or as a 16-bit PNG in millimetres") from e
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            channels = {name: np.asarray(ch.pixels) for name, ch in f.channels().items()}
    except Exception as e:  # OpenEXR raises plain exceptions for unreadable files
        raise ValueError(f"{path} could not be read as an OpenEXR file: {e}") from e
    for name in ("Z", "depth", "Depth", "D", "distance", "Y", "R"):
        if name in channels:
            return channels[name].astype(np.float32)
    for name, arr in channels.items():
        if name.split(".")[-1] in ("Z", "depth", "Depth", "D"):
            return arr.astype(np.float32)
    if len(channels) == 1:
        return next(iter(channels.values())).astype(np.float32)
    raise ValueError(f"{path}: no depth channel among {sorted(channels)}; expected one named Z, depth, Y or R")


def _read_depth_file(path: Path) -> tuple[np.ndarray, bool]:
    """-> (depth [h,w] float32 in metres, zeros_mean_unknown)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"depth file not found: {path}")
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(f"{path} is not a readable .npy array: {e}") from e
        arr = np.squeeze(np.asarray(arr))
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{path}: a depth .npy must hold a numeric [H,W] array (metres), got shape "
                             f"{arr.shape} dtype {arr.dtype}")
        return arr.astype(np.float32), False
    if suffix == ".exr":
        return _read_exr(path), False
    im = _open(path)
    with im:
        mode = im.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            arr = np.asarray(im, dtype=np.float64)
            if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
                raise ValueError(f"{path}: 32-bit integer depth image with values outside 0..65535 millimetres")
            return (arr / 1000.0).astype(np.float32), True
        if mode == "F":
            return np.asarray(im, dtype=np.float32), False
    raise ValueError(f"{path}: image mode {mode!r} is not a depth map; use a 16-bit PNG in millimetres, a float "
                     f"TIFF or .npy in metres, or .exr (8-bit images have no depth unit)")


def _fill_nearest(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    _, (iy, ix) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return depth[iy, ix]


def load_depth_with_mask(path: str | Path, width: int, height: int, *, fit: Fit = "crop",
                         like: LoadedImage | None = None) -> tuple[Tensor, Tensor]:
    """Like :func:`load_depth`, also returning ``valid`` bool [H,W]: False where the depth was not
    known (zeros of a 16-bit PNG, padding) and was filled from the nearest known pixel."""
    _check_canvas(width, height)
    path = Path(path)
    raw, zeros_unknown = _read_depth_file(path)
    if raw.size == 0:
        raise ValueError(f"{path}: empty depth map")
    finite = np.isfinite(raw)
    if not finite.all():
        raise ValueError(f"{path}: {int((~finite).sum())} non-finite depth values (NaN/inf); depth must be finite "
                         f"metres > 0 (mark unknown pixels with 0 in a 16-bit PNG instead)")
    known = raw > 0
    if not zeros_unknown and not known.all():
        raise ValueError(f"{path}: {int((~known).sum())} depth values <= 0 (min {raw.min():g}); depth must be z-depth "
                         f"in metres > 0")
    if not known.any():
        raise ValueError(f"{path}: every depth value is 0 (unknown)")
    if zeros_unknown and not known.all():
        logger.info("%s: %.1f%% of the depth is 0 (unknown); filled from the nearest known pixel", path,
                    100.0 * (1 - known.mean()))
    h, w = raw.shape
    if like is not None:
        if not isinstance(like, LoadedImage):
            raise ValueError(f"like must be the LoadedImage of the photo, got {type(like).__name__}")
        t = like.transform
        if (t.width, t.height) != (width, height) or t.fit != fit:
            raise ValueError(f"the photo was loaded at {t.width}x{t.height} with fit={t.fit!r}; load its depth with "
                             f"the same size and fit (got {width}x{height}, fit={fit!r})")
        photo_aspect, depth_aspect = t.source_width / t.source_height, w / h
        if abs(math.log(photo_aspect / depth_aspect)) > 0.01:
            raise ValueError(f"{path}: the depth map is {w}x{h} but the photo is {t.source_width}x{t.source_height}: "
                             f"their aspect ratios differ, so the depth does not belong to this photo")
        sx, sy = w / t.source_width, h / t.source_height
        b = t.source_box
        transform = ImageFit(t.fit, w, h, width, height, (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), t.target_box)
    else:
        transform = compute_fit(w, h, width, height, fit)

    from PIL import Image

    content = _resample_channel(raw, transform, Image.Resampling.NEAREST)
    content_valid = _resample_channel(known.astype(np.float32), transform, Image.Resampling.NEAREST) > 0.5
    depth = _place(content, transform, 0.0)
    valid = _place(content_valid.astype(np.float32), transform, 0.0) > 0.5
    if not valid.any():
        raise ValueError(f"{path}: no known depth inside the visible part of the image")
    if not valid.all():
        depth = _fill_nearest(depth, valid)
    return torch.from_numpy(depth.astype(np.float32)), torch.from_numpy(valid)


def load_depth(path: str | Path, width: int, height: int, *, fit: Fit = "crop",
               like: LoadedImage | None = None) -> Tensor:
    """Read the z-depth map (metres) of a photo and fit it exactly like the photo: float32 [H,W] > 0.

    Formats: ``.npy`` (a float [H,W] array in metres), 16-bit PNG / TIFF (millimetres, as
    :func:`dreamer.io.save_depth_png16` writes), float TIFF (metres), ``.exr`` (metres; channel Z,
    depth, Y or R; needs the ``OpenEXR`` package).

    ``like``: the photo's :class:`LoadedImage`; the depth map may have another resolution than the
    photo (the same aspect ratio) and gets the same crop / pad. Without ``like`` the depth map is
    fitted as an image of its own size would be. Resampling is nearest-neighbour.

    Validation: NaN / inf anywhere, or values <= 0 in ``.npy`` / float / EXR files, raise
    ``ValueError``. Zeros in 16-bit PNGs mean "unknown" (the usual sensor convention): they, and
    the padding of ``fit="pad"``, are filled with the depth of the nearest known pixel so that the
    result is > 0 everywhere; :func:`load_depth_with_mask` also returns which pixels were known.
    """
    return load_depth_with_mask(path, width, height, fit=fit, like=like)[0]
