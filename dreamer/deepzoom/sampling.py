"""The images of the zoom levels: the procedural world's exact renders, or a sampled zoom stack."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from dreamer.cameras import Camera
from dreamer.deepzoom.config import ProgressFn

__all__ = ["level_images"]


def level_images(cameras: Sequence[Camera], prompts: Sequence[str], *, world=None, pipeline=None,
                 photo: Tensor | None = None, photo_mask: Tensor | None = None, p: int = 2, steps: int = 50,
                 guidance: float = 7.5, seed: int = 0, supersample: int = 2,
                 on_progress: ProgressFn | None = None) -> Tensor:
    """The images [N,H,W,3] (float32 in [0,1]) of the zoom levels.

    With ``world`` (a ``ProceduralWorld``): its render at each level camera, band-limited and
    ``supersample``-d: the oracle answer and the ground truth. Otherwise ``pipeline`` (a diffusers
    text-to-image pipeline, e.g. ``backends.image_generator.pipe``) samples a joint zoom stack
    (:func:`zoom.sample_zoom_stack`) whose level 0 is fixed by ``photo`` [H,W,3] (the scene's
    render at level 0) where ``photo_mask`` [H,W] (bool) is True: pixels no point of the scene
    covers guide nothing. The cameras must be the pure zooms of :func:`level_cameras`.
    """
    if not cameras:
        raise ValueError("level_images needs at least one camera")
    if len(prompts) != len(cameras):
        raise ValueError(f"got {len(prompts)} prompts for {len(cameras)} levels")
    if world is not None:
        out = []
        for i, cam in enumerate(cameras):
            out.append(world.render(cam, supersample=supersample).image.float())
            if on_progress:
                on_progress("zoom levels", i + 1, len(cameras))
        return torch.stack(out)
    if pipeline is None:
        raise ValueError("level_images needs a world (synthetic models) or a text-to-image pipeline")
    from dreamer.backends.diffusion import pipeline_lock
    from zoom import sample_zoom_stack
    from zoom.sampler import seeded_generator

    cam = cameras[0]
    with pipeline_lock(pipeline):  # the pipeline is shared with the scene's image generator
        res = sample_zoom_stack(pipeline, list(prompts), p=p, steps=steps, guidance=guidance, height=cam.height,
                                width=cam.width, generator=seeded_generator(seed), photo=photo, photo_level=0,
                                photo_mask=photo_mask, on_progress=on_progress)
    return res.levels.detach().float().cpu().clamp(0, 1)
