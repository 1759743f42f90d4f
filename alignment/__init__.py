"""Pure geometry for aligning a new depth map to existing geometry and merging points.

Functions of tensors only (no models, files or UI); depth is z-depth, masks are bool [H,W].

* :func:`fit_scale` -- robust closed-form scale (and shift) of an estimated depth on the overlap.
* :func:`seam_correction`, :func:`align_depth` -- a smooth multiplicative correction that makes
  the new depth meet the existing geometry at the seam.
* :func:`alignment.adaptive.align_adaptive` -- the dream loop's alignment: a global correction
  and a seam reach chosen per view on held-out overlap pixels nearest the hole.
* :mod:`alignment.joint`, :mod:`alignment.fields` -- the joint refinement of every view's
  correction field against all overlapping views; :mod:`alignment.peers` -- other methods'
  alignments (Text2Room, LucidDreamer, an oracle scale) for comparisons.
* :func:`stretched_pixels` -- pixels on the far side of depth discontinuities (not to be lifted).
* :func:`dedup_mask`, :func:`footprint_level` -- multi-resolution voxel merge of new points.
"""

from alignment.edges import stretched_pixels
from alignment.merge import dedup_mask, footprint_level
from alignment.scale import ScaleFit, fit_scale
from alignment.seam import AlignedDepth, align_depth, seam_correction, seam_jump, seam_ring

__all__ = [
    "ScaleFit",
    "fit_scale",
    "AlignedDepth",
    "align_depth",
    "seam_correction",
    "seam_jump",
    "seam_ring",
    "stretched_pixels",
    "dedup_mask",
    "footprint_level",
]
