"""Settings of the deep-zoom stage (``--zoom-*`` flags)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dreamer.checks import check_int, check_number
from dreamer.progress import ProgressFn

__all__ = ["DeepZoomConfig", "DEFAULT_SUFFIXES", "ProgressFn"]


DEFAULT_SUFFIXES = ("close-up", "macro photograph, fine detail", "extreme macro photograph",
                    "microscopic detail, extreme close-up")


@dataclass(frozen=True)
class DeepZoomConfig:
    """Settings of the deep-zoom stage. Every name starts with ``zoom_`` so that its command-line
    flag (``--zoom-levels``) never collides with another stage's setting."""

    zoom_levels: int = 0
    """Levels of the zoom stack, level 0 being the chosen view itself (0 = no zoom stage; else >= 2); the deepest level
    magnifies zoom_p^(zoom_levels-1) times (11 levels at p = 2: 1024x)."""
    zoom_p: int = 2
    """Zoom factor between consecutive levels, an integer >= 2 (the paper uses 2 or 4): level i has focal length f *
    p^i."""
    zoom_view: int = 0
    """Index of the dreamed view to zoom into (negative counts from the last)."""
    zoom_center: tuple[float, ...] | None = None
    """Zoom centre (u, v) in pixels of that view (continuous, pixel centres at +0.5); default the image centre."""
    zoom_prompts: tuple[str, ...] | None = None
    """One prompt per level, widest first; one prompt is repeated with zoom_suffixes; default the scene's prompt."""
    zoom_suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    """Suffixes appended to a repeated prompt at levels 1, 2, ... (the last one repeats for deeper levels)."""
    zoom_steps: int = 50
    """Denoising steps of the zoom sampler (learned and tiny models)."""
    zoom_guidance: float = 7.5
    """Classifier-free guidance scale of the zoom sampler."""
    zoom_seed: int = 0
    """Seed of the zoom sampler's generator."""
    zoom_supersample: int = 2
    """``synthetic`` only: sub-pixel rays per axis of the world's render at each level (band-limited truth)."""
    zoom_replace_tolerance: float = 0.05
    """A coarse point fades out where a finer level covers it when its z-depth is within this fraction of the level's
    depth at its pixel."""
    zoom_dolly_views: bool = True
    """Dream a training view for each level 1, 2, ... on the fly-in path, at the camera where the zoom point is as
    magnified as in the level, with the scene's inpainter: it repaints what the cloud's render there lacks or gets
    wrong from the view's centre (holes and depth edges: the background a nearer surface uncovers as the camera moves
    in, which no pure zoom shows), and the splats learn those pixels from it."""
    zoom_dolly_edge_px: int = 2
    """A dolly view repaints its holes and the pixels within this many pixels of a depth edge of the cloud's render."""
    zoom_antialiased: bool = True
    """Train and render the zoomed scene's splats antialiased (gsplat's antialiased mode plus Mip-Splatting's 3D
    filter, variance 0.2); false: the classic mode."""
    zoom_fly_frames: int = 48
    """Frames of the fly-in video (the dolly towards the zoom point); 0 = no fly-in video."""
    zoom_fps: int = 24
    """Frames per second of the fly-in and 2D zoom videos."""
    zoom_video_seconds_per_level: float = 1.0
    """Seconds per level of the 2D zoom video of the stack (0 = no 2D zoom video)."""
    zoom_splats: bool = True
    """Train splats on the scene's views plus the zoom levels and render the fly-in with them (needs the splat stage
    on)."""

    def __post_init__(self) -> None:
        if check_int(self.zoom_levels, "zoom_levels", min=0) == 1:
            raise ValueError("zoom_levels must be 0 (off) or an integer >= 2 (level 0 is the view itself), got 1")
        check_int(self.zoom_p, "zoom_p", min=2)
        check_int(self.zoom_view, "zoom_view")
        if self.zoom_center is not None:
            c = tuple(self.zoom_center)
            if len(c) != 2 or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in c):
                raise ValueError(f"zoom_center must be two numbers (u, v) in pixels, got {self.zoom_center!r}")
            object.__setattr__(self, "zoom_center", tuple(float(x) for x in c))
        if self.zoom_prompts is not None:
            prompts = tuple(self.zoom_prompts)
            if not prompts or not all(isinstance(s, str) for s in prompts):
                raise ValueError(f"zoom_prompts must be one or more strings, got {self.zoom_prompts!r}")
            if self.zoom_levels and len(prompts) not in (1, self.zoom_levels):
                raise ValueError(f"zoom_prompts has {len(prompts)} prompts for {self.zoom_levels} levels: "
                                 f"give one prompt or one per level")
            object.__setattr__(self, "zoom_prompts", prompts)
        object.__setattr__(self, "zoom_suffixes", tuple(self.zoom_suffixes))
        if not all(isinstance(s, str) for s in self.zoom_suffixes):
            raise ValueError(f"zoom_suffixes must be strings, got {self.zoom_suffixes!r}")
        for name in ("zoom_steps", "zoom_supersample", "zoom_fps"):
            check_int(getattr(self, name), name, min=1)
        for name in ("zoom_fly_frames", "zoom_seed", "zoom_dolly_edge_px"):
            check_int(getattr(self, name), name, min=0)
        if self.zoom_fly_frames == 1:
            raise ValueError("zoom_fly_frames must be 0 (no fly-in) or >= 2 (a start and an end)")
        check_number(self.zoom_guidance, "zoom_guidance", min=0)
        check_number(self.zoom_replace_tolerance, "zoom_replace_tolerance", min=0, max=1, open_min=True)
        if self.zoom_replace_tolerance >= 1:
            raise ValueError(f"zoom_replace_tolerance must be in (0, 1), got {self.zoom_replace_tolerance!r}")
        check_number(self.zoom_video_seconds_per_level, "zoom_video_seconds_per_level", min=0)
        if not isinstance(self.zoom_dolly_views, bool):
            raise ValueError(f"zoom_dolly_views must be true or false, got {self.zoom_dolly_views!r}")
        if not isinstance(self.zoom_antialiased, bool):
            raise ValueError(f"zoom_antialiased must be true or false, got {self.zoom_antialiased!r}")

    @property
    def enabled(self) -> bool:
        return self.zoom_levels > 0

    @property
    def magnification(self) -> float:
        """How many times the deepest level magnifies the view: p^(levels-1)."""
        return float(self.zoom_p) ** max(self.zoom_levels - 1, 0)

    def to_dict(self) -> dict:
        return asdict(self)
