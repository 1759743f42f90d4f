"""A scene's folder: what it owns, whether a run may reuse it, and what it costs on disk.

A rerun reuses a scene folder when the settings its dream depends on are those it was made with
(:meth:`~dreamer.pipeline.settings.SceneConfigs.dream_hash`). When they changed, the folder's
finished work (views that may have cost hours) no longer fits: a run refuses it with
:class:`SettingsChanged`, naming what changed, unless told to start the scene over
(``--overwrite`` on the command line; ``--restart`` starts a scene over even when nothing
changed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from dreamer.io import file_sha256, read_json

__all__ = ["OWNED", "SettingsChanged", "NotASceneFolder", "check_scene_folder", "check_inputs_kept", "clear_outputs",
           "changed_settings", "INPUTS_RECORD", "record_inputs", "input_digests", "DREAM_INPUTS",
           "changed_later_inputs", "has_outputs", "disk_usage", "largest_entries", "format_bytes", "publish_file"]

OWNED = ("views", "checkpoint", "complete", "splats", "videos", "points.ply", "cameras.json", "transforms.json",
         "metrics.json", "first_view.png", "prompt.txt", "DONE", "gaussians.ply", "gaussians.spz", "zoom")
"""The files and folders a scene owns: deleted when it starts over (nothing else in its folder is;
``extensions/`` stays, since config.json may name trajectory files in it)."""

INPUTS_RECORD = "inputs.json"
"""Beside config.json: the SHA-256 of each input file the scene read (photo, depth map, trajectory
file, render trajectory file, extension files), so a rerun notices a file replaced at the same path
(the settings name paths, not contents)."""

DREAM_INPUTS = ("image", "depth", "trajectory")
"""The settings naming the dream's input files: one of other content refuses the folder's work, as
a change of the dream's settings does. The later stages' files (``render_trajectory``, each of
``extensions``) redo only the stages that read them, as a change of their settings does."""


# Settings that change no output (the hashes leave them out too).
_NOT_COMPARED = {"device", "dtype", "depth_dtype", "cpu_offload", "checkpoint_every", "log_every"}
# The settings of later stages: changing them redoes only their own stage, never the dream.
_LATER_STAGES = {"render_trajectory", "render_frames", "extensions", "extension_iterations"}


class SettingsChanged(ValueError):
    """A scene folder holds finished work made with other settings than this run's."""


class NotASceneFolder(ValueError):
    """An output folder holding files of a scene's names (``zoom/``, ``views/``, ``config.json``, ...)
    that no scene made: a run would overwrite or delete them."""


def _is_scene_config(cfg: Path) -> bool:
    try:
        data = read_json(cfg)
    except (ValueError, OSError):
        return False
    return isinstance(data, dict) and "dream_hash" in data


def check_scene_folder(out: Path, *, take_over: bool = False) -> None:
    """Raise :class:`NotASceneFolder` when ``out`` is not a new, empty or scene folder but holds
    entries a run would overwrite or delete (:data:`OWNED`, ``config.json``, ``inputs.json``): ``--out .`` in a
    source tree with a ``zoom/`` package, a photo library with a ``views/`` folder, another tool's
    ``config.json``. Files of other names (a photo beside the scene, notes) are left alone and
    allowed. ``take_over`` (``--overwrite`` / ``--restart``) lets a run start over a folder whose
    ``config.json`` is damaged or another tool's; a folder without any ``config.json`` is never
    taken over (a scene writes its config.json before anything else, so one without it is not a
    scene's)."""
    out = Path(out)
    cfg = out / "config.json"
    if not out.is_dir() or (cfg.is_file() and _is_scene_config(cfg)):
        return
    clash = sorted(name for name in (*OWNED, "config.json", INPUTS_RECORD)
                   if (out / name).exists() or (out / name).is_symlink())
    if not clash or (cfg.is_file() and take_over):
        return
    shown = ", ".join(clash[:4]) + (f" and {len(clash) - 4} more" if len(clash) > 4 else "")
    if cfg.is_file():  # (a folder named config.json is no scene's, and --overwrite does not take it over)
        hint = ("its config.json is not a scene's settings (damaged, or another tool's); --overwrite or --restart "
                "starts a scene there, deleting those entries, or choose another --out")
    else:
        hint = ("it is not a scene folder (no scene config.json), so they are not a scene's outputs; choose "
                "another --out")
    raise NotASceneFolder(f"the output folder {out} holds {shown}, which a run would overwrite or delete: {hint}")


