"""User inputs at the edge: a photo (and its depth map) of any size, mode and aspect ratio.

:func:`load_image` turns any image file into the working size [H,W,3] float32 in [0,1]:

* ``fit="crop"``: scale until the image covers the canvas, keep the centre (nothing to invent);
* ``fit="pad"``: scale until the whole image fits, centre it, and return ``outpaint_mask``
  (True on the padding, which the inpainter fills).

Handled on the way: EXIF orientation (phone photos), grayscale, palette, 1-bit, CMYK, RGBA / LA /
transparent palettes (composited over neutral grey), 16-bit grayscale PNGs (scaled by 65535, not
clipped at 255), 16-bit RGB PNGs (Pillow reads their top 8 bits), animated files (first frame).
Very large inputs are cropped before they are resampled, so a 3000x200 strip costs no more than
its visible part, and decoded at a reduced size when they are much larger than the canvas (a
JPEG at 1/2, 1/4 or 1/8 of its size by Pillow's ``draft``, then an integer box reduction), so a
12000x9000 photo never exists in memory as floats. The size in the file's header is checked
before anything is decoded: more than ``max_pixels`` (default :data:`MAX_PHOTO_PIXELS`) is refused.
Anything that is not an image raises ``ValueError`` naming the file, and so does a JPEG whose data
ends before its pixels do, which the decoder would fill with flat grey (:mod:`dreamer.pipeline.jpeg`).

:func:`load_depth` reads the depth map of that photo (``.npy`` float metres, 16-bit PNG / TIFF in
millimetres, float TIFF in metres, ``.exr`` metres when the ``OpenEXR`` package is installed) and
applies exactly the same crop / pad geometry, resampled nearest-neighbour (depth is not blended
across edges). See its docstring for how unknown and padded pixels are treated.

Both readers log what they accept but a person should hear of (a depth map mostly unknown, a
floating-point image clipped to [0, 1]) as a warning. ``warn=False`` logs it at debug level only:
the checks that read the inputs before a run (:func:`~dreamer.pipeline.preflight.check_scene`,
``zoom.run``'s) read them again when the run uses them, and a run says it once, there (and so in
the scene's ``run.log``).
"""

from __future__ import annotations

import errno
import io
import logging
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from dreamer.checks import check_int
from dreamer.pipeline.jpeg import SCAN_PADDING, JpegLayout, is_jpeg, jpeg_layout

logger = logging.getLogger(__name__)

__all__ = ["ImageFit", "LoadedImage", "compute_fit", "load_image", "load_depth", "load_depth_with_mask",
           "PAD_VALUE", "MAX_PHOTO_PIXELS", "read_npy_header", "check_input_file", "InputFileMissing",
           "looks_like_url", "unexpanded_home"]

Fit = Literal["crop", "pad"]

#: The depths (metres) a depth map may hold. Beyond them the scene's float32 geometry breaks
#: down: a map of 1e30 m gave an infinite point-to-surface error and one of 1e-30 m a NaN seam,
#: both "done". The far end is the farthest a camera may be (dreamer.cameras.MAX_CAMERA_DISTANCE).
DEPTH_RANGE = (1e-6, 1e5)

#: How a path that is a symbolic link to nothing is named in messages ("not found" would mislead).
BROKEN_LINK = "is a symbolic link that leads nowhere (a loop, or its target is missing)"

# A URL's scheme: "https://x/a.png" (Path() makes it "https:/x/a.png"); one letter is a Windows drive.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")

#: Grey used for transparent pixels and for the padding of ``fit="pad"`` (before outpainting).
PAD_VALUE = 0.5

#: Largest photo or depth map read by default, in pixels (from the file's header, before decoding):
#: 64 megapixels, above the 48-50 MP of today's phone cameras. ``max_pixels=None`` lifts it.
MAX_PHOTO_PIXELS = 64_000_000


