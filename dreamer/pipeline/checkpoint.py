"""Checkpoints of the dream loop: resume a scene exactly where it stopped, reuse it when finished.

While the loop runs, a checkpoint folder holds one file per finished view (written once) and the
merged point cloud after the last finished view (rewritten after each view), both atomically. The
cloud file names how many views it includes, so a crash between the two writes can never pair a
cloud with the wrong views. When the dream is finished (joint refinement included), its result
goes to one file, ``result.pt`` (:func:`save_finished`): a rerun that changed only a later stage
loads it (:func:`load_finished`) instead of dreaming or refining again, and the per-view files
are no longer needed (:func:`drop_loop_files`). Files are read with ``weights_only=True``
(tensors and plain data, never code); a file that cannot be read that way raises
:class:`CheckpointError` naming it, and the scene is not started over behind the user's back
(its views may have cost hours): ``--restart`` does that.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from dreamer.cameras import Camera
from dreamer.io import atomic_path
from dreamer.pointcloud import PointCloud
from dreamer.scene.result import DreamResult, DreamView

__all__ = ["save_checkpoint", "load_checkpoint", "save_finished", "load_finished", "drop_loop_files",
           "check_checkpoints", "CheckpointError", "FINISHED_FILE"]

FINISHED_FILE = "result.pt"
"""The finished dream's file in a checkpoint folder."""


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded safely (damaged, foreign, or from another version)."""


def _load(path: Path, *, mmap: bool = False) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        if not isinstance(state, dict):
            raise TypeError(f"expected a dict, got {type(state).__name__}")
        return state
    except Exception as e:  # torch raises many kinds for damaged or unsafe files
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path} cannot be loaded safely ({type(e).__name__}: {reason}); rerun with "
                              f"--restart to start this scene over") from e


def _view_file(folder: Path, index: int) -> Path:
    return folder / f"view_{index:03d}.pt"


def save_checkpoint(folder: str | Path, result: DreamResult, extra: dict | None = None) -> None:
    """Write the views that are not on disk yet, then the cloud (tagged with the view count and
    ``extra``, plain values that belong to this state, e.g. how far a pass got)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(result.views):
        path = _view_file(folder, i)
        if path.exists():
            continue
        with atomic_path(path) as tmp:
            torch.save({"camera": v.camera.to_dict(), "image": v.image.cpu(), "depth": v.depth.cpu(),
                        "mask": v.mask.cpu(), "prompt": v.prompt, "stats": v.stats,
                        "estimate": None if v.estimate is None else v.estimate.cpu(),
                        "known": None if v.known is None else v.known.cpu()}, tmp)
    p = result.points.owned()  # a grown cloud's tensors are views of a larger buffer
    with atomic_path(folder / "points.pt") as tmp:
        torch.save({"views": len(result.views), "xyz": p.xyz.cpu(), "rgb": p.rgb.cpu(), "radius": p.radius.cpu(),
                    "extra": dict(extra or {})}, tmp)


def _view_state(v: DreamView) -> dict:
    return {"camera": v.camera.to_dict(), "image": v.image.cpu(), "depth": v.depth.cpu(), "mask": v.mask.cpu(),
            "prompt": v.prompt, "stats": v.stats, "estimate": None if v.estimate is None else v.estimate.cpu(),
            "known": None if v.known is None else v.known.cpu()}


def _view(v: dict) -> DreamView:
    return DreamView(Camera.from_dict(v["camera"]), v["image"], v["depth"], v["mask"], v["prompt"], v["stats"],
                     v.get("estimate"), known=v.get("known"))


