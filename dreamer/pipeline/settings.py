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
from dreamer.cameras import DEFAULT_FOCAL_512, FOV_RANGE, Camera, check_float32_focal, check_input_camera
from dreamer.cli import quote_names
from dreamer.configs import check_settings, config_hash, dataclass_from_dict
from dreamer.deepzoom import DeepZoomConfig
from dreamer.scene.loop import DreamConfig

__all__ = ["SceneConfig", "RefineConfig", "SceneConfigs", "configs_from_flat", "CONFIG_SECTIONS", "SETTING_ALIASES"]


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
    """How a photo of another aspect ratio meets the working size: crop (resize + centre crop) or pad
    (resize + outpaint the padding)."""
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
    """Generation trajectory: a preset (lookaround, lookdown, rotate360, forward, backward, moveright,
    orbit) or a trajectory JSON file."""
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
        lo, hi = FOV_RANGE
        if self.fov is not None:
            if not lo <= self.fov <= hi:
                raise ValueError(f"--fov must be a horizontal field of view of {lo:g} to {hi:g} degrees, "
                                 f"got {self.fov:g}")
            return check_input_camera(Camera.from_fov(self.fov, self.width, self.height), f"--fov {self.fov:g}")
        if self.focal is not None and not self.focal > 0:
            raise ValueError(f"--focal must be a focal length in pixels > 0, got {self.focal:g}")
        focal = self.focal if self.focal is not None else DEFAULT_FOCAL_512 * self.width / 512.0
        try:
            check_float32_focal(focal, focal, f"--focal {focal:g}")
            return check_input_camera(Camera.from_focal(focal, self.width, self.height), f"--focal {focal:g}")
        except ValueError as e:
            raise ValueError(f"{e} (--fov gives the field of view directly)") from None


