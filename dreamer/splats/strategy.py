"""Densification and pruning: gsplat's ``DefaultStrategy``, except that a prune never empties the scene.

gsplat prunes every Gaussian whose opacity is under ``prune_opa`` (and, after the first opacity
reset, every one larger than ``prune_scale3d`` times the scene scale). Settings that strict for a
scene (or a scene whose Gaussians all fade) would remove them all, and the training could only
stop, at a refine step that may come an hour into the run, with the scene's splats lost. A prune
that would remove every Gaussian removes none instead, with a warning naming the settings; the
training goes on and ends with a scene.
"""

from __future__ import annotations

import functools
import logging

import torch

from dreamer.splats.config import SplatConfig

__all__ = ["make_strategy"]

log = logging.getLogger("dreamer.splats.train")


@functools.cache
def _keeping_strategy_class():
    """The subclass of gsplat's DefaultStrategy (made on first use: gsplat is imported only then)."""
    from dataclasses import dataclass

    from gsplat.strategy import DefaultStrategy
    from gsplat.strategy.ops import remove

    @dataclass
    class KeepingStrategy(DefaultStrategy):
        """``DefaultStrategy`` whose prune keeps every Gaussian when it would remove them all."""

        warned: bool = False

        @torch.no_grad()
        def _prune_gs(self, params, optimizers, state, step: int) -> int:
            # The mask of gsplat 1.5's DefaultStrategy._prune_gs.
            faint = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
            is_prune = faint
            too_big = torch.zeros_like(faint)
            if step > self.reset_every:
                too_big = torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
                if step < self.refine_scale2d_stop_iter:
                    too_big |= state["radii"] > self.prune_scale2d
                is_prune = is_prune | too_big
            n_prune = int(is_prune.sum())
            if n_prune and n_prune == is_prune.numel():
                if not self.warned:
                    log.warning("splats: at iteration %d pruning would remove all %d Gaussians (%d fainter than "
                                "prune_opa %g, %d larger than prune_scale3d %g times the scene scale); they are "
                                "kept: lower prune_opa or raise prune_scale3d", step, n_prune, int(faint.sum()),
                                self.prune_opa, int(too_big.sum()), self.prune_scale3d)
                    self.warned = True
                return 0
            if n_prune:
                remove(params=params, optimizers=optimizers, state=state, mask=is_prune)
            return n_prune

    return KeepingStrategy


def make_strategy(config: SplatConfig):
    """The densification strategy of ``config`` (see the module docstring)."""
    return _keeping_strategy_class()(
        prune_opa=config.prune_opa, grow_grad2d=config.grow_grad2d, grow_scale3d=config.grow_scale3d,
        prune_scale3d=config.prune_scale3d, refine_start_iter=config.refine_start_iter,
        refine_stop_iter=config.refine_stop_iter, reset_every=config.reset_every,
        refine_every=config.refine_every, verbose=False,
    )
