"""Checks on what a visitor sends the app, done before any work starts; no gradio here.

Every check raises :class:`InputError` (a ``ValueError``) whose message names the field, what was
expected and what came, so the app can show it as is. Uploaded files are copied into the
session's folder under a fixed name chosen here (``photo.png``, ``depth.npy``, ...): the name the
visitor's file had never becomes part of a path.
"""

from __future__ import annotations

import json
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
    "check_prompt_lines",
    "safe_session_id",
    "check_upload",
    "copy_upload",
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
    """An input the app refuses; the message is meant for the visitor."""


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


def check_text(value, name: str, max_chars: int, *, required: bool = False) -> str:
    """A stripped string of at most ``max_chars`` characters (``None`` counts as empty)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise InputError(f"{name} is empty")
    if len(value) > max_chars:
        raise InputError(f"{name} is {len(value)} characters long; at most {max_chars} are allowed")
    if "\x00" in value:
        raise InputError(f"{name} holds a NUL character")
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
        raise InputError(f"{name} must be between {lo:g} and {hi:g}, got {value!r}")
    if multiple and int(number) % multiple:
        raise InputError(f"{name} must be a multiple of {multiple}, got {value!r}")
    return number


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


def _upload_path(value) -> Path | None:
    """The local path gradio gives for an upload: a str, a Path, a dict with 'path' or an object
    with ``.path`` / ``.name`` (gradio's FileData, tempfile wrappers)."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(value, dict) and value.get("path"):
        return Path(value["path"])
    for attr in ("path", "name"):
        if isinstance(getattr(value, attr, None), str):
            return Path(getattr(value, attr))
    raise InputError(f"unexpected upload value of type {type(value).__name__}")


def check_upload(value, name: str, allowed: tuple[str, ...], limits: Limits) -> Path | None:
    """The path of an uploaded file after checking that it exists, is a regular file, has an allowed
    extension and is not too large; ``None`` when nothing was uploaded. Photos are also opened
    (header only) to check that they are images of an acceptable size."""
    path = _upload_path(value)
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
    elif allowed is TRAJECTORY_TYPES:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{name}: not a valid JSON file ({e})") from None
    return path


def _check_image_header(path: Path, name: str, limits: Limits) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: not a readable image ({type(e).__name__}); upload a PNG, JPEG or WebP photo") from None
    except Image.DecompressionBombError:
        raise InputError(f"{name}: the image has too many pixels; at most {limits.max_image_side} px per side") from None
    if max(width, height) > limits.max_image_side:
        raise InputError(f"{name}: the image is {width}x{height} px; at most {limits.max_image_side} px per side "
                         f"are accepted (downscale it first)")
    if min(width, height) < limits.min_image_side:
        raise InputError(f"{name}: the image is {width}x{height} px; at least {limits.min_image_side} px per side "
                         f"are needed")


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