@dataclass(frozen=True)
class RefineConfig:
    """The refine step: make the splats hold up away from the dreamed cameras.

    Three parts, each a stage of its own with its own progress bar and checkpoint:
    ``complete`` (before splats: dream the cameras of the render path, and of the repair rounds,
    where the cloud has holes), ``repair`` (during splat training: repaired renders of novel
    cameras as extra training views, scheduled by the splat settings ``repair_*``) and depth
    supervision of the splats by the dreamed views' depth maps. The optional ``repair video`` pass
    repairs every frame of the fly-through. (The joint depth refinement after the dream loop,
    progress stage "refine", is another thing: it always runs.)
    """

    refine: bool = False
    """Run the refine step: the completion pass, repaired novel views in splat training, depth supervision."""
    refine_model: str = "stabilityai/sd-turbo"
    """Repair model of the default model set: a hub id or local folder of an image-to-image pipeline (the tiny and
    synthetic sets bring their own)."""
    refine_strength: float = 0.5
    """How much of a render the repair model re-draws, in (0, 1] (image-to-image strength)."""
    refine_steps: int = 2
    """Denoising steps of the repair model before strength (SD-Turbo: 2 x 0.5 = one step)."""
    refine_guidance: float = 0.0
    """Classifier-free guidance of the repair model (0: none, as one-step models are trained)."""
    refine_color_match: Literal["reference", "render", "none"] = "reference"
    """Match the repaired image's colours to the nearest dreamed view (reference), to the render itself, or not at
    all."""
    refine_fraction: float = 0.7
    """``synthetic`` only: the repaired image moves this fraction of the way from the render toward the world's true
    view."""
    refine_blur: float = 1.0
    """``synthetic`` only: blur (Gaussian sigma, pixels) of the repaired image."""
    refine_noise: float = 0.02
    """``synthetic`` only: pixel noise (standard deviation) of the repaired image."""
    refine_depth_weight: float = 0.3
    """Depth supervision of splat training in the refine step (used when the splat setting depth_weight is 0)."""
    refine_opaque_weight: float = 1.0
    """The transmittance barrier of splat training in the refine step (used when the splat setting opaque_weight is
    0): valid pixels of the training views still more than 0.5% transparent pull their Gaussians' opacity and size,
    closing the cracks between splats that a video would show."""
    refine_min_scale_px: float = 0.7
    """The floor on the Gaussians' size in splat training in the refine step, in pixels of each one's finest training
    view (used when the splat setting min_scale_px is 0): neighbouring splats keep overlapping in the frames between
    the training cameras, where cracks would show."""
    refine_path_views: int = 16
    """Render-path frames the splats train on in the refine step, re-rendered from the (completed) cloud (used when
    the splat setting path_views is 0): the video's frames are covered where the cloud covers them."""
    complete: bool = True
    """With the refine step: dream the render path's cameras (and the repair cameras) where the cloud has holes,
    before splats."""
    complete_threshold: float = 0.002
    """The completion pass dreams a camera whose holes cover more than this fraction of its image."""
    complete_max_views: int = 12
    """The most cameras the completion pass dreams."""
    complete_close_px: int = 2
    """Holes are measured after a closing of this many pixels: slivers narrower than about twice it are left to the
    splats."""
    complete_path_frames: int = 48
    """Render-path frames the completion pass checks, spread evenly over the path (neighbouring frames have nearly the
    same holes)."""
    complete_repair_cameras: bool = True
    """The completion pass also checks the repair rounds' novel cameras (after the render path's)."""
    complete_suspect_views: int = 6
    """After the holes, the completion pass repairs the cloud's render of each camera it checks and dreams up to this
    many cameras where the repair disagrees with the render (a nearer surface the cloud lacks, seen through), lifting
    the disagreeing pixels whose depth is nearer than the cloud's (0 = off)."""
    complete_suspect_threshold: float = 0.02
    """A camera is dreamed for its disagreeing pixels when they cover more than this fraction of its image."""
    complete_suspect_color: float = 0.05
    """A covered pixel disagrees when the repaired render differs from the cloud's by more than this (mean absolute
    difference of the channels in [0, 1], averaged over its 5x5 neighbourhood)."""
    complete_suspect_nearer: float = 0.8
    """A disagreeing pixel is lifted where its aligned depth is below this times the cloud's there."""
    refine_video: bool = False
    """Also write the fly-through with every frame repaired, the previous repaired frame as reference (one model call
    per frame)."""

    def __post_init__(self):
        from dreamer.checks import check_choice, check_int, check_number

        check_number(self.refine_strength, "refine_strength", min=0.0, max=1.0, open_min=True)
        check_int(self.refine_steps, "refine_steps", min=1)
        check_number(self.refine_guidance, "refine_guidance", min=0.0)
        check_choice(self.refine_color_match, "refine_color_match", ("reference", "render", "none"))
        check_number(self.refine_fraction, "refine_fraction", min=0.0, max=1.0)
        check_number(self.refine_blur, "refine_blur", min=0.0)
        check_number(self.refine_noise, "refine_noise", min=0.0, max=0.5)
        check_number(self.refine_depth_weight, "refine_depth_weight", min=0.0)
        check_number(self.complete_threshold, "complete_threshold", min=0.0, max=0.999)
        check_int(self.complete_max_views, "complete_max_views", min=0)
        check_int(self.complete_close_px, "complete_close_px", min=0)
        check_int(self.complete_path_frames, "complete_path_frames", min=1)
        check_int(self.complete_suspect_views, "complete_suspect_views", min=0)
        check_number(self.complete_suspect_threshold, "complete_suspect_threshold", min=0.0, max=0.999)
        check_number(self.complete_suspect_color, "complete_suspect_color", min=0.0)
        check_number(self.complete_suspect_nearer, "complete_suspect_nearer", min=0.0, max=1.0, open_min=True)
        check_int(self.refine_path_views, "refine_path_views", min=0)
        check_number(self.refine_opaque_weight, "refine_opaque_weight", min=0.0)
        check_number(self.refine_min_scale_px, "refine_min_scale_px", min=0.0, max=9.99)
        if not isinstance(self.refine_model, str) or not self.refine_model.strip():
            raise ValueError(f"refine_model must be a hub id or a folder, got {self.refine_model!r}")

    def splat_config(self, splats):
        """The splat settings the refine step trains with: ``splats`` with depth supervision at
        ``refine_depth_weight`` unless it sets its own ``depth_weight``, ``refine_path_views``
        render-path views unless it sets its own ``path_views``, the transmittance barrier at
        ``refine_opaque_weight`` unless it sets its own ``opaque_weight``, and the size floor at
        ``refine_min_scale_px`` unless it sets its own ``min_scale_px``; unchanged when the refine
        step is off."""
        if not self.refine or splats is None:
            return splats
        changes = {}
        if splats.depth_weight == 0:
            changes["depth_weight"] = self.refine_depth_weight
        if splats.path_views == 0:
            changes["path_views"] = self.refine_path_views
        if splats.opaque_weight == 0:
            changes["opaque_weight"] = self.refine_opaque_weight
        if splats.min_scale_px == 0:
            changes["min_scale_px"] = self.refine_min_scale_px
        return dataclasses.replace(splats, **changes) if changes else splats


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
    refine: RefineConfig = field(default_factory=RefineConfig)
    """The refine step (off unless ``refine.refine``)."""
    preset: str | None = None
    """The run preset that chose the defaults of the costly settings (:mod:`dreamer.pipeline.presets`);
    for the record only: the values it chose are in the sections, and only they are hashed."""

    def to_dict(self) -> dict:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in ("scene", "dream", "models")}
        out["splats"] = None if self.splats is None else dataclasses.asdict(self.splats)
        out["zoom"] = dataclasses.asdict(self.zoom)
        out["refine"] = dataclasses.asdict(self.refine)
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
        return self._hash(("scene", "dream", "models", "splats", "zoom", "refine"))

    @classmethod
    def from_dict(cls, d: dict) -> "SceneConfigs":
        if not isinstance(d, dict):
            raise TypeError(f"a scene's settings must be a mapping of sections (scene, dream, models, splats, zoom), "
                            f"got {type(d).__name__}")
        unknown = [k for k in d if k not in (*CONFIG_SECTIONS, "preset", "hash", "dream_hash")]
        if unknown:
            raise ValueError(f"unknown section(s) [{quote_names(unknown)}]: a scene's settings have the sections "
                             f"{', '.join(CONFIG_SECTIONS)} (is this a scene folder's config.json?)")
        splats = d.get("splats")
        return cls(
            scene=dataclass_from_dict(SceneConfig, d.get("scene", {}), where="scene"),
            dream=dataclass_from_dict(DreamConfig, d.get("dream", {}), where="dream"),
            models=dataclass_from_dict(ModelConfig, d.get("models", {}), where="models"),
            splats=None if splats is None else dataclass_from_dict(_splat_config_cls(), splats, where="splats"),
            zoom=dataclass_from_dict(DeepZoomConfig, d.get("zoom") or {}, where="zoom"),
            refine=dataclass_from_dict(RefineConfig, d.get("refine") or {}, where="refine"),
            preset=d.get("preset") if isinstance(d.get("preset"), str) else None,
        )


