"""Extend a finished scene: dream more cameras on top of it, fine-tune its splats, undo.

A scene folder that :func:`~dreamer.pipeline.stages.run_scene` finished with splats grows by
*extensions* (the app's "Dream here"). An extension is a trajectory file of cameras of the
scene's image size. Applying one:

1. takes the scene as it stands: its dreamed views and cloud (for the base scene, as the joint
   refinement left them) and its splats;
2. dreams the new cameras on top of that cloud (:func:`dreamer.scene.loop.dream` resumed from
   the finished result, so view k is seeded with ``seed + k`` as in one long run). The existing
   views and points stay exactly as they are (no second joint refinement); new points are
   appended to the cloud;
3. fine-tunes the splats, starting from the current Gaussians plus Gaussians made from the new
   points as a scene's first ones are (merged on the footprint grid:
   :func:`dreamer.splats.train.initial_cloud`),
   on every view (``scene.extension_iterations`` iterations,
   :func:`dreamer.splats.train.train_gaussians` with ``init``);
4. rewrites the scene's files (``views/``, ``points.ply``, ``cameras.json``,
   ``transforms.json``, ``gaussians.ply``) to the extended scene. The fly-through videos stay
   those of the base path.

The scene's ``config.json`` lists the extensions' trajectory files (``scene.extensions``), so
``python -m dreamer.run --config <scene>/config.json --out <elsewhere>`` dreams the same scene
with the same extensions, and a rerun in place continues or skips them like every other stage.
:func:`undo_extension` removes the last extension and restores the files as they were before it.

Folder layout (inside the scene)::

    extensions/base/                 scenes made before run_scene saved its finished dream
                                     (checkpoint/result.pt): that result, rebuilt once (a cache)
    extensions/NNN/trajectory.json   extension NNN's cameras and prompts (a trajectory file; "Dream here"
                                     writes it here, config.json may name one anywhere)
    extensions/NNN/views/            the views and points it added (dream-checkpoint layout)
    extensions/NNN/splats/           its fine-tuning's result and marker (and checkpoint while it runs)
    extensions/NNN/gaussians.ply     the splats after it (the same file as splats/gaussians.ply)
    extensions/NNN/extension.json    counts before and after, settings, fingerprint

Each extension's fingerprint chains the base scene's (its dream settings and its splats) with
the trajectory file and the fine-tuning settings of every extension up to it: an extension whose
fingerprint still matches is loaded, not dreamed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamer.cameras import Camera
from dreamer.checks import check_int
from dreamer.io import read_json, write_json
from dreamer.pipeline.checkpoint import load_checkpoint, load_finished, save_checkpoint
from dreamer.pipeline.exports import write_cameras_json, write_transforms_json, write_view
from dreamer.pipeline.folder import publish_file
from dreamer.pipeline.joblog import job_log
from dreamer.pipeline.settings import SceneConfigs
from dreamer.pointcloud import PointCloud
from dreamer.scene.loop import ProgressFn, dream
from dreamer.scene.result import DreamResult
from dreamer.splats.gaussians import Gaussians

__all__ = ["Extension", "extend_scene", "undo_extension", "apply_extensions", "list_extensions",
           "dream_here_cameras", "scene_camera", "EXTENSIONS_DIR"]

log = logging.getLogger(__name__)

EXTENSIONS_DIR = "extensions"
"""The folder of a scene that holds its extensions."""


@dataclass(frozen=True)
class Extension:
    """What one extension did: its number, trajectory file, how many cameras it dreamed, and the
    scene's views, points and Gaussians before and after it."""

    index: int
    trajectory: str
    cameras: int
    views_before: int
    views_after: int
    points_before: int
    points_after: int
    gaussians_before: int
    gaussians_after: int
    iterations: int
    seconds: float = 0.0
    fingerprint: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def extension_dir(scene: str | Path, index: int) -> Path:
    """The folder of extension ``index`` (counted from 1)."""
    return Path(scene) / EXTENSIONS_DIR / f"{index:03d}"


