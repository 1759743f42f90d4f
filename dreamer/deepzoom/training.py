"""Splats of a zoomed scene, trained and rendered in the local frame of the zoom point."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from dreamer.cameras import Camera
from dreamer.deepzoom.config import ProgressFn
from dreamer.deepzoom.levels import LocalFrame
from dreamer.deepzoom.stage import DeepZoomResult
from dreamer.splats.lod import MIP_FILTER_VARIANCE

__all__ = ["ZoomSplats", "zoom_splat_config", "train_zoom_splats"]


def zoom_splat_config(config, *, antialiased: bool = True):
    """The splat settings of a zoomed scene: ``config`` (a :class:`~dreamer.splats.SplatConfig`)
    in the antialiased mode with Mip-Splatting's 3D filter (variance 0.2), or in the classic
    mode without a filter."""
    from dreamer.splats import SplatConfig

    if not isinstance(config, SplatConfig):
        raise TypeError(f"config must be a SplatConfig, got {type(config).__name__}")
    if antialiased:
        return dataclasses.replace(config, rasterize_mode="antialiased", filter_3d=MIP_FILTER_VARIANCE)
    return dataclasses.replace(config, rasterize_mode="classic", filter_3d=0.0)


@dataclass
class ZoomSplats:
    """Gaussians of a zoomed scene in the local frame ``frame`` (centred on the zoom point): every
    Gaussian keeps its zoom level and level of detail, and draws in its rasterize mode.
    :meth:`render` takes cameras in the world frame, :meth:`render_local` in the local one."""

    gaussians: object  # dreamer.splats.Gaussians, local frame
    frame: LocalFrame

    def __len__(self) -> int:
        return len(self.gaussians)

    def render_local(self, camera: Camera, **kwargs):
        return self.gaussians.render(camera, **kwargs)

    def render(self, camera: Camera, **kwargs):
        return self.gaussians.render(self.frame.camera(camera), **kwargs)

    def world(self):
        """The Gaussians in the world frame (means moved in float64, stored float32)."""
        return self.gaussians.translated(self.frame.origin)

    def finest(self):
        """The world-frame Gaussians that no finer level covers: one resolution per region, what a
        viewer without levels of detail should load."""
        g = self.world()
        if g.lod is None:
            return g
        keep = g.lod.lod_out == 0
        out = g.select(keep)
        return out

    def save(self, folder: str | Path, *, export: tuple[str, ...] = ("ply",), spz_version: int = 4) -> dict[str, Path]:
        """Write into ``folder``, in the world frame: with ``"ply"`` in ``export``
        ``gaussians.ply`` (:meth:`finest`: what standard viewers should load) and
        ``gaussians_lod.ply`` (every level with its fade lengths); with ``"spz"``
        ``gaussians.spz`` (:meth:`finest`, compressed: the format has no room for levels)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        finest = self.finest()
        if "ply" in export:
            paths = {"gaussians": folder / "gaussians.ply", "gaussians_lod": folder / "gaussians_lod.ply"}
            finest.save_ply(paths["gaussians"])
            self.world().save_ply(paths["gaussians_lod"])
        if "spz" in export:
            paths["gaussians_spz"] = folder / "gaussians.spz"
            finest.save_spz(paths["gaussians_spz"], version=spz_version)
        return paths


def train_zoom_splats(zoomed: DeepZoomResult, config, *, antialiased: bool = True,
                      on_progress: ProgressFn | None = None, checkpoint_dir: str | Path | None = None,
                      keep_checkpoint: bool = False) -> ZoomSplats:
    """Train splats on a zoomed scene (its views and one view per lifted level) in the local frame
    of the zoom point, each Gaussian keeping its zoom level and level of detail; the splat
    settings ``config`` go through :func:`zoom_splat_config`."""
    from dreamer.splats import train_gaussians

    if not isinstance(zoomed, DeepZoomResult):
        raise TypeError(f"zoomed must be a DeepZoomResult, got {type(zoomed).__name__}")
    cfg = zoom_splat_config(config, antialiased=antialiased)
    frame = zoomed.frame
    local = frame.result(zoomed.result)
    g = train_gaussians(local, cfg, on_progress, checkpoint_dir=checkpoint_dir, keep_checkpoint=keep_checkpoint,
                        lod=zoomed.lod)
    return ZoomSplats(g, frame)