def check_inputs_kept(out: Path, configs, how: str) -> None:
    """Raise ValueError when an input file of ``configs`` (photo, depth map, trajectory files) lies
    among what starting the scene in ``out`` over deletes (:data:`OWNED`): ``--image
    scene/views/000.png --out scene --restart`` deleted its photo, then failed reading it (after
    the models loaded). ``how`` names what starts it over (``--restart``, ``--overwrite``)."""
    root = Path(out).resolve()
    owned = [root / name for name in OWNED]
    for key, path in _input_files(configs).items():
        resolved = Path(path).resolve()
        for entry in owned:
            if resolved == entry or entry in resolved.parents:
                flag = "--" + key.split("[")[0].replace("_", "-")  # extensions[2] -> --extensions
                raise ValueError(f"{flag} {path} lies in {entry.name} of the scene folder {out}, which {how} deletes "
                                 f"before the run reads it; copy it out of the folder first")


def has_outputs(out: Path) -> bool:
    """Whether ``out`` holds anything a scene makes besides its settings and log."""
    return any((Path(out) / name).exists() for name in OWNED)


def clear_outputs(out: Path) -> None:
    """Delete what a scene owns in ``out`` (:data:`OWNED`); its settings and log stay."""
    for name in OWNED:
        p = Path(out) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _input_files(configs) -> dict[str, str]:
    """``{setting: path}`` of the input files scene ``configs`` names: ``image``, ``depth``, a
    ``trajectory`` and a ``render_trajectory`` file (not a preset) and each extension file, as
    ``extensions[i]`` (from 0)."""
    from dreamer.trajectories import is_trajectory_file

    sc = configs.scene
    named = {"image": sc.image, "depth": sc.depth,
             "trajectory": sc.trajectory if is_trajectory_file(sc.trajectory) else None,
             "render_trajectory": sc.render_trajectory if is_trajectory_file(sc.render_trajectory) else None}
    named.update((f"extensions[{i}]", path) for i, path in enumerate(sc.extensions))
    return {key: str(path) for key, path in named.items() if path}


def input_digests(configs) -> dict[str, str]:
    """``{setting: sha256}`` of the input files of ``configs`` (see :func:`_input_files`); files that
    are not there are left out (the checks name them)."""
    return {key: file_sha256(path) for key, path in _input_files(configs).items() if Path(path).is_file()}


def record_inputs(out: Path, configs, digests: dict[str, str] | None = None) -> None:
    """Write :data:`INPUTS_RECORD` for the inputs of ``configs`` (when the scene's work starts);
    ``digests``: their :func:`input_digests`, if at hand."""
    from dreamer.io import write_json

    write_json(Path(out) / INPUTS_RECORD, input_digests(configs) if digests is None else digests)


def _changed_files(out: Path, configs, dream: bool, new: dict[str, str] | None = None) -> str | None:
    """Which of the dream's (``dream``) or the later stages' input files hold other content than
    the folder's record, e.g. ``"image a.png: the file changed since the scene was made"``; None
    when none does or the folder has no record (made by an older version). ``new``: the inputs'
    :func:`input_digests`, if at hand."""
    try:
        old = read_json(Path(out) / INPUTS_RECORD)
    except (ValueError, OSError):
        return None
    if not isinstance(old, dict):
        return None
    new, paths = input_digests(configs) if new is None else new, _input_files(configs)
    changed = [f"{key} {paths[key]}" for key in new
               if (key in DREAM_INPUTS) == dream and key in old and old[key] != new[key]]
    if not changed:
        return None
    return f"{' and '.join(changed)}: the file{'s' if len(changed) > 1 else ''} changed since the scene was made"