# ------------------------------------------------------------------------------------------------
# Cameras
# ------------------------------------------------------------------------------------------------
def scene_camera(scene: str | Path, c2w: torch.Tensor) -> Camera:
    """A camera at pose ``c2w`` [4,4] (OpenCV axes) with the scene's intrinsics and image size."""
    first = _read_configs(Path(scene)).scene.first_camera()
    return first.with_c2w(torch.as_tensor(c2w, dtype=torch.float32))


def dream_here_cameras(camera: Camera, *, around: int = 0, degrees: float = 20.0) -> list[Camera]:
    """``camera`` and ``around`` more, turned in place by +-``degrees``, +-2 ``degrees``, ...
    (right first): the cameras a "Dream here" dreams."""
    from dreamer.trajectories import rotate_camera

    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a dreamer.Camera, got {type(camera).__name__}")
    around = check_int(around, "around", min=0, max=8)
    cams = [camera]
    for j in range(around):
        step = (j // 2 + 1) * float(degrees)
        cams.append(rotate_camera(camera, yaw=step if j % 2 == 0 else -step))
    return cams


# ------------------------------------------------------------------------------------------------
# The scene's settings
# ------------------------------------------------------------------------------------------------
def _read_configs(scene: Path) -> SceneConfigs:
    cfg = scene / "config.json"
    if not cfg.is_file():
        raise FileNotFoundError(f"{scene}: no config.json; extensions need a scene folder made by dreamer.run")
    return SceneConfigs.from_dict(read_json(cfg))


def _write_configs(scene: Path, configs: SceneConfigs, *, done: bool) -> None:
    """config.json as run_scene writes it and, with ``done``, the DONE marker for these settings."""
    digest = configs.result_hash()
    write_json(scene / "config.json", {"hash": digest, "dream_hash": configs.dream_hash(), **configs.to_dict()})
    if done:
        (scene / "DONE").write_text(digest + "\n")


def _with_extensions(configs: SceneConfigs, extensions: tuple[str, ...]) -> SceneConfigs:
    return dataclasses.replace(configs, scene=dataclasses.replace(configs.scene, extensions=tuple(extensions)))


# ------------------------------------------------------------------------------------------------
# The base scene
# ------------------------------------------------------------------------------------------------
def _sha(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _base_fingerprint(configs: SceneConfigs, scene: Path) -> str:
    from dreamer.splats.train import DONE_FILE

    done = scene / "splats" / DONE_FILE
    try:
        splats = read_json(done)["fingerprint"]
    except (OSError, ValueError, KeyError):
        raise ValueError(f"{scene}: the scene's splats are not finished; extensions start from a finished "
                         "scene (run it with splats first)") from None
    return _sha("base", configs.dream_hash(), str(splats))


def _base_result(configs: SceneConfigs, scene: Path, fingerprint: str) -> DreamResult:
    """The base scene's finished result, as run_scene ended it: the finished dream it saved or,
    for a scene made before run_scene saved it, the dream loop's checkpoint jointly refined
    (cached in ``extensions/base``)."""
    from dreamer.scene.joint_refinement import refine_scene

    finished = load_finished(scene / "checkpoint")
    if finished is not None:
        return DreamResult(finished.points, finished.views, configs.dream)
    cache = scene / EXTENSIONS_DIR / "base"
    marker = cache / "base.json"
    try:
        cached = read_json(marker).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        cached = False
    if cached:
        result = load_checkpoint(cache)
        if result is not None:
            return DreamResult(result.points, result.views, configs.dream)
    loop = load_checkpoint(scene / "checkpoint")
    if loop is None:
        raise ValueError(f"{scene}: no dream checkpoint; extensions start from a finished scene")
    result = DreamResult(loop.points, loop.views, configs.dream)
    if configs.dream.joint_refinement:
        result = refine_scene(result)
    if cache.exists():
        shutil.rmtree(cache)
    save_checkpoint(cache, result)
    write_json(marker, {"fingerprint": fingerprint, "views": len(result.views), "points": len(result.points)})
    return result


def _base_gaussians(configs: SceneConfigs, scene: Path, base: DreamResult) -> Gaussians:
    """The base scene's splats: its finished splat stage, loaded (never trained again here)."""
    from dreamer.splats import train_gaussians
    from dreamer.splats.train import DONE_FILE

    if not (scene / "splats" / DONE_FILE).exists():
        raise ValueError(f"{scene}: the scene's splats are not finished")
    return train_gaussians(base, configs.splats, checkpoint_dir=scene / "splats").to("cpu")


# ------------------------------------------------------------------------------------------------
# One extension
# ------------------------------------------------------------------------------------------------
def _chain(previous: str, trajectory: str, configs: SceneConfigs) -> str:
    try:
        text = Path(trajectory).read_bytes()
    except OSError as e:
        raise ValueError(f"extension trajectory {trajectory}: cannot be read ({e.strerror or e})") from None
    settings = json.dumps({"splats": configs.splats.to_dict(), "iterations": configs.scene.extension_iterations},
                          sort_keys=True, default=str)
    return _sha(previous, hashlib.sha256(text).hexdigest(), settings)


def _cat(a: Gaussians, b: Gaussians) -> Gaussians:
    return Gaussians(*(torch.cat([getattr(a, f), getattr(b, f).to(getattr(a, f))])
                       for f in ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")))


def _load_done(folder: Path, fingerprint: str, prev: DreamResult) -> tuple[DreamResult, Gaussians, Extension] | None:
    """Extension ``folder`` as it was applied, if its fingerprint matches and its files are whole."""
    try:
        record = Extension(**read_json(folder / "extension.json"))
    except (OSError, ValueError, TypeError):
        return None
    if record.fingerprint != fingerprint or record.views_before != len(prev.views):
        return None
    part = load_checkpoint(folder / "views")
    if part is None or len(part.views) != record.views_after - record.views_before \
            or not (folder / "gaussians.ply").exists():
        return None
    result = DreamResult(prev.points.cat(part.points), prev.views + part.views, prev.config)
    return result, Gaussians.load_ply(folder / "gaussians.ply"), record


def _apply_one(configs: SceneConfigs, folder: Path, index: int, trajectory: str, prev: DreamResult,
               prev_gaussians: Gaussians, fingerprint: str, backends,
               on_progress: ProgressFn | None) -> tuple[DreamResult, Gaussians, Extension]:
    from dreamer.splats import train_gaussians
    from dreamer.splats.train import RESULT_FILE
    from dreamer.trajectories import load_trajectory

    t0 = time.time()
    folder.mkdir(parents=True, exist_ok=True)
    keep = Path(trajectory).resolve()
    for p in folder.iterdir():  # leftovers of an earlier attempt (the trajectory file may live here)
        if p.resolve() != keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    if backends is None:
        raise ValueError(f"extension {index} must be dreamed ({trajectory}), which needs the models")
    first = prev.views[0].camera
    traj = load_trajectory(trajectory, first)
    for i, cam in enumerate(traj.cameras):
        if (cam.width, cam.height) != (first.width, first.height):
            raise ValueError(f"{trajectory}: camera {i} is {cam.width}x{cam.height}; an extension's cameras have the "
                             f"scene's size, {first.width}x{first.height}")
    cameras = [v.camera for v in prev.views] + [c.to(first.device) for c in traj.cameras]
    prompts = [v.prompt for v in prev.views] + traj.resolved_prompts(configs.scene.prompt)
    # The scene so far stays as it is: no second joint refinement, new points are appended.
    dream_config = dataclasses.replace(configs.dream, joint_refinement=False)
    start = DreamResult(prev.points, prev.views, dream_config)
    result = dream(prev.views[0].image, cameras, prompts, inpainter=backends.inpainter,
                   depth_estimator=backends.depth_estimator, config=dream_config, depth=prev.views[0].depth,
                   on_progress=on_progress, resume=start)
    n_views, n_points = len(prev.views), len(prev.points)
    new_points = PointCloud(result.points.xyz[n_points:], result.points.rgb[n_points:],
                            result.points.radius[n_points:])
    save_checkpoint(folder / "views", DreamResult(new_points, result.views[n_views:]))
    init = prev_gaussians
    if len(new_points):
        from dreamer.splats.train import initial_cloud

        new_cloud = initial_cloud(new_points.to(prev_gaussians.device), configs.splats)
        init = _cat(prev_gaussians, Gaussians.from_points(new_cloud, sh_degree=prev_gaussians.sh_degree,
                                                          opacity=configs.splats.init_opacity,
                                                          scale_mult=configs.splats.init_scale))
    splat_config = dataclasses.replace(configs.splats, iterations=configs.scene.extension_iterations)
    gaussians = train_gaussians(result, splat_config, on_progress, checkpoint_dir=folder / "splats", init=init)
    gaussians = gaussians.to("cpu")
    publish_file(folder / "splats" / RESULT_FILE, folder / "gaussians.ply")  # one copy on disk
    record = Extension(index=index, trajectory=str(trajectory), cameras=len(traj.cameras),
                       views_before=n_views, views_after=len(result.views), points_before=n_points,
                       points_after=len(result.points), gaussians_before=len(prev_gaussians),
                       gaussians_after=len(gaussians), iterations=splat_config.iterations,
                       seconds=time.time() - t0, fingerprint=fingerprint)
    write_json(folder / "extension.json", record.to_dict())
    log.info("extension %d: %d camera(s), views %d -> %d, points %d -> %d, Gaussians %d -> %d in %.1f s", index,
             record.cameras, n_views, record.views_after, n_points, record.points_after, record.gaussians_before,
             record.gaussians_after, record.seconds)
    return result, gaussians, record


def _export(scene: Path, result: DreamResult, gaussians: Gaussians, base_views: int, splats) -> None:
    """The scene's files for ``result`` and ``gaussians``: the views the extensions added (the
    base views are run_scene's), no views beyond them, the cloud, cameras and splats."""
    for i in range(base_views, len(result.views)):
        write_view(scene, i, result.views[i])
    for p in (scene / "views").glob("[0-9][0-9][0-9]*"):
        if int(p.name[:3]) >= len(result.views):
            p.unlink()
    result.points.save_ply(scene / "points.ply")
    write_cameras_json(scene / "cameras.json", [v.camera for v in result.views], result.views)
    write_transforms_json(scene / "transforms.json", result.views)
    gaussians.save_ply(scene / "gaussians.ply")
    # A compressed copy, when the splat settings export one (SplatConfig.export, dreamer/splats/spz.py),
    # is kept in step with the .ply: never the splats of another extension.
    if "spz" in getattr(splats, "export", ()):
        gaussians.save_spz(scene / "gaussians.spz", version=splats.spz_version)


# ------------------------------------------------------------------------------------------------
# Public entry points
# ------------------------------------------------------------------------------------------------
def apply_extensions(configs: SceneConfigs, scene: str | Path, backends=None, *,
                     on_progress: ProgressFn | None = None) -> list[Extension]:
    """Bring the finished scene in ``scene`` to ``configs.scene.extensions``: extensions whose
    fingerprint matches are loaded, the others dreamed (which needs ``backends``); then the
    scene's files are written for the last one (for the base scene when there is none).
    Returns one :class:`Extension` per extension, in order."""
    scene = Path(scene)
    if configs.splats is None:
        raise ValueError("extensions fine-tune the scene's splats: the scene needs its splat stage")
    check_int(configs.scene.extension_iterations, "scene.extension_iterations", min=1)
    fingerprint = _base_fingerprint(configs, scene)
    base = _base_result(configs, scene, fingerprint)
    result, gaussians, records = base, None, []
    for index, trajectory in enumerate(configs.scene.extensions, 1):
        fingerprint = _chain(fingerprint, trajectory, configs)
        folder = extension_dir(scene, index)
        loaded = _load_done(folder, fingerprint, result)
        if loaded is None:
            if gaussians is None:
                gaussians = _base_gaussians(configs, scene, base)
            loaded = _apply_one(configs, folder, index, trajectory, result, gaussians, fingerprint, backends,
                                on_progress)
        result, gaussians, record = loaded
        records.append(record)
    if gaussians is None:
        gaussians = _base_gaussians(configs, scene, base)
    _export(scene, result, gaussians, len(base.views), configs.splats)
    return records


def extend_scene(scene: str | Path, cameras: list[Camera], backends, *, prompt: str | None = None,
                 on_progress: ProgressFn | None = None) -> Extension:
    """Dream ``cameras`` on top of the finished scene in ``scene`` and fine-tune its splats.

    The cameras are recorded as the scene's next extension (``extensions/NNN/trajectory.json``,
    listed in ``config.json``), with ``prompt`` for each (None: the scene's prompt). If the run
    fails or is stopped, the scene is left as it was. Log lines go to the scene's ``run.log``.
    """
    scene = Path(scene)
    configs = _read_configs(scene)
    if not (scene / "DONE").exists():
        raise ValueError(f"{scene}: the scene is not finished; extensions start from a finished scene")
    if configs.splats is None:
        raise ValueError(f"{scene}: the scene has no splats (--no-splats); extensions fine-tune them")
    cameras = list(cameras)
    if not cameras or not all(isinstance(c, Camera) for c in cameras):
        raise TypeError("cameras must be a non-empty list of dreamer.Camera")
    if prompt is not None and not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string or None, got {type(prompt).__name__}")
    from dreamer.trajectories import Trajectory, save_trajectory

    index = len(configs.scene.extensions) + 1
    folder = extension_dir(scene, index)
    if folder.exists():  # an attempt that never made it into config.json
        shutil.rmtree(folder)
    trajectory = folder / "trajectory.json"
    own_prompt = prompt if prompt and prompt != configs.scene.prompt else None
    save_trajectory(trajectory, Trajectory([c.to("cpu") for c in cameras], [own_prompt] * len(cameras)))
    extended = _with_extensions(configs, configs.scene.extensions + (str(trajectory.resolve()),))
    _write_configs(scene, extended, done=False)
    try:
        with job_log(scene / "run.log"):
            record = apply_extensions(extended, scene, backends, on_progress=on_progress)[-1]
    except BaseException:
        trained = (folder / "gaussians.ply").exists()  # the scene's files are written after this one
        _write_configs(scene, configs, done=True)
        shutil.rmtree(folder, ignore_errors=True)
        if trained:
            try:
                apply_extensions(configs, scene)
            except Exception:  # noqa: BLE001 - the original error is the one to report
                log.exception("%s: could not rewrite the scene's files after a failed extension", scene)
        raise
    _write_configs(scene, extended, done=True)
    return record


def undo_extension(scene: str | Path) -> Extension | None:
    """Remove the last extension of ``scene`` and restore its files as they were before it;
    None when the scene has no extension. Needs no models."""
    scene = Path(scene)
    configs = _read_configs(scene)
    if not configs.scene.extensions:
        return None
    index = len(configs.scene.extensions)
    folder = extension_dir(scene, index)
    try:
        record = Extension(**read_json(folder / "extension.json"))
    except (OSError, ValueError, TypeError):
        record = None
    previous = _with_extensions(configs, configs.scene.extensions[:-1])
    with job_log(scene / "run.log"):
        apply_extensions(previous, scene)
        log.info("extension %d undone", index)
    _write_configs(scene, previous, done=True)
    shutil.rmtree(folder, ignore_errors=True)
    return record


def list_extensions(scene: str | Path) -> list[Extension]:
    """The extensions ``scene`` records, in order (those not applied yet are left out)."""
    scene = Path(scene)
    out = []
    for index in range(1, len(_read_configs(scene).scene.extensions) + 1):
        try:
            out.append(Extension(**read_json(extension_dir(scene, index) / "extension.json")))
        except (OSError, ValueError, TypeError):
            continue
    return out