def save_finished(folder: str | Path, result: DreamResult) -> None:
    """Write the finished dream (every view as the loop and the joint refinement left it, and the
    cloud) to ``folder/result.pt``, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = result.points.owned()
    with atomic_path(folder / FINISHED_FILE) as tmp:
        torch.save({"views": [_view_state(v) for v in result.views],
                    "points": {"xyz": p.xyz.cpu(), "rgb": p.rgb.cpu(), "radius": p.radius.cpu()}}, tmp)


def load_finished(folder: str | Path) -> DreamResult | None:
    """The finished dream saved in ``folder`` by :func:`save_finished`, or None when there is none.
    Raises :class:`CheckpointError` for a file that cannot be loaded safely."""
    path = Path(folder) / FINISHED_FILE
    if not path.exists():
        return None
    state = _load(path)
    try:
        views = [_view(v) for v in state["views"]]
        p = state["points"]
        points = PointCloud(p["xyz"], p["rgb"], p["radius"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} holds a result of another layout ({type(e).__name__}: {e}); rerun with "
                              f"--restart to start this scene over") from e
    return DreamResult(points, views)


def drop_loop_files(folder: str | Path) -> int:
    """Delete the loop's per-view files and cloud from ``folder`` (once :func:`save_finished` holds
    the finished dream, nothing resumes from them); returns the bytes freed."""
    freed = 0
    for path in [*Path(folder).glob("view_[0-9][0-9][0-9]*.pt"), Path(folder) / "points.pt"]:
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
    return freed


# The entries each checkpoint file holds (what save_finished and save_checkpoint write, and the
# loaders read: a view's "estimate" and "known" may be missing, as in older files).
_VIEW = {"camera", "image", "depth", "mask", "prompt", "stats"}
_CLOUD = {"xyz", "rgb", "radius"}


def _missing(state, keys: set[str], what: str = "") -> list[str]:
    """The ``keys`` that mapping ``state`` lacks, named ``what`` + key."""
    if not isinstance(state, dict):
        return [f"{what.rstrip('.') or 'entries'} (a mapping)"]
    return [f"{what}{key}" for key in sorted(keys - set(state))]


def _layout_missing(path: Path, state: dict) -> list[str]:
    """The entries of its layout that ``state``, read from ``path``, lacks."""
    if path.name.startswith("view_"):
        return _missing(state, _VIEW)
    if path.name == "points.pt":
        return _missing(state, {"views"} | _CLOUD)
    missing = _missing(state, {"views", "points"})
    if "points" in state:
        missing += _missing(state["points"], _CLOUD, "points.")
    if "views" in state:
        views = state["views"]
        if not isinstance(views, list):
            return missing + ["views (a list)"]
        for i, view in enumerate(views):
            missing += _missing(view, _VIEW, f"views[{i}].")
    return missing


def check_checkpoints(folder: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the first checkpoint file in ``folder`` that a resume
    would read (the finished dream, else the loop's cloud and views) and that cannot be loaded
    safely or lacks the entries of its layout. Before any model loads: the files are
    memory-mapped, so their tensors are not read (a damaged tensor still fails later, when it is
    loaded)."""
    folder = Path(folder)
    finished = folder / FINISHED_FILE
    files = [finished] if finished.exists() else [folder / "points.pt",
                                                   *sorted(folder.glob("view_[0-9][0-9][0-9]*.pt"))]
    for path in files:
        if not path.exists():
            continue
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
            raise CheckpointError(f"{path} cannot be loaded safely (not a checkpoint this program wrote: damaged, "
                                  f"or another program's file); rerun with --restart to start this scene over")
        missing = _layout_missing(path, _load(path, mmap=True))
        if missing:
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise CheckpointError(f"{path} holds a checkpoint of another layout (no {shown}); rerun with --restart "
                                  f"to start this scene over")


def load_checkpoint(folder: str | Path, *, with_extra: bool = False):
    """The result saved in ``folder``, or None when there is no usable checkpoint; with
    ``with_extra`` a pair (result, extra) (``(None, {})`` when there is none)."""
    folder = Path(folder)
    points_file = folder / "points.pt"
    none = (None, {}) if with_extra else None
    if not points_file.exists():
        return none
    state = _load(points_file)
    views = []
    try:
        n = int(state["views"])
        for i in range(n):
            path = _view_file(folder, i)
            if not path.exists():
                return none
            v = _load(path)
            views.append(DreamView(Camera.from_dict(v["camera"]), v["image"], v["depth"], v["mask"], v["prompt"],
                                   v["stats"], v.get("estimate"), known=v.get("known")))
        points = PointCloud(state["xyz"], state["rgb"], state["radius"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder} holds a checkpoint of another layout ({type(e).__name__}: {e}); rerun "
                              f"with --restart to start this scene over") from e
    result = DreamResult(points, views)
    return (result, dict(state.get("extra") or {})) if with_extra else result
