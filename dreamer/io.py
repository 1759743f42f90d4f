"""Files at the edges: atomic writes, images, depth maps, JSON.

Every writer goes through :func:`atomic_path`: the data goes to a temporary name in the same
folder and is renamed into place, so an interrupted run leaves either the complete file or none.
A run killed in the middle of a write (``kill -9``) can leave its temporary behind;
:func:`remove_temporaries` deletes those of a folder the next run owns. Files are created with
the usual permissions (``0666`` less the process's umask), like any other file the user makes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

__all__ = ["atomic_path", "remove_temporaries", "write_json", "read_json", "save_image", "load_image_tensor",
           "save_depth_npy", "save_depth_png16", "to_uint8", "even_sides", "VIDEO_WRITER_ARGS", "read_ply",
           "file_sha256"]


# A temporary of atomic_path: ".<name>.<8 random characters>.tmp<suffix>" (the suffix is kept so that
# writers that pick a format by extension, such as video writers, still see it).
_TEMPORARY = re.compile(r"^\..+\.[0-9a-z_]{8}\.tmp(\.[^./]+)?$")


def _create_temporary(path: Path) -> Path:
    """Create an empty, new temporary file beside ``path`` and return its name.

    ``os.open`` with mode 0666 lets the umask decide the permissions, as for any file the user
    creates (``tempfile.mkstemp`` would make it 0600, and the rename would keep that)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_temporaries(folder: str | Path, subfolders: Iterable[str] = ()) -> list[Path]:
    """Delete the temporaries :func:`atomic_path` left in ``folder`` and in its ``subfolders`` (and
    theirs: the run's own folders) by a run killed while writing; return what was deleted. Only
    for folders no other process writes to. Other subfolders are not read: an output folder may be
    a home folder (``--out ~``), whose whole tree took minutes to walk and is not the run's."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    places = [(folder, [], [e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False)])]
    for sub in subfolders:
        if (folder / sub).is_dir() and not (folder / sub).is_symlink():
            places += os.walk(folder / sub)
    removed = []
    for dirpath, _, names in places:
        for name in names:
            if _TEMPORARY.match(name):
                p = Path(dirpath) / name
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _json_safe(data):
    """``data`` with every non-finite float (NaN, +-inf) replaced by None, in nested dicts,
    lists and tuples."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json_safe(v) for v in data]
    return data


def write_json(path: str | Path, data) -> None:
    """Write ``data`` as JSON (indented), atomically. JSON has no NaN or infinity (Python's
    ``NaN`` / ``Infinity`` are an extension that JavaScript's ``JSON.parse``, jq and most
    parsers refuse): non-finite floats, such as the metrics of a scene with one camera or the
    PSNR of a perfect match, are written as null."""
    text = json.dumps(_json_safe(data), indent=2, sort_keys=False, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in blocks of 1 MiB (a large file is not held whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_ply(path: str | Path, what: str = "a PLY point cloud"):
    """A PLY file's ``plyfile.PlyData``, its ``vertex`` element's properties checked to be numbers.

    Raises FileNotFoundError for a missing file and ValueError naming the file and ``what`` was
    expected for anything that is not a readable PLY (another format renamed ``.ply``, an empty or
    truncated file, a header whose counts the data does not hold) or whose vertex properties are
    lists: plyfile's own errors, and numpy's on the lists, name neither."""
    from plyfile import PlyData, PlyParseError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:3] != b"ply" or head[3:] not in (b"\n", b"\r"):
        found = "it is empty" if not head else f"it begins with {head!r}, not the line 'ply'"
        raise ValueError(f"{path}: not a readable PLY file ({found}); expected {what}")
    try:
        ply = PlyData.read(str(path))
    except (PlyParseError, ValueError, UnicodeDecodeError, EOFError, IndexError, MemoryError) as e:
        raise ValueError(f"{path}: not a readable PLY file ({e}); expected {what}") from None
    if "vertex" in ply:
        dtype = ply["vertex"].data.dtype
        lists = [n for n in dtype.names or () if dtype[n].kind not in "biuf"]
        if lists:
            raise ValueError(f"{path}: vertex properties {lists} are lists; expected {what}, one number per "
                             f"property and vertex")
    return ply


def to_uint8(image: Tensor) -> np.ndarray:
    """float [H,W,3] in [0,1] -> uint8 [H,W,3] (rounded)."""
    return (image.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def save_image(path: str | Path, image: Tensor) -> None:
    """Save a float [H,W,3] (or bool/float [H,W] mask) image as PNG, atomically."""
    from PIL import Image

    if image.dtype == torch.bool:
        arr = image.cpu().numpy().astype(np.uint8) * 255
    else:
        arr = to_uint8(image)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


def load_image_tensor(path: str | Path) -> Tensor:
    """An image file -> float32 [H,W,3] in [0,1] (no resizing; see dreamer.pipeline.inputs for that)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy())


def save_depth_npy(path: str | Path, depth: Tensor) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, depth.detach().cpu().float().numpy())


def save_depth_png16(path: str | Path, depth: Tensor, *, exact: str | Path | None = None) -> int:
    """z-depth as a 16-bit PNG in millimetres; return how many pixels were written as unknown (0).

    A 16-bit millimetre PNG holds 1 mm to 65.535 m. A pixel farther than that is written as 0,
    "unknown", the depth sensors' convention for out-of-range pixels and how the readers of these
    PNGs take a 0 (:func:`dreamer.pipeline.inputs.load_depth` fills it from its neighbours,
    nerfstudio's depth losses skip it): clipped to 65.535 m it would read back as a wrong depth.
    A warning says how many pixels that is and, when ``exact`` names it, where the exact depth is
    (the run's float32 ``.npy`` beside the PNG). Depths under 0.5 mm round to 0 as well."""
    from PIL import Image

    metres = depth.detach().cpu().double().numpy()
    mm = np.floor(metres * 1000.0 + 0.5)  # rounded half up, as before
    far = ~(mm <= 65535)  # NaN too
    mm = np.where(far, 0, np.clip(mm, 0, 65535)).astype(np.uint16)
    with atomic_path(path) as tmp:
        Image.fromarray(mm).save(tmp, format="PNG")
    n_far = int(far.sum())
    if n_far:
        finite = metres[far & np.isfinite(metres)]
        farthest = f" (up to {finite.max():.1f} m)" if finite.size else ""
        where = f"; the exact depth is in {exact}" if exact is not None else ""
        log.warning("%s: %d pixels lie beyond 65.535 m%s, the farthest a 16-bit millimetre PNG holds; "
                    "written as 0 (unknown)%s", path, n_far, farthest, where)
    return n_far


VIDEO_WRITER_ARGS = dict(format="FFMPEG", codec="libx264", pixelformat="yuv420p", macro_block_size=2)
"""imageio's FFMPEG writer settings for every video (H.264, yuv420p), each frame passed
through :func:`even_sides`: yuv420p needs even sides, and imageio's default (rescaling each side
up to a multiple of 16) stretches the picture, 33 x 31 to 48 x 32."""


def even_sides(frame: np.ndarray) -> np.ndarray:
    """``frame`` [H,W,3] with a copy of its last row / column added where H / W is odd: the
    even size yuv420p needs, without rescaling."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