class InputFileMissing(FileNotFoundError, ValueError):
    """An input file that is not there: a ``FileNotFoundError`` that callers catching the checks'
    ``ValueError`` catch as well."""


def looks_like_url(text: str | Path) -> bool:
    """Whether a path a person gave is a URL (``https://...``, ``s3://...``), which no input or
    output of the command lines is: they read and write local files only."""
    return bool(_URL.match(str(text)))


def unexpanded_home(path: str | Path) -> bool:
    """Whether ``path`` starts with a ``~`` or ``~user`` that names a home folder: a shell expands it,
    but not when it was quoted or read from a file (a batch, a config, the app), and the file
    system takes it as a folder named ``~``."""
    first = Path(path).parts[0] if Path(path).parts else ""
    return first.startswith("~") and os.path.expanduser(first) != first


def check_input_file(path: str | Path, what: str) -> Path:
    """The regular file a person named as ``what`` ("photo file", "batch file", ...), or a one-line
    error naming it: :class:`InputFileMissing` when it is not there (a URL, a broken symbolic link,
    a folder on its way that is a file), ``ValueError`` for a folder, a pipe or device (reading
    would block or never end), a file this process may not read, or a path the file system refuses
    (too long, a folder on its way that cannot be searched). The one check of every input file:
    photos, depth maps, trajectory, batch, config and prompts files."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        if looks_like_url(path):
            raise InputFileMissing(f"{what} {path} is a URL: only local files are read; download it first") from None
        if e.errno == errno.ELOOP or (isinstance(e, FileNotFoundError) and path.is_symlink()):
            raise InputFileMissing(f"{what} {path} {BROKEN_LINK}") from None
        if isinstance(e, (FileNotFoundError, NotADirectoryError)):
            home = (f" (its {path.parts[0]!r} is not expanded here: write the full path, "
                    f"{os.path.expanduser(path)})" if unexpanded_home(path) else "")
            raise InputFileMissing(f"{what} {path} does not exist{home}") from None
        raise ValueError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):  # a pipe would block the read forever, a device never end
        raise ValueError(f"{what} {path} is not a regular file (a pipe, a device?)")
    try:  # permissions (os.access answers for the real user id, and yes for root on any mode)
        os.close(os.open(path, os.O_RDONLY))
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    return path


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
    ``turned``: whether the file stores the photo on its side (an EXIF orientation of 90 degrees:
    its ``transform``'s sizes are the upright photo's, not the stored pixels').
    """

    image: Tensor
    outpaint_mask: Tensor | None
    transform: ImageFit
    turned: bool = False


def compute_fit(source_width: int, source_height: int, width: int, height: int, fit: Fit = "crop") -> ImageFit:
    """The :class:`ImageFit` of a ``source_width`` x ``source_height`` image on a ``width`` x
    ``height`` canvas, centred; ``fit`` is ``"crop"`` (cover) or ``"pad"`` (contain)."""
    w, h, W, H = (check_int(v, name, min=1) for name, v in (("source_width", source_width),
                                                           ("source_height", source_height),
                                                           ("width", width), ("height", height)))
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


_IMAGE_FORMATS = "an image file Pillow can read (PNG, JPEG, WebP, TIFF, BMP, GIF, ...)"
# What a depth map may be, for messages (:func:`load_depth` reads these).
_DEPTH_FORMATS = ("a depth map: .npy (float metres), a 16-bit PNG or TIFF (millimetres), a float TIFF (metres) "
                 "or .exr (metres)")


