"""Checks on what a visitor sends the app, done before any work starts; no gradio here.

Every check raises :class:`InputError` (a ``ValueError``) whose message names the field, what was
expected and what came, so the app can show it as is. Uploaded files are copied into the
session's folder under a fixed name chosen here (``photo.png``, ``depth.npy``, ...): the name the
visitor's file had never becomes part of a path.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "InputError",
    "Limits",
    "check_text",
    "check_number",
    "check_flag",
    "check_prompt_lines",
    "safe_session_id",
    "check_upload",
    "copy_upload",
    "upload_message",
    "check_scene_request",
    "check_trajectory_limits",
    "IMAGE_TYPES",
    "DEPTH_TYPES",
    "TRAJECTORY_TYPES",
]

IMAGE_TYPES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""Photos the app accepts."""
DEPTH_TYPES = (".npy", ".png", ".tif", ".tiff", ".exr")
"""Depth maps the app accepts (see :func:`dreamer.pipeline.inputs.load_depth`)."""
TRAJECTORY_TYPES = (".json",)
"""Trajectory files the app accepts (see :func:`dreamer.trajectories.load_trajectory`)."""


class InputError(ValueError):
    """An input the app refuses; the message is meant for the visitor, at most
    :data:`dreamer.cli.MAX_MESSAGE` characters (it quotes what came, which may be long)."""

    def __init__(self, message: str) -> None:
        from dreamer.cli import shorten

        super().__init__(shorten(str(message)))


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_prompt_chars: int = 1000
    """Longest prompt (and negative prompt), in characters."""
    max_upload_mb: float = 25.0
    """Largest uploaded file, in megabytes."""
    max_image_side: int = 4096
    """Longest side of an uploaded photo, in pixels."""
    min_image_side: int = 16
    """Shortest side of an uploaded photo, in pixels."""
    max_zoom_lines: int = 16
    """Most prompt lines in the zoom tab."""
    max_views: int = 64
    """Most cameras of a scene (the form's Views slider; an uploaded trajectory file too)."""
    max_size: int = 1024
    """Largest image width or height of a scene's cameras (the form's Image size slider; trajectory files too)."""


def check_text(value, name: str, max_chars: int, *, required: bool = False) -> str:
    """A stripped string of at most ``max_chars`` characters (``None`` counts as empty), with no
    control characters other than tabs and line breaks."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}")
    from dreamer import checks

    try:  # before stripping, so that the line it names is the one the visitor sees
        checks.check_text(value, name)
    except ValueError as e:
        raise InputError(str(e)) from None
    value = value.strip()
    if required and not value:
        raise InputError(f"{name} is empty")
    if len(value) > max_chars:
        raise InputError(f"{name} is {len(value)} characters long; at most {max_chars} are allowed")
    return value


def check_number(value, name: str, lo: float, hi: float, *, integer: bool = False, multiple: int | None = None):
    """``value`` as an int (``integer``) or float in ``[lo, hi]`` (and a multiple of ``multiple``)."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if integer:
        if number != int(number):
            raise InputError(f"{name} must be a whole number, got {value!r}")
        number = int(number)
    if not lo <= number <= hi:
        shown = (f"{int(lo)} and {int(hi)}" if integer else f"{lo:g} and {hi:g}")
        raise InputError(f"{name} must be between {shown}, got {value!r}")
    if multiple and int(number) % multiple:
        raise InputError(f"{name} must be a multiple of {multiple}, got {value!r}")
    return number


def check_seed(value, name: str = "Seed") -> int:
    """A seed: a whole number in the command lines' range, 0 to
    :data:`~dreamer.pipeline.limits.MAX_SEED` (2**32 - 1), so that a seed a visitor uses here
    reproduces the scene or stack with ``--seed`` and back."""
    from dreamer.pipeline.limits import MAX_SEED

    return check_number(value, name, 0, MAX_SEED, integer=True)


