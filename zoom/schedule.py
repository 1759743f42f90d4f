"""Discrete diffusion schedules and the ancestral step the zoom sampler takes.

:class:`Schedule` reads timesteps and cumulative alphas from any diffusers scheduler (through
``DDIMScheduler.from_config``, so a model's own schedule settings hold); :func:`ddpm_step` is
DDIM with eta = 1 written out, so the sampler can give it the *rendered* noise of a zoom stack;
:func:`model_output_to_x0` turns epsilon, v or sample predictions into a clean-latent estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from dreamer.checks import check_int

__all__ = ["Schedule", "ddpm_step", "model_output_to_x0"]


@dataclass(frozen=True)
class Schedule:
    """Timesteps and cumulative alphas of a discrete diffusion schedule.

    Built from any diffusers scheduler (or its config) through ``DDIMScheduler.from_config``, so
    the noise schedule, ``timestep_spacing``, ``steps_offset`` and ``set_alpha_to_one`` are the
    model's own. The previous timestep of ``t`` is ``t - num_train_timesteps // steps``, as in
    ``DDIMScheduler``.
    """

    timesteps: tuple[int, ...]
    alphas_cumprod: Tensor  # float64 [num_train_timesteps]
    final_alpha_cumprod: float
    step_ratio: int
    prediction_type: str

    @classmethod
    def from_scheduler(cls, scheduler, steps: int) -> "Schedule":
        from diffusers import DDIMScheduler

        check_int(steps, "steps", min=1)
        config = scheduler.config if hasattr(scheduler, "config") else scheduler
        ddim = DDIMScheduler.from_config(config)
        if steps > ddim.config.num_train_timesteps:
            raise ValueError(f"steps must be <= {ddim.config.num_train_timesteps} (the training timesteps), "
                             f"got {steps}")
        ddim.set_timesteps(steps)
        if max(int(t) for t in ddim.timesteps) >= len(ddim.alphas_cumprod):
            raise ValueError(f"{steps} steps with this scheduler's spacing/offset reach past the last training "
                             f"timestep; use fewer steps")
        return cls(
            timesteps=tuple(int(t) for t in ddim.timesteps),
            alphas_cumprod=ddim.alphas_cumprod.double().clone(),
            final_alpha_cumprod=float(ddim.final_alpha_cumprod),
            step_ratio=ddim.config.num_train_timesteps // steps,
            prediction_type=str(ddim.config.prediction_type),
        )

    def alpha(self, t: int) -> float:
        """Cumulative alpha at ``t``."""
        return float(self.alphas_cumprod[t])

    def alpha_prev(self, t: int) -> float:
        """Cumulative alpha at the step after ``t`` (the final alpha past the end)."""
        prev = t - self.step_ratio
        return float(self.alphas_cumprod[prev]) if prev >= 0 else self.final_alpha_cumprod


def ddpm_step(x0: Tensor, z: Tensor, alpha_t: float, alpha_prev: float, noise: Tensor) -> Tensor:
    """One ancestral step from ``z`` at cumulative alpha ``alpha_t`` to ``alpha_prev`` given the
    predicted clean sample ``x0`` and unit Gaussian ``noise`` (all the same shape).

    The DDPM posterior ``q(z_prev | z, x0)`` of the strided schedule, written as DDIM with
    ``eta = 1``: ``var = (1-a_prev)/(1-a_t) * (1 - a_t/a_prev)``,
    ``z_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - var) eps + sqrt(var) noise`` with
    ``eps = (z - sqrt(a_t) x0) / sqrt(1 - a_t)``. Equals ``DDIMScheduler.step(x0, t, z, eta=1,
    variance_noise=noise)`` with ``prediction_type="sample"`` and no clipping.
    """
    var = (1.0 - alpha_prev) / (1.0 - alpha_t) * (1.0 - alpha_t / alpha_prev)
    var = max(var, 0.0)
    eps = (z - math.sqrt(alpha_t) * x0) / math.sqrt(1.0 - alpha_t)
    direction = math.sqrt(max(1.0 - alpha_prev - var, 0.0)) * eps
    return math.sqrt(alpha_prev) * x0 + direction + math.sqrt(var) * noise


def model_output_to_x0(output: Tensor, z: Tensor, alpha_t: float, prediction_type: str) -> Tensor:
    """The clean-sample prediction from a UNet output: ``epsilon``, ``v_prediction`` or
    ``sample`` (same shapes as ``z``)."""
    if prediction_type == "epsilon":
        return (z - math.sqrt(1.0 - alpha_t) * output) / math.sqrt(alpha_t)
    if prediction_type == "v_prediction":
        return math.sqrt(alpha_t) * z - math.sqrt(1.0 - alpha_t) * output
    if prediction_type == "sample":
        return output
    raise ValueError(f"unsupported prediction_type {prediction_type!r}; expected 'epsilon', "
                     f"'v_prediction' or 'sample'")