def _open(path: Path, max_pixels: int | None = MAX_PHOTO_PIXELS, what: str = "image",
          formats: str = _IMAGE_FORMATS) -> tuple:
    """Open ``path`` lazily (its header only) and check its size; the caller decodes it (:func:`_decode`).
    ``formats``: what the file may be, named when Pillow does not know it. Returns the Pillow image
    and, for a JPEG, its :class:`~dreamer.pipeline.jpeg.JpegLayout` (else None)."""
    from PIL import Image, UnidentifiedImageError

    if check_input_file(path, f"{what} file").stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), not an image file")
    source, layout = path, None
    with open(path, "rb") as f:
        jpeg = is_jpeg(f.read(3))
    if jpeg:
        data = path.read_bytes()
        layout = jpeg_layout(data)
        if layout is not None and layout.scans == 1 and layout.end is not None:
            # Without its end marker, a scan short of data raises where libjpeg would fill the
            # rest with grey and report success (see dreamer.pipeline.jpeg).
            source = io.BytesIO(b"".join((memoryview(data)[:layout.end], SCAN_PADDING)))  # one copy
    try:
        with warnings.catch_warnings():  # the size limit below decides, not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(source)
    except UnidentifiedImageError as e:
        raise ValueError(f"{path} is not {formats}") from e
    except Image.DecompressionBombError as e:  # Pillow's own guard, at twice its MAX_IMAGE_PIXELS: said as ours
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)) / 1e6:.1f} megapixels" if found else "too many pixels"
        limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
        raise ValueError(f"{path}: the {what} is {size}, more than the limit of {limit / 1e6:g} megapixels; "
                         f"downscale it (or lift the limit: --allow-large)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{path} could not be decoded as an image: {e}") from e
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        im.close()
        raise ValueError(f"{path}: the {what} is {w}x{h} ({w * h / 1e6:.1f} megapixels), more than the limit of "
                         f"{max_pixels / 1e6:g} megapixels; downscale it (or lift the limit: --allow-large)")
    return im, layout


def _decode(im, path: Path, layout: JpegLayout | None = None) -> None:
    """Decode an image opened by :func:`_open` (after any ``draft``); ``layout``: the JPEG's, which
    :func:`_open` gave. A JPEG whose data ends before its pixels do is refused, never returned
    with the decoder's grey in place of the missing blocks."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if layout is not None and "truncated" in str(e):
            raise ValueError(f"{path} could not be decoded as an image: the JPEG's data ends before the "
                             f"{layout.width}x{layout.height} pixels its header declares (a truncated or damaged file; "
                             f"a viewer shows the rest as flat grey); use a whole copy of the photo") from None
        raise ValueError(f"{path} could not be decoded as an image: {e}") from e
    if layout is not None and layout.scans > 1 and _grey_tail(im, layout):
        # A progressive file is read to its end marker whole (its scans refine one another), so a
        # short scan shows only in the pixels: the zeros the decoder put in for it are flat 128.
        raise ValueError(f"{path} could not be decoded as an image: the progressive JPEG's last row of blocks is "
                         f"the flat grey (128) its decoder puts where data is missing: a truncated or damaged file, "
                         f"or one whose header declares more pixels ({layout.width}x{layout.height}) than its data "
                         f"holds; use a whole copy of the photo (a picture that does end in flat grey: save it as PNG)")


def _grey_tail(im, layout: JpegLayout) -> bool:
    """Whether the last row of minimum coded units of a decoded JPEG (``im``, possibly at a
    reduced size by ``draft``) is exactly 128 in every channel, less its first pixel row (which the
    chroma upsampling mixes with the row above)."""
    if im.mode not in ("L", "RGB") or im.height == 0:
        return False
    start = (layout.height - 1) // layout.mcu[1] * layout.mcu[1]  # the last row of units, in the file's pixels
    first = min(math.ceil(start * im.height / layout.height) + 1, im.height - 1)
    return bool((np.asarray(im.crop((0, first, im.width, im.height))) == 128).all())


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
# EXIF orientation -> the transpose that displays the stored pixels upright (Pillow's exif_transpose).
_ORIENTATIONS = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
                 7: "TRANSVERSE", 8: "ROTATE_90"}


def _orientation(im) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is no reason to refuse the photo
        return 1
    return value if value in _ORIENTATIONS else 1


def _upright(im, orientation: int):
    from PIL import Image

    if orientation == 1:
        return im
    return im.transpose(getattr(Image.Transpose, _ORIENTATIONS[orientation]))


def _draft(im, needed: tuple[int, int]) -> int:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 of its size while it still covers ``needed`` (w, h)
    pixels; returns the factor (1 for other formats)."""
    if im.format != "JPEG":
        return 1
    w0, h0 = im.size
    im.draft(im.mode, needed)
    for factor in (8, 4, 2):
        if im.size == (-(-w0 // factor), -(-h0 // factor)):
            return factor
    return 1


def _canonical(im):
    """Any Pillow image -> one of L, RGB, RGBa (premultiplied, so that box reductions and the
    compositing over grey commute), I (16-bit values) or F."""
    mode = im.mode
    if mode in _SIXTEEN_BIT:
        return im.convert("I")
    if mode in ("I", "F", "RGB") or (mode == "L" and "transparency" not in im.info):
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "L" or mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode != "RGBA":
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...
    return im.convert("RGBa") if im.mode == "RGBA" else im


def _to_rgb_float(im) -> tuple[np.ndarray, tuple[float, float] | None]:
    """A :func:`_canonical` image -> (float32 [h,w,3] in [0,1], transparency composited over grey;
    the range of a floating-point image's values when they were clipped to [0,1], else None)."""
    mode = im.mode
    if mode == "I":
        # 16-bit grayscale (PNG opens as I;16, older Pillow as I): scale the full 16-bit range.
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"32-bit integer image with values in [{arr.min()}, {arr.max()}]: not a 16-bit image")
        gray = (arr / 65535.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1), None
    if mode == "F":
        gray = np.asarray(im, dtype=np.float32)
        if not np.isfinite(gray).all():
            raise ValueError("floating-point image holds non-finite values")
        clipped = (float(gray.min()), float(gray.max())) if gray.size and (gray.min() < 0 or gray.max() > 1) else None
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1), clipped
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if mode == "L":
        return np.repeat(arr[..., None], 3, axis=-1), None
    if mode == "RGBa":
        return arr[..., :3] + PAD_VALUE * (1.0 - arr[..., 3:4]), None
    return arr, None


