"""The settings of one scene, one dataclass per stage, and how flags and batch entries set them.

Every setting is a dataclass field with a docstring under it (:mod:`dreamer.configs` turns them into
command-line flags and JSON). A scene folder keeps the resolved settings and their hashes:
:meth:`SceneConfigs.dream_hash` decides whether the dreamed views can be reused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from dreamer.backends.model_sets import ModelConfig
from dreamer.cameras import DEFAULT_FOCAL_512, Camera
from dreamer.configs import check_settings, config_hash, dataclass_from_dict
from dreamer.deepzoom import DeepZoomConfig
from dreamer.scene.loop import DreamConfig

__all__ = ["SceneConfig", "SceneConfigs", "configs_from_flat", "CONFIG_SECTIONS", "SETTING_ALIASES"]


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
    extensions: tuple[str, ...] = ()
    """Trajectory files of cameras dreamed on top of the finished scene, in order (dreamer.pipeline.extend)."""
    extension_iterations: int = 300
    """Splat fine-tuning iterations after each extension (they start from the scene's splats)."""

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
    preset: str | None = None
    """The run preset that chose the defaults of the costly settings (:mod:`dreamer.pipeline.presets`);
    for the record only: the values it chose are in the sections, and only they are hashed."""

    def to_dict(self) -> dict:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in ("scene", "dream", "models")}
        out["splats"] = None if self.splats is None else dataclasses.asdict(self.splats)
        out["zoom"] = dataclasses.asdict(self.zoom)
        if self.preset is not None:
            out["preset"] = self.preset
        return out

    def _hash(self, sections: tuple[str, ...], drop: tuple[str, ...] = ()) -> str:
        d = self.to_dict()
        for k in drop:
            d["scene"].pop(k, None)
        if not d["scene"].get("extensions"):  # a scene without extensions keeps the hashes it always had
            d["scene"].pop("extensions", None)
            d["scene"].pop("extension_iterations", None)
        for section in d.values():
            if isinstance(section, dict):
                # Settings that do not change the outputs.
                for k in ("device", "dtype", "depth_dtype", "cpu_offload", "checkpoint_every", "log_every"):
                    section.pop(k, None)
        return config_hash({k: d[k] for k in sections})

    def dream_hash(self) -> str:
        """Hash of what the dreamed views and points depend on: changing it starts the scene over.
        Extensions are dreamed on top of the finished scene and keep their own fingerprints."""
        return self._hash(("scene", "dream", "models"),
                          drop=("render_trajectory", "render_frames", "extensions", "extension_iterations"))

    def result_hash(self) -> str:
        """Hash of every output (later stages keep their own fingerprints and redo only themselves)."""
        return self._hash(("scene", "dream", "models", "splats", "zoom"))

    @classmethod
    def from_dict(cls, d: dict) -> "SceneConfigs":
        if not isinstance(d, dict):
            raise TypeError(f"a scene's settings must be a mapping of sections (scene, dream, models, splats, zoom), "
                            f"got {type(d).__name__}")
        splats = d.get("splats")
        return cls(
            scene=dataclass_from_dict(SceneConfig, d.get("scene", {}), where="scene"),
            dream=dataclass_from_dict(DreamConfig, d.get("dream", {}), where="dream"),
            models=dataclass_from_dict(ModelConfig, d.get("models", {}), where="models"),
            splats=None if splats is None else dataclass_from_dict(_splat_config_cls(), splats, where="splats"),
            zoom=dataclass_from_dict(DeepZoomConfig, d.get("zoom") or {}, where="zoom"),
            preset=d.get("preset") if isinstance(d.get("preset"), str) else None,
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
        updates = check_settings(type(current), {k: v for k, v in flat.items() if k in names}, where=where)
        used |= set(updates)
        sections[name] = dataclasses.replace(current, **updates)
    unknown = set(flat) - used
    if unknown:
        known = sorted({f.name for g in CONFIG_SECTIONS.values() for f in dataclasses.fields(g())}
                       | {"no_splats"} | set(SETTING_ALIASES))
        raise ValueError(f"{where}: unknown setting(s) {sorted(unknown)}; known settings: {', '.join(known)}")
    if not splats_on:
        sections["splats"] = None
    return SceneConfigs(**sections, preset=base.preset)
