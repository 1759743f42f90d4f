"""Gaussian splats: initialize from the dreamed cloud, train (gsplat on CUDA, pure torch on CPU),
export the standard 3DGS .ply (or the compressed .spz) and render fly-through videos.

Modules: :mod:`~dreamer.splats.rasterizer` (both rasterizer paths), :mod:`~dreamer.splats.reference`
(a brute-force reference for tests), :mod:`~dreamer.splats.gaussians` (parameters, init, .ply),
:mod:`~dreamer.splats.spz` (.spz), :mod:`~dreamer.splats.losses` (masked L1 / SSIM, depth),
:mod:`~dreamer.splats.train` (the training stage), :mod:`~dreamer.splats.repair` (the novel
cameras of the repaired views), :mod:`~dreamer.splats.video` (videos).
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
