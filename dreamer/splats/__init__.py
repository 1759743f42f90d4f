"""Gaussian splats: initialize from the dreamed cloud, train (gsplat on CUDA, pure torch on CPU),
export the standard 3DGS .ply (or the compressed .spz) and render fly-through videos.

Modules: :mod:`~dreamer.splats.rasterizer` (both rasterizer paths; the CPU one composites in
:mod:`~dreamer.splats.tiles`), :mod:`~dreamer.splats.reference`
(a brute-force reference for tests), :mod:`~dreamer.splats.gaussians` (parameters, init, .ply),
:mod:`~dreamer.splats.spz` (.spz), :mod:`~dreamer.splats.losses` (masked L1 / SSIM, depth),
:mod:`~dreamer.splats.config` (the stage's settings), :mod:`~dreamer.splats.train` (the training
loop), :mod:`~dreamer.splats.views` (its training views), :mod:`~dreamer.splats.train_state`
(checkpoints, fingerprints), :mod:`~dreamer.splats.repair` and :mod:`~dreamer.splats.pseudo_views`
(the novel cameras and repaired pseudo-views), :mod:`~dreamer.splats.lod` (levels of detail),
:mod:`~dreamer.splats.video` (videos).
"""

from dreamer.splats.gaussians import Gaussians
from dreamer.splats.rasterizer import RasterOutput, rasterize
from dreamer.splats.train import SplatConfig, SplatTrainingError, TrainingView, build_training_views, train_gaussians
from dreamer.splats.video import VideoFiles, render_video

__all__ = [
    "Gaussians",
    "SplatConfig",
    "SplatTrainingError",
    "TrainingView",
    "train_gaussians",
    "build_training_views",
    "rasterize",
    "RasterOutput",
    "render_video",
    "VideoFiles",
]
