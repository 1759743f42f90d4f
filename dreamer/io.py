"""Files at the edges: atomic writes, images, depth maps, JSON.

Every writer goes through :func:`atomic_path`: the data goes to a temporary name in the same
folder and is renamed into place, so an interrupted run leaves either the complete file or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = ["atomic_path", "remove_stale_temporaries", "write_json", "read_json", "save_image", "load_image_tensor",
           "save_depth_npy", "save_depth_png16", "to_uint8"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# The names atomic_path gives its temporary files: ".NAME." + 8 random characters + ".tmp" + suffix.
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[^.]*)?")


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files of :func:`atomic_path` under ``folder``: a process killed in the
    middle of a write (SIGKILL, a lost machine) leaves one behind. Call it only when nothing else
    writes there. Returns how many were removed."""
    removed = 0
    for p in Path(folder).rglob(".*"):
        if p.is_file() and _TEMPORARY.fullmatch(p.name):
            p.unlink()
            removed += 1
    return removed


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


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


def save_depth_png16(path: str | Path, depth: Tensor) -> None:
    """z-depth as a 16-bit PNG in millimetres (clipped to 65.535 m)."""
    from PIL import Image

    mm = np.clip(depth.detach().cpu().double().numpy() * 1000.0 + 0.5, 0, 65535).astype(np.uint16)
    with atomic_path(path) as tmp:
        Image.fromarray(mm).save(tmp, format="PNG")
