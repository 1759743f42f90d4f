"""Deep zoom in 3D: lift a zoom stack into a dreamed scene and fly into it.

Pick a view of a scene and a zoom centre (a pixel). Level ``i`` of the zoom is a camera with the
view's centre of projection and rotation, focal length ``f * p^i`` and a principal point that
puts the zoom centre in the middle of the image (:func:`level_cameras`): the levels are exact
pure zooms of each other, the geometry of a zoom stack (``zoom/``). Level 0 is the view itself,
re-centred on the zoom point; its render from the scene is the photo that fixes the stack
(pixels no point covers guide nothing).

Level images come from (:func:`level_images`): the procedural world's band-limited render at
each level camera (``synthetic``, the oracle and ground truth), or the joint zoom sampler
(:func:`zoom.sample_zoom_stack`) with the scene's render at level 0 as its photo (learned and
``tiny`` models).

For each level ``i >= 1`` (:func:`lift_zoom_level`): render the points that camera shows,
estimate the depth of the level image, filter it as the dream loop does (pixel noise, the rims a
depth model draws around objects: :func:`dreamer.scene.loop.filter_estimate`), align it to the
rendered geometry (``alignment``: robust scale, smooth trend, seam correction into the holes)
and lift every pixel as a point of level ``i`` with the finer footprint ``z / (f p^i)``. The
coarser points that the level covers stay, as a coarser level of detail: every point (and every
Gaussian trained from it) carries its zoom level and two fade lengths
(:mod:`dreamer.splats.lod`), so whatever camera looks at the scene sees the level whose
resolution matches its pixels, cross-faded over one octave between levels.

Splats (:func:`train_zoom_splats`) are trained in the local frame of the zoom point
(:class:`LocalFrame`: float32 keeps a Gaussian 1/1000 of the scene's size in place), with the
means' learning rate scaled to each level's Gaussian size, antialiased (gsplat's antialiased
mode and Mip-Splatting's 3D filter) by default. :func:`fly_in_cameras` makes a dolly from the
view towards the zoom point (a real translation: parallax, not a crop) that ends where the zoom
point is as magnified as in the deepest level; :func:`fly_in_metrics` compares a rendered
fly-in with the truth at every frame. The levels are pure zooms but the fly-in is a dolly: with
the scene's inpainter each level also gets a dolly view (:func:`dream_dolly_views`: the fly-in
camera of the level's magnification, its holes and depth edges repainted), whose repainted
pixels the splats learn from. :func:`zoom_scene` runs the zoom on a
:class:`~dreamer.scene.DreamResult`; the pipeline's zoom stage (``--zoom-levels``) calls it
and writes the outputs (:func:`write_zoom_outputs`, :func:`write_zoom_splat_outputs`).

Modules: ``config`` (settings), ``levels`` (level cameras, prompts, the zoom point, the local
frame), ``sampling`` (level images), ``lifting`` (levels into the cloud), ``dolly`` (training views
on the fly-in path), ``stage`` (the whole zoom), ``training`` (splats), ``flyin`` (the dolly
and its videos), ``metrics``, ``outputs``.
"""

from dreamer.deepzoom.config import DEFAULT_SUFFIXES, DeepZoomConfig
from dreamer.deepzoom.dolly import DollyViewStats, dolly_level_cameras, dream_dolly_view, dream_dolly_views
from dreamer.deepzoom.flyin import (NearPlane, SplatsOverPoints, dolly_cameras, fill_gaps, fly_in_cameras,
                                    fly_in_near_plane, fly_in_zooms, render_fly_in_points, render_points_video)
from dreamer.deepzoom.levels import LocalFrame, level_cameras, level_prompts, zoom_point
from dreamer.deepzoom.lifting import ZoomLevelStats, lift_zoom_level, lift_zoom_levels, lod_visible, render_lod_points
from dreamer.deepzoom.metrics import FlyInMetrics, fly_in_metrics, psnr, ssim, zoom_metrics
from dreamer.deepzoom.outputs import write_zoom_outputs, write_zoom_splat_outputs
from dreamer.deepzoom.sampling import level_images
from dreamer.deepzoom.stage import DeepZoomResult, zoom_scene
from dreamer.deepzoom.training import ZoomSplats, train_zoom_splats, zoom_splat_config

__all__ = [
    "DeepZoomConfig",
    "ZoomLevelStats",
    "DeepZoomResult",
    "LocalFrame",
    "level_cameras",
    "level_prompts",
    "zoom_point",
    "level_images",
    "lift_zoom_level",
    "lift_zoom_levels",
    "lod_visible",
    "render_lod_points",
    "zoom_scene",
    "fly_in_cameras",
    "dolly_cameras",
    "dolly_level_cameras",
    "dream_dolly_view",
    "dream_dolly_views",
    "DollyViewStats",
    "fly_in_zooms",
    "render_fly_in_points",
    "fill_gaps",
    "render_points_video",
    "fly_in_near_plane",
    "NearPlane",
    "SplatsOverPoints",
    "ZoomSplats",
    "zoom_splat_config",
    "train_zoom_splats",
    "write_zoom_outputs",
    "write_zoom_splat_outputs",
    "zoom_metrics",
    "fly_in_metrics",
    "FlyInMetrics",
    "psnr",
    "ssim",
    "DEFAULT_SUFFIXES",
]