def changed_later_inputs(out: Path, configs, digests: dict[str, str] | None = None) -> str | None:
    """Which input files of the stages after the dream (a render trajectory file, extension files)
    hold other content than when the folder's work was made (its :data:`INPUTS_RECORD`, so ask
    before :func:`record_inputs` rewrites it), or None. Such work is not finished: the stages
    that read them run again (each stage's own fingerprint holds the content of what it read).
    ``digests``: the inputs' :func:`input_digests`, if at hand."""
    return _changed_files(out, configs, dream=False, new=digests)


def changed_settings(out: Path, configs) -> str | None:
    """None when a run with ``configs`` may reuse ``out`` (a new or empty folder, or one made with
    the same dream settings from input files of the same content); else what changed, e.g.
    ``"width 512 -> 256, seed 0 -> 1"`` or ``"image a.png: the file changed since the scene was made"``."""
    out = Path(out)
    cfg = out / "config.json"
    if not cfg.is_file() or not has_outputs(out):  # a new folder, or nothing made yet
        return None
    try:
        old = read_json(cfg)
    except (ValueError, OSError) as e:
        return f"its config.json cannot be read ({type(e).__name__})"
    if not isinstance(old, dict):
        return "its config.json is not a scene's settings"
    if old.get("dream_hash") == configs.dream_hash():
        return _changed_files(out, configs, dream=True)
    new = configs.to_dict()
    changes = []
    for section in ("scene", "dream", "models"):
        before, after = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(before) | set(after)):
            if key in _NOT_COMPARED or key in _LATER_STAGES:
                continue
            a, b = before.get(key), after.get(key)
            if isinstance(a, list):
                a = tuple(a)
            if isinstance(b, list):
                b = tuple(b)
            if a != b:
                changes.append(f"{key} {_short(a)} -> {_short(b)}")
    if not changes:  # same values, another version's hash
        return "made by another version of dreamer"
    return ", ".join(changes[:6]) + (f" and {len(changes) - 6} more" if len(changes) > 6 else "")


def _walk_files(root: Path):
    if root.is_file():
        yield root
        return
    for dirpath, _, names in os.walk(root):
        for name in names:
            yield Path(dirpath) / name


def disk_usage(path: Path, _seen: set | None = None) -> int:
    """Bytes the files under ``path`` take (a file with several names, a hard link, counts once)."""
    seen = set() if _seen is None else _seen
    total = 0
    for f in _walk_files(Path(path)):
        try:
            st = f.lstat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_size
    return total


def largest_entries(folder: Path, n: int = 4) -> list[tuple[str, int]]:
    """The ``n`` largest files or folders directly in ``folder``, ``(name, bytes)``, largest first
    (hard links count where they are met first, in name order)."""
    seen: set = set()
    sizes = [(p.name + ("/" if p.is_dir() else ""), disk_usage(p, seen)) for p in sorted(Path(folder).iterdir())]
    return sorted((s for s in sizes if s[1] > 0), key=lambda s: -s[1])[:n]


def format_bytes(n: int) -> str:
    """``n`` bytes for people: "812 kB", "152 MB", "1.4 GB" (powers of 1000, as ``ls -h --si``)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


def publish_file(source: Path, target: Path) -> None:
    """Make ``target`` hold what ``source`` holds without a second copy on disk: a hard link
    where the file system has them, else a copy. Writers replace files (write then rename), so
    rewriting either name later leaves the other as it was."""
    from dreamer.io import atomic_path

    with atomic_path(target) as tmp:  # a temporary name that a resume knows to clean up
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