CONFIG_SECTIONS: dict[str, Callable[[], type]] = {
    "scene": lambda: SceneConfig,
    "dream": lambda: DreamConfig,
    "models": lambda: ModelConfig,
    "splats": _splat_config_cls,
    "zoom": lambda: DeepZoomConfig,
    "refine": lambda: RefineConfig,
}


# Short names people type (flags and batch keys) for settings whose field names are long or ambiguous.
SETTING_ALIASES = {"gs_iters": "iterations"}


def configs_from_flat(flat: dict[str, Any], base: SceneConfigs | None = None, *,
                      where: str = "settings") -> SceneConfigs:
    """Apply flat ``{name: value}`` settings (a batch entry, CLI options) to every config that has
    the field (``seed`` sets all seeds). Unknown names are an error naming the known ones."""
    base = base or SceneConfigs()
    flat = {SETTING_ALIASES.get(k, k): v for k, v in flat.items()}
    no_splats = flat.pop("no_splats", False)
    if not isinstance(no_splats, bool):
        raise TypeError(f"{where}: no_splats must be true or false, got {no_splats!r}")
    splats_on = base.splats is not None and not no_splats
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
        raise ValueError(f"{where}: unknown setting(s) [{quote_names(unknown)}]; known settings: {', '.join(known)}")
    if not splats_on:
        sections["splats"] = None
    return SceneConfigs(**sections, preset=base.preset)