def check_flag(value, name: str) -> bool:
    """A checkbox: True or False (``None`` counts as False); "no" is not False, so it is refused."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false, got {value!r}")
    return value


def check_prompt_lines(text, name: str, limits: Limits, *, required: bool = True) -> list[str]:
    """Non-empty lines of ``text`` (one prompt each), each within the prompt length limit."""
    text = check_text(text, name, limits.max_prompt_chars * limits.max_zoom_lines, required=required)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > limits.max_zoom_lines:
        raise InputError(f"{name}: at most {limits.max_zoom_lines} lines, got {len(lines)}")
    for i, line in enumerate(lines, 1):
        check_text(line, f"{name} line {i}", limits.max_prompt_chars)
    return lines


_SESSION_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def safe_session_id(session_hash: str | None) -> str:
    """A folder name for a visitor: letters, digits, ``_`` and ``-`` only (a fresh id if none)."""
    cleaned = _SESSION_CHARS.sub("", session_hash or "")[:64]
    return cleaned or f"anon-{uuid.uuid4().hex[:12]}"


def _upload_path(value, name: str) -> Path | None:
    """The local path gradio gives for an upload: a str, a Path, a dict with 'path' or an object
    with ``.path`` / ``.name`` (gradio's FileData, tempfile wrappers)."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(value, dict) and isinstance(value.get("path"), str) and value["path"]:
        return Path(value["path"])
    for attr in ("path", "name"):
        if isinstance(getattr(value, attr, None), str):
            return Path(getattr(value, attr))
    raise InputError(f"{name}: unexpected upload value of type {type(value).__name__}")


def check_upload(value, name: str, allowed: tuple[str, ...], limits: Limits) -> Path | None:
    """The path of an uploaded file after checking that it exists, is a regular file, has an allowed
    extension and is not too large; ``None`` when nothing was uploaded. Photos are also opened
    (header only) to check that they are images of an acceptable size."""
    path = _upload_path(value, name)
    if path is None:
        return None
    if not path.is_file():
        raise InputError(f"{name}: the upload did not arrive (no file)")
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise InputError(f"{name}: files of type {suffix or '(none)'} are not accepted; use one of "
                         f"{', '.join(allowed)}")
    size_mb = path.stat().st_size / 1e6
    if size_mb > limits.max_upload_mb:
        raise InputError(f"{name}: the file is {size_mb:.1f} MB; at most {limits.max_upload_mb:g} MB are accepted")
    if path.stat().st_size == 0:
        raise InputError(f"{name}: the file is empty")
    if allowed is IMAGE_TYPES:
        _check_image_header(path, name, limits)
    elif allowed is DEPTH_TYPES:
        _check_depth_header(path, name, limits)
    elif allowed is TRAJECTORY_TYPES:
        from dreamer.cli import parse_json

        try:
            data = parse_json(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise InputError(f"{name}: not a valid JSON file ({e})") from None
        check_trajectory_limits(data, name, limits)
    return path


def _count_frames(data) -> int | None:
    """How many cameras a trajectory file's JSON makes, counted without making them (keyframes
    are not interpolated); None when the layout is not recognised (the reader reports it)."""
    if isinstance(data, list):
        return len(data)
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("frames"), list):  # nerfstudio transforms.json
        return len(data["frames"])
    if isinstance(data.get("cameras"), list):
        return len(data["cameras"])
    keyframes = data.get("keyframes")
    if isinstance(keyframes, list):
        if "frames" in data:
            return int(data["frames"]) if _is_count(data["frames"]) else None
        counts = [k.get("frames") for k in keyframes[:-1] if isinstance(k, dict)]
        if all(_is_count(c) for c in counts):
            return int(sum(counts)) + 1
    return None


def _is_count(value) -> bool:
    """A frame count the reader takes (an integer >= 1, 512.0 too); others (inf, -5, 2.5, "10")
    are left to the reader, which names them (int(inf) raised OverflowError here)."""
    return (isinstance(value, int) and not isinstance(value, bool) and value >= 1) or \
        (isinstance(value, float) and value.is_integer() and value >= 1)


def check_trajectory_limits(data, name: str, limits: Limits) -> None:
    """A trajectory file's JSON asks for at most ``limits.max_views`` cameras of at most
    ``limits.max_size`` pixels a side: checked on the numbers it states, before any camera is made."""
    frames = _count_frames(data)
    if frames is not None and not 1 <= frames <= limits.max_views:
        raise InputError(f"{name}: the file asks for {frames} cameras; a scene here has 1 to {limits.max_views} "
                         f"(the Views limit)")
    entries = []
    if isinstance(data, dict):
        entries.append(data)
        for key in ("cameras", "keyframes", "frames"):
            if isinstance(data.get(key), list):
                entries += [e for e in data[key] if isinstance(e, dict)]
    elif isinstance(data, list):
        entries += [e for e in data if isinstance(e, dict)]
    for entry in entries:
        for key in ("width", "height", "w", "h"):
            v = entry.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > limits.max_size:  # NaN: the reader's
                raise InputError(f"{name}: a camera's {key} is {v:g} px; at most {limits.max_size} px per side "
                                 f"(the Image size limit)")


def _check_image_header(path: Path, name: str, limits: Limits, what: str = "image") -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            im.verify()
    except Image.DecompressionBombError:
        raise InputError(f"{name}: the {what} has too many pixels; at most {limits.max_image_side} px per side"
                         ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: not a readable {what} ({type(e).__name__}); upload a PNG, JPEG or WebP photo"
                         if what == "image" else f"{name}: not a readable {what} ({type(e).__name__})") from None
    _check_side(width, height, name, limits, what)


def _check_side(width: int, height: int, name: str, limits: Limits, what: str) -> None:
    if max(width, height) > limits.max_image_side:
        raise InputError(f"{name}: the {what} is {width}x{height} px; at most {limits.max_image_side} px per side "
                         f"are accepted (downscale it first)")
    if min(width, height) < limits.min_image_side:
        raise InputError(f"{name}: the {what} is {width}x{height} px; at least {limits.min_image_side} px per side "
                         f"are needed")


def _check_depth_header(path: Path, name: str, limits: Limits) -> None:
    """A depth map's size and type from its header, before anything is decoded: the same pixel
    limit as photos, real numbers only."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        from dreamer.pipeline.inputs import read_npy_header

        try:  # the header only, not the data: the command line's check, with the app's side limit
            read_npy_header(path, max_pixels=None,
                            check_size=lambda w, h: _check_side(w, h, name, limits, "depth map"))
        except ValueError as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"{name}: {str(e).replace(str(path) + ': ', '').replace(str(path), 'the file')}") from None
    elif suffix == ".exr":
        width, height = _exr_size(path, name)
        _check_side(width, height, name, limits, "depth map")
    else:
        _check_image_header(path, name, limits, what="depth map")


def _exr_size(path: Path, name: str) -> tuple[int, int]:
    """Width and height of an OpenEXR file from its header's ``dataWindow`` (box2i)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(65536)
    if head[:4] != b"\x76\x2f\x31\x01":
        raise InputError(f"{name}: not an OpenEXR file")
    pos = 8
    while pos < len(head) and head[pos] != 0:
        end = head.find(b"\0", pos)
        tend = head.find(b"\0", end + 1)
        if end < 0 or tend < 0 or tend + 5 > len(head):
            break
        attr, kind = head[pos:end], head[end + 1:tend]
        (size,) = struct.unpack("<i", head[tend + 1:tend + 5])
        value = head[tend + 5:tend + 5 + size]
        if attr == b"dataWindow" and kind == b"box2i" and len(value) == 16:
            x0, y0, x1, y1 = struct.unpack("<4i", value)
            return x1 - x0 + 1, y1 - y0 + 1
        pos = tend + 5 + size
    raise InputError(f"{name}: the OpenEXR header has no readable dataWindow")


_FIELDS = {"photo": "Photo", "depth": "Depth map", "trajectory": "Trajectory file"}


def upload_message(error: BaseException, folder: Path) -> str:
    """A check's message about the uploads copied into ``folder`` (:func:`copy_upload`), for the
    visitor: the server's path left out, prefixed with the field it names (``Photo: ...``)."""
    text = " ".join(str(error).replace(str(folder) + "/", "").split())
    for stem, field in _FIELDS.items():
        if re.search(rf"\b{stem}\.[a-z0-9]+\b", text):
            return f"{field}: {text}"
    return text


def check_scene_request(configs, folder: Path, limits: Limits) -> None:
    """The command line's checks of a scene request (:func:`dreamer.pipeline.preflight.check_scene`)
    within the app's ``limits``, before any model loads; an :class:`InputError` for the visitor
    otherwise, paths under ``folder`` (the job's files on the server) left out of its message."""
    from dreamer.pipeline.limits import Limits as RunLimits
    from dreamer.pipeline.preflight import ModelSourceMissing, check_scene

    try:
        check_scene(configs, limits=RunLimits(side=limits.max_size, views=limits.max_views))
    except ModelSourceMissing as e:
        raise InputError(f"The models of this set are not available here. {e}") from None
    except (ValueError, TypeError) as e:
        # The command line's hints name a flag a visitor cannot give.
        text = _LIFT_IN_BRACKETS.sub(")", upload_message(e, folder))
        raise InputError(_LIFT_ALONE.sub("", text)) from None


# The command line's hints to lift a limit, in each form its messages give them: "(the limit on
# views; --allow-large lifts it)", "(--allow-large lifts it)", "(--allow-large lifts the limit)",
# "(or lift the limit: --allow-large)".
_LIFT_IN_BRACKETS = re.compile(r"; --allow-large lifts it\)")
_LIFT_ALONE = re.compile(r" \((?:--allow-large lifts (?:it|the limit)|or lift the limit: --allow-large)\)")


def copy_upload(path: Path | None, folder: Path, stem: str) -> str | None:
    """Copy a checked upload into ``folder`` as ``stem`` + its (checked, lower-cased) extension and
    return the new path; the uploaded file's own name is not used."""
    if path is None:
        return None
    if not re.fullmatch(r"[a-z0-9_]+", stem):
        raise ValueError(f"stem must be lower-case letters, digits and '_', got {stem!r}")
    folder.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        raise InputError(f"unexpected file extension {suffix!r}")
    target = folder / f"{stem}{suffix}"
    shutil.copyfile(path, target)
    return str(target)