def _resample_channel(channel: np.ndarray, fit: ImageFit, resample, reduced_by: int = 1,
                      offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """One float32 channel [h,w] (source, decoded at 1/``reduced_by`` of its size, cut from it at
    ``offset`` (x, y) of those pixels) -> [th,tw] (the target box), via Pillow's mode F."""
    from PIL import Image

    tx0, ty0, tx1, ty1 = fit.target_box
    box = tuple(v / reduced_by - offset[i % 2] for i, v in enumerate(fit.source_box))
    src = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))  # 2-D float32 -> mode F
    out = src.resize((tx1 - tx0, ty1 - ty0), resample=resample, box=box)
    return np.asarray(out, dtype=np.float32)


def _lanczos_window(fit: ImageFit, reduced_by: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1) of an image decoded at 1/``reduced_by`` of its size (``size``)
    that a Lanczos resampling of ``fit.source_box`` reads: the box grown by the filter's reach (3
    source pixels, times the reduction when it shrinks). Only they become floats, so a photo of an
    extreme aspect ratio costs its visible part (a 16x4000000 strip cropped to a square took 2 GB)."""
    sx0, sy0, sx1, sy1 = (v / reduced_by for v in fit.source_box)
    tx0, ty0, tx1, ty1 = fit.target_box
    reach = [math.ceil(3 * max(1.0, (hi - lo) / n)) + 1 for lo, hi, n in ((sx0, sx1, tx1 - tx0), (sy0, sy1, ty1 - ty0))]
    w, h = size
    return (max(0, math.floor(sx0) - reach[0]), max(0, math.floor(sy0) - reach[1]),
            min(w, math.ceil(sx1) + reach[0]), min(h, math.ceil(sy1) + reach[1]))


def _place(content: np.ndarray, fit: ImageFit, fill: float) -> np.ndarray:
    canvas = np.full((fit.height, fit.width) + content.shape[2:], fill, dtype=np.float32)
    tx0, ty0, tx1, ty1 = fit.target_box
    canvas[ty0:ty1, tx0:tx1] = content
    return canvas


def _check_canvas(width: int, height: int) -> None:
    check_int(width, "width", min=1)
    check_int(height, "height", min=1)


def load_image(path: str | Path, width: int, height: int, *, fit: Fit = "crop",
               max_pixels: int | None = MAX_PHOTO_PIXELS, warn: bool = True) -> LoadedImage:
    """Read an image file and fit it to ``width`` x ``height``.

    Returns a :class:`LoadedImage`: ``image`` float32 [height,width,3] in [0,1] (antialiased
    Lanczos resampling, EXIF orientation applied), ``outpaint_mask`` bool [height,width] (True on
    padding) for ``fit="pad"`` and None for ``fit="crop"``, and the ``transform`` (in the photo's
    own pixels, whatever size it was decoded at). Raises ``FileNotFoundError`` for a missing file
    and ``ValueError`` for anything that is not an image, or one of more than ``max_pixels``
    pixels (``None``: no limit but Pillow's own against decompression bombs). ``warn``: see
    the module's docstring; a floating-point image's values outside [0, 1] are clipped, and said.
    """
    from PIL import Image

    _check_canvas(width, height)
    if fit not in ("crop", "pad"):
        raise ValueError(f"fit must be 'crop' or 'pad', got {fit!r}")
    path = Path(path)
    im, layout = _open(path, max_pixels, "photo")
    with im:
        orientation = _orientation(im)
        stored_w, stored_h = im.size
        w, h = (stored_h, stored_w) if orientation in (5, 6, 7, 8) else (stored_w, stored_h)
        transform = compute_fit(w, h, width, height, fit)
        scale = min(transform.scale)  # canvas pixels per photo pixel
        needed = (max(1, math.ceil(stored_w * scale)), max(1, math.ceil(stored_h * scale)))
        factor = _draft(im, needed)
        _decode(im, path, layout)
        mode = im.mode
        pixels = _canonical(im)
        box = max(1, int(1.0 / (scale * factor) + 1e-9))  # a further box reduction that keeps >= canvas resolution
        if box > 1:
            pixels = pixels.reduce(box)
            factor *= box
        pixels = _upright(pixels, orientation)
        window = _lanczos_window(transform, factor, pixels.size)
        try:
            rgb, clipped = _to_rgb_float(pixels.crop(window))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    if clipped is not None:
        (logger.warning if warn else logger.debug)("%s: floating-point image with values in [%g, %g]: clipped to "
                                                   "[0, 1]", path, *clipped)
    content = np.stack([_resample_channel(rgb[..., c], transform, Image.Resampling.LANCZOS, factor, window[:2])
                        for c in range(3)], axis=-1)
    image = torch.from_numpy(np.clip(_place(content, transform, PAD_VALUE), 0.0, 1.0))
    mask = transform.padding_mask() if fit == "pad" else None
    logger.debug("loaded %s (%dx%d, mode %s, decoded at 1/%d) -> %dx%d (%s)", path, w, h, mode, factor, width,
                 height, fit)
    return LoadedImage(image=image, outpaint_mask=mask, transform=transform, turned=orientation in (5, 6, 7, 8))


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


def read_npy_header(path: str | Path, max_pixels: int | None = MAX_PHOTO_PIXELS,
                    check_size=None) -> tuple[tuple[int, int], np.dtype]:
    """The ``(H, W)`` and dtype of a depth ``.npy`` from its header alone, checked: real numbers, an
    [H,W] array (sizes of 1 before or after are dropped: [1,1,H,W] from torch, [H,W,1]), at most
    ``max_pixels``, ``check_size(width, height)`` when given (a caller's own limit, which raises),
    and a file as long as the header claims. So a 200-byte file claiming 80 GB costs nothing.
    Raises ValueError naming the file."""
    path = Path(path)
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f, max_header_size=100_000)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(f, max_header_size=100_000)
            else:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            offset = f.tell()
    except (ValueError, OSError, SyntaxError) as e:
        raise ValueError(f"{path} is not a readable .npy array: {e}") from e
    if dtype.kind not in "fiu":
        raise ValueError(f"{path}: a depth .npy must hold real numbers (float or integer metres), got dtype {dtype}"
                         + (" (complex)" if dtype.kind == "c" else ""))
    count = math.prod(shape)
    hw = list(shape)  # [H,W], with any leading or trailing sizes of 1 ([1,1,H,W] from torch, [H,W,1])
    while len(hw) > 2 and hw[0] == 1:
        hw.pop(0)
    while len(hw) > 2 and hw[-1] == 1:
        hw.pop()
    if len(hw) != 2:
        raise ValueError(f"{path}: a depth .npy must hold an [H,W] array (metres), got shape {shape}")
    if max_pixels is not None and count > max_pixels:
        raise ValueError(f"{path}: the depth map is {'x'.join(map(str, shape))} ({count / 1e6:.1f} megapixels), more "
                         f"than the limit of {max_pixels / 1e6:g} megapixels; downscale it (or lift the limit: "
                         f"--allow-large)")
    if check_size is not None:
        check_size(hw[1], hw[0])
    if path.stat().st_size - offset < count * dtype.itemsize:
        raise ValueError(f"{path}: the .npy header claims {'x'.join(map(str, shape))} {dtype} values "
                         f"({count * dtype.itemsize} bytes) but the file holds {path.stat().st_size - offset}: "
                         f"a truncated or damaged file")
    return (hw[0], hw[1]), dtype


def _read_npy(path: Path, max_pixels: int | None) -> np.ndarray:
    """A depth ``.npy``, its header checked first (:func:`read_npy_header`)."""
    hw, _ = read_npy_header(path, max_pixels)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path} is not a readable .npy array: {e}") from e
    arr = np.asarray(arr).reshape(hw)
    with np.errstate(over="ignore", invalid="ignore"):
        depth = arr.astype(np.float32)
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and not np.isfinite(depth).all():
        raise ValueError(f"{path}: depth values up to {float(np.abs(arr).max()):g} lie beyond float32's range; "
                         f"depth is z-depth in metres, {DEPTH_RANGE[0]:g} to {DEPTH_RANGE[1]:g} m")
    return depth


def _read_depth_file(path: Path, max_pixels: int | None = MAX_PHOTO_PIXELS) -> tuple[np.ndarray, bool]:
    """-> (depth [h,w] float32 in metres, zeros_mean_unknown)."""
    suffix = path.suffix.lower()
    check_input_file(path, "depth file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if suffix == ".npy" or magic == b"\x93NUMPY":  # a .npy array under another name is read as one
        return _read_npy(path, max_pixels), False
    if magic.startswith(b"PK\x03\x04"):  # .npz (a zip of arrays): which array is the depth is not said
        raise ValueError(f"{path} is a zip archive (.npz?), not {_DEPTH_FORMATS}; save the depth array alone "
                         f"with numpy.save (.npy)")
    if suffix == ".exr":
        depth = _read_exr(path)
        if max_pixels is not None and depth.size > max_pixels:
            raise ValueError(f"{path}: the depth map has {depth.size / 1e6:.1f} megapixels, more than the limit of "
                             f"{max_pixels / 1e6:g}; downscale it (or lift the limit: --allow-large)")
        return depth, False
    im, layout = _open(path, max_pixels, "depth map", _DEPTH_FORMATS)
    with im:
        _decode(im, path, layout)
        mode = im.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            arr = np.asarray(im)
            if mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
                raise ValueError(f"{path}: 32-bit integer depth image with values outside 0..65535 millimetres")
            return arr.astype(np.float32) / np.float32(1000.0), True
        if mode == "F":
            return np.asarray(im, dtype=np.float32), False
    raise ValueError(f"{path}: image mode {mode!r} is not a depth map; use a 16-bit PNG in millimetres, a float "
                     f"TIFF or .npy in metres, or .exr (8-bit images have no depth unit)")


def _fill_nearest(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    _, (iy, ix) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return depth[iy, ix]


def load_depth_with_mask(path: str | Path, width: int, height: int, *, fit: Fit = "crop",
                         like: LoadedImage | None = None, max_pixels: int | None = MAX_PHOTO_PIXELS,
                         warn: bool = True) -> tuple[Tensor, Tensor]:
    """Like :func:`load_depth`, also returning ``valid`` bool [H,W]: False where the depth was not
    known (zeros of a 16-bit PNG, padding) and was filled from the nearest known pixel."""
    _check_canvas(width, height)
    path = Path(path)
    raw, zeros_unknown = _read_depth_file(path, max_pixels)
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
    lo, hi = DEPTH_RANGE
    outside = known & ((raw < lo) | (raw > hi))
    if outside.any():
        values = raw[outside]
        raise ValueError(f"{path}: {int(outside.sum())} depth values outside {lo:g} to {hi:g} m (from "
                         f"{float(values.min()):g} to {float(values.max()):g}); depth is z-depth in metres")
    if zeros_unknown and not known.all():
        # Mostly unknown (a sparse sensor, or a map of the wrong kind): the first view's geometry is then
        # mostly the fill's, which a person should hear of at the default verbosity.
        log = (logger.warning if known.mean() < 0.5 else logger.info) if warn else logger.debug
        log("%s: %d of its %d depth values are 0 (unknown, %.2f%%); filled from the nearest known pixel", path,
            int((~known).sum()), known.size, 100.0 * (1 - known.mean()))
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
            turned = like.turned and abs(math.log(photo_aspect * depth_aspect)) <= 0.01
            raise ValueError(f"{path}: the depth map is {w}x{h} but the photo is {t.source_width}x{t.source_height}"
                             + (f" upright (its EXIF orientation turns the stored {t.source_height}x{t.source_width} "
                                f"pixels): give the depth map upright too" if turned else
                                ": their aspect ratios differ, so the depth does not belong to this photo"))
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
               like: LoadedImage | None = None, max_pixels: int | None = MAX_PHOTO_PIXELS, warn: bool = True) -> Tensor:
    """Read the z-depth map (metres) of a photo and fit it exactly like the photo: float32 [H,W] > 0.

    Formats: ``.npy`` (a float [H,W] array in metres), 16-bit PNG / TIFF (millimetres, as
    :func:`dreamer.io.save_depth_png16` writes), float TIFF (metres), ``.exr`` (metres; channel Z,
    depth, Y or R; needs the ``OpenEXR`` package).

    ``like``: the photo's :class:`LoadedImage`; the depth map may have another resolution than the
    photo (the same aspect ratio) and gets the same crop / pad. Without ``like`` the depth map is
    fitted as an image of its own size would be. Resampling is nearest-neighbour.

    Validation: NaN / inf anywhere, values <= 0 in ``.npy`` / float / EXR files, or known values
    outside :data:`DEPTH_RANGE`, raise ``ValueError``. Zeros in 16-bit PNGs mean "unknown" (the
    usual sensor convention): they, and the padding of ``fit="pad"``, are filled with the depth of
    the nearest known pixel so that the result is > 0 everywhere; :func:`load_depth_with_mask`
    also returns which pixels were known; a map mostly (over half) unknown is said as a warning
    (``warn``: see the module's docstring).
    Complex or non-numeric arrays, and maps of more than ``max_pixels`` pixels (read from the
    header first: a ``.npy`` claiming 80 GB is refused before anything is read), raise ``ValueError``.
    """
    return load_depth_with_mask(path, width, height, fit=fit, like=like, max_pixels=max_pixels, warn=warn)[0]
