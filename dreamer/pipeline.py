"""One scene, start to finish, in its own folder: resumable, logged, never stale.

Stages: first view (photo, or text-to-image) -> its depth -> the trajectory -> the dream loop
(checkpoint after every view) -> exports -> ground-truth metrics (procedural world only) ->
Gaussian splats and videos. The folder keeps ``config.json`` (the resolved settings and their
hash): a rerun with the same settings continues where the last one stopped, a rerun with other
settings starts the scene over, and a finished scene is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from dreamer.backends.model_sets import Backends, ModelConfig
from dreamer.cameras import DEFAULT_FOCAL_512, Camera
from dreamer.checkpoint import load_checkpoint, save_checkpoint
from dreamer.configs import config_hash, dataclass_from_dict
from dreamer.deepzoom import DeepZoomConfig
from dreamer.dream import DreamConfig, ProgressFn, dream
from dreamer.exports import write_cameras_json, write_scene
from dreamer.io import read_json, save_image, write_json
from dreamer.scene import DreamResult
from dreamer.trajectories import Trajectory, center_depth_from, load_trajectory, make_trajectory

__all__ = ["SceneConfig", "SceneConfigs", "SceneOutcome", "run_scene", "configs_from_flat", "CONFIG_SECTIONS",
           "SETTING_ALIASES"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneConfig:
    """What to dream: the inputs, the working camera and the trajectory."""

    prompt: str = ""
    """Text prompt of the scene. Without --image the first view is generated from it."""
    image: str | None = None
    """Photo of the first view (any size, mode and aspect ratio)."""
    depth: str | None = None
    """Depth map of the photo for RGBD input: .npy (metres), 16-bit PNG (millimetres) or .exr."""
    fit: Literal["crop", "pad"] = "crop"
    """How a photo of another aspect ratio meets the working size: crop (resize + centre crop) or pad (resize + outpaint the padding)."""
    prompts: tuple[str, ...] | None = None
    """One prompt per camera (overrides the trajectory file's prompts and --prompt)."""
    width: int = 512
    """Working image width in pixels (a multiple of 8 for the diffusion models)."""
    height: int = 512
    """Working image height in pixels (a multiple of 8 for the diffusion models)."""
    focal: float | None = None
    """Focal length in pixels; default 582.69 * width / 512 (a 47.4 deg horizontal FoV, the research default)."""
    fov: float | None = None
    """Horizontal field of view in degrees (instead of --focal)."""
    trajectory: str = "lookaround"
    """Generation trajectory: a preset (lookaround, lookdown, rotate360, forward, backward, moveright, orbit) or a trajectory JSON file."""
    views: int | None = None
    """Number of cameras for presets that take a count (n); default: the preset's own."""
    render_trajectory: str = "llff"
    """Camera path of the fly-through videos: a preset (llff, back_and_forth, headbanging, ...) or a JSON file."""
    render_frames: int | None = None
    """Frames of the fly-through videos; default: the render preset's own."""

    def first_camera(self) -> Camera:
        if self.focal is not None and self.fov is not None:
            raise ValueError("give either --focal or --fov, not both")
        if self.width % 8 or self.height % 8:
            raise ValueError(f"width and height must be multiples of 8, got {self.width}x{self.height}")
        if self.fov is not None:
            return Camera.from_fov(self.fov, self.width, self.height)
        focal = self.focal if self.focal is not None else DEFAULT_FOCAL_512 * self.width / 512.0
        return Camera.from_focal(focal, self.width, self.height)


def _splat_config_cls():
    from dreamer.splats import SplatConfig

    return SplatConfig


@dataclass(frozen=True)
class SceneConfigs:
    """All settings of one scene, one dataclass per stage."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    dream: DreamConfig = field(default_factory=DreamConfig)
    models: ModelConfig = field(default_factory=ModelConfig)
    splats: Any = None
    """A dreamer.splats.SplatConfig, or None to skip the splat stage."""
    zoom: DeepZoomConfig = field(default_factory=DeepZoomConfig)
    """The deep-zoom stage (off while ``zoom.zoom_levels`` is 0)."""

    def to_dict(self) -> dict:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in ("scene", "dream", "models")}
        out["splats"] = None if self.splats is None else dataclasses.asdict(self.splats)
        out["zoom"] = dataclasses.asdict(self.zoom)
        return out

    def _hash(self, sections: tuple[str, ...], drop: tuple[str, ...] = ()) -> str:
        d = self.to_dict()
        for k in drop:
            d["scene"].pop(k, None)
        for section in d.values():
            if isinstance(section, dict):
                # Settings that do not change the outputs.
                for k in ("device", "dtype", "depth_dtype", "cpu_offload", "checkpoint_every", "log_every"):
                    section.pop(k, None)
        return config_hash({k: d[k] for k in sections})

    def dream_hash(self) -> str:
        """Hash of what the dreamed views and points depend on: changing it starts the scene over."""
        return self._hash(("scene", "dream", "models"), drop=("render_trajectory", "render_frames"))

    def result_hash(self) -> str:
        """Hash of every output (later stages keep their own fingerprints and redo only themselves)."""
        return self._hash(("scene", "dream", "models", "splats", "zoom"))

    @classmethod
    def from_dict(cls, d: dict) -> "SceneConfigs":
        splats = d.get("splats")
        return cls(
            scene=dataclass_from_dict(SceneConfig, d.get("scene", {}), where="scene"),
            dream=dataclass_from_dict(DreamConfig, d.get("dream", {}), where="dream"),
            models=dataclass_from_dict(ModelConfig, d.get("models", {}), where="models"),
            splats=None if splats is None else dataclass_from_dict(_splat_config_cls(), splats, where="splats"),
            zoom=dataclass_from_dict(DeepZoomConfig, d.get("zoom") or {}, where="zoom"),
        )


CONFIG_SECTIONS: dict[str, Callable[[], type]] = {
    "scene": lambda: SceneConfig,
    "dream": lambda: DreamConfig,
    "models": lambda: ModelConfig,
    "splats": _splat_config_cls,
    "zoom": lambda: DeepZoomConfig,
}


# Short names people type (flags and batch keys) for settings whose field names are long or ambiguous.
SETTING_ALIASES = {"gs_iters": "iterations"}


def configs_from_flat(flat: dict[str, Any], base: SceneConfigs | None = None, *, where: str = "settings") -> SceneConfigs:
    """Apply flat ``{name: value}`` settings (a batch entry, CLI options) to every config that has
    the field (``seed`` sets all seeds). Unknown names are an error naming the known ones."""
    base = base or SceneConfigs()
    flat = {SETTING_ALIASES.get(k, k): v for k, v in flat.items()}
    splats_on = base.splats is not None and not bool(flat.pop("no_splats", False))
    sections: dict[str, Any] = {}
    used: set[str] = set()
    for name, get_cls in CONFIG_SECTIONS.items():
        current = getattr(base, name)
        if current is None:  # splats switched off: still accept (and ignore) their settings
            current = get_cls()()
        names = {f.name for f in dataclasses.fields(current)}
        updates = {k: v for k, v in flat.items() if k in names}
        for k, v in list(updates.items()):
            if isinstance(getattr(current, k), tuple) and isinstance(v, list):
                updates[k] = tuple(v)
        used |= set(updates)
        sections[name] = dataclasses.replace(current, **updates)
    unknown = set(flat) - used
    if unknown:
        known = sorted({f.name for g in CONFIG_SECTIONS.values() for f in dataclasses.fields(g())}
                       | {"no_splats"} | set(SETTING_ALIASES))
        raise ValueError(f"{where}: unknown setting(s) {sorted(unknown)}; known settings: {', '.join(known)}")
    if not splats_on:
        sections["splats"] = None
    return SceneConfigs(**sections)


@dataclass
class SceneOutcome:
    """How one scene ended: ``status`` is "done", "skipped" (already complete) or "failed"."""

    name: str
    out: Path
    status: str
    seconds: float = 0.0
    error: str | None = None
    metrics: dict | None = None


# Files and folders a scene owns; cleared when its config changes.
_OWNED = ("views", "checkpoint", "splats", "videos", "points.ply", "cameras.json", "transforms.json",
          "metrics.json", "first_view.png", "prompt.txt", "DONE", "gaussians.ply", "zoom")


def _prepare_folder(out: Path, configs: SceneConfigs) -> tuple[str, bool]:
    """Returns (result hash, already done). Clears the scene's outputs when the settings the
    dream depends on changed; other changes (splats) only redo their own stages."""
    out.mkdir(parents=True, exist_ok=True)
    dream_digest, digest = configs.dream_hash(), configs.result_hash()
    cfg_file = out / "config.json"
    if cfg_file.exists():
        try:
            old = read_json(cfg_file).get("dream_hash")
        except (ValueError, OSError):
            old = None
        if old != dream_digest:
            log.warning("%s: settings changed (%s -> %s): starting this scene over", out, old, dream_digest)
            for name in _OWNED:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
    write_json(cfg_file, {"hash": digest, "dream_hash": dream_digest, **configs.to_dict()})
    done = out / "DONE"
    return digest, done.exists() and done.read_text().strip() == digest


def _first_view(configs: SceneConfigs, backends: Backends, camera: Camera) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first image [H,W,3] and, when known, its depth [H,W]."""
    sc = configs.scene
    depth = None
    if sc.image:
        from dreamer.inputs import load_depth, load_image

        loaded = load_image(sc.image, sc.width, sc.height, fit=sc.fit)
        image = loaded.image
        if loaded.outpaint_mask is not None and loaded.outpaint_mask.any():
            g = torch.Generator().manual_seed(configs.dream.seed)
            filled = backends.inpainter.inpaint(image, loaded.outpaint_mask, sc.prompt, camera=camera, generator=g)
            image = torch.where(loaded.outpaint_mask[..., None], filled, image)
        if sc.depth:
            depth = load_depth(sc.depth, sc.width, sc.height, fit=sc.fit, like=loaded)
    else:
        if sc.depth:
            raise ValueError("--depth needs --image (the depth map belongs to a photo)")
        if not sc.prompt and configs.models.models != "synthetic":
            raise ValueError("give --prompt (text to scene) or --image (photo to scene)")
        g = torch.Generator().manual_seed(configs.dream.seed)
        image = backends.image_generator.generate(sc.prompt, width=sc.width, height=sc.height, generator=g)
        world = getattr(backends, "world", None)
        if world is not None:
            # The procedural world's "photo" comes with its true depth (RGBD input), so the
            # scene is in the world's own scale and ground-truth metrics need no global fit.
            depth = world.render(camera).depth
    return image.float(), depth


def _trajectory(sc: SceneConfig, first: Camera, center_depth: float, name: str, n: int | None) -> Trajectory:
    if name.endswith(".json") or Path(name).is_file():
        return load_trajectory(name, first)
    params = {} if n is None else {"n": n}
    return make_trajectory(name, first, center_depth, **params)


def run_scene(configs: SceneConfigs, out: str | Path, backends: Backends, *,
              on_progress: ProgressFn | None = None, name: str | None = None) -> SceneOutcome:
    """Dream one scene into ``out``. Errors propagate; the caller decides what a failure means."""
    out = Path(out)
    name = name or out.name
    t0 = time.time()
    digest, done = _prepare_folder(out, configs)
    if done:
        log.info("%s: already complete (config %s), skipping", name, digest)
        return SceneOutcome(name, out, "skipped")

    handler = logging.FileHandler(out / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        sc = configs.scene
        first = configs.scene.first_camera()
        resume = load_checkpoint(out / "checkpoint")
        if resume is not None:
            log.info("%s: resuming after %d finished views", name, len(resume.views))
            image, depth = resume.views[0].image, resume.views[0].depth
        else:
            image, depth = _first_view(configs, backends, first)
            if depth is None:
                depth = backends.depth_estimator.estimate(image, camera=first)
        save_image(out / "first_view.png", image)
        (out / "prompt.txt").write_text(sc.prompt + "\n")

        traj = _trajectory(sc, first, center_depth_from(depth), sc.trajectory, sc.views)
        prompts = list(sc.prompts) if sc.prompts else traj.resolved_prompts(sc.prompt)
        if len(prompts) != len(traj.cameras):
            raise ValueError(f"--prompts has {len(prompts)} prompts but the trajectory has {len(traj.cameras)} cameras")
        write_cameras_json(out / "cameras.json", traj.cameras)

        result = dream(
            image, traj.cameras, prompts, inpainter=backends.inpainter, depth_estimator=backends.depth_estimator,
            config=configs.dream, depth=depth, on_progress=on_progress, resume=resume,
            on_view=lambda r: save_checkpoint(out / "checkpoint", r),
        )
        write_scene(out, result)
        metrics = None
        world = getattr(backends, "world", None)
        if world is not None:
            from dreamer.metrics import world_metrics

            metrics = world_metrics(result, world, backends.depth_estimator)
            write_json(out / "metrics.json", metrics)
            log.info("%s: AbsRel aligned %.4f (unaligned %.4f), seam jump %.4f, point-to-surface %.4f of extent",
                     name, metrics["abs_rel_aligned"], metrics["abs_rel_unaligned"], metrics["seam_jump_median"],
                     metrics["point_to_surface_rel_extent"])
        if configs.splats is not None:
            _splat_stage(configs, result, out, on_progress, depth)
        if configs.zoom.enabled:
            _zoom_stage(configs, result, out, backends, on_progress)
        elif (out / "zoom").exists():  # switched off since the last run: no stale zoom outputs
            shutil.rmtree(out / "zoom")
        (out / "DONE").write_text(digest + "\n")
        return SceneOutcome(name, out, "done", time.time() - t0, metrics=metrics)
    finally:
        root.removeHandler(handler)
        handler.close()


def _splat_stage(configs: SceneConfigs, result: DreamResult, out: Path, on_progress: ProgressFn | None,
                 depth0: torch.Tensor) -> None:
    from dreamer.splats import train_gaussians

    gaussians = train_gaussians(result, configs.splats, on_progress, checkpoint_dir=out / "splats")
    gaussians.save_ply(out / "gaussians.ply")
    _render_videos(configs, gaussians, result, out, on_progress, depth0)


def _render_videos(configs: SceneConfigs, gaussians, result: DreamResult, out: Path,
                   on_progress: ProgressFn | None, depth0: torch.Tensor) -> None:
    from dreamer.splats.video import render_video

    sc = configs.scene
    first = result.views[0].camera
    traj = _trajectory(sc, first, center_depth_from(depth0), sc.render_trajectory, sc.render_frames)
    render_video(gaussians, traj.cameras, out / "videos", name=Path(sc.render_trajectory).stem, on_progress=on_progress)


def _zoom_stage(configs: SceneConfigs, result: DreamResult, out: Path, backends: Backends,
                on_progress: ProgressFn | None) -> None:
    """Zoom into a view, lift the levels into the cloud, write ``zoom/`` (stack, multi-resolution
    points, 2D zoom and fly-in videos) and, with splats on, train splats on the zoomed scene."""
    from dreamer.deepzoom import NearPlane, fly_in_cameras, fly_in_near_plane, write_zoom_outputs, zoom_metrics, zoom_scene

    zc = configs.zoom
    folder = out / "zoom"
    if folder.exists():  # other zoom settings than last time: keep only the splats' own checkpoint
        for p in folder.iterdir():
            if p.name != "splats":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    world = getattr(backends, "world", None)
    pipeline = None if world is not None else getattr(backends.image_generator, "pipe", None)
    zoomed = zoom_scene(result, zc, depth_estimator=backends.depth_estimator, world=world, pipeline=pipeline,
                        scene_prompt=configs.scene.prompt, on_progress=on_progress)
    extra = {}
    if world is not None:
        extra["metrics"] = zoom_metrics(zoomed, result.points, truth=zoomed.images)  # the world's renders
        log.info("zoom: PSNR per level without / with the zoom: %s",
                 [(round(m["psnr_without"], 2), round(m["psnr_with"], 2)) for m in extra["metrics"]])
    write_zoom_outputs(zoomed, zc, folder, extra=extra)
    if configs.splats is not None and zc.zoom_splats:
        from dreamer.splats import train_gaussians
        from dreamer.splats.video import render_video

        gaussians = train_gaussians(zoomed.result, configs.splats, on_progress, checkpoint_dir=folder / "splats")
        gaussians.save_ply(folder / "gaussians.ply")
        if zc.zoom_fly_frames:
            cams = fly_in_cameras(zoomed.cameras[0], zoomed.point, frames=zc.zoom_fly_frames,
                                  zoom=float(zc.zoom_p) ** (zc.zoom_levels - 1))
            # The camera ends p^(N-1) times nearer the zoom point: pull the near plane in with it.
            near = fly_in_near_plane(cams, zoomed.point, configs.splats.near_plane)
            render_video(NearPlane(gaussians, near), cams, folder, name="fly_in", fps=zc.zoom_fps,
                         on_progress=on_progress)
