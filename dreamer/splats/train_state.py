"""The splat stage's files: its checkpoint (parameters, optimizer and strategy state, pseudo-views),
its finished result, and the fingerprint of the settings and inputs that decides whether a rerun
may continue from them (see "Resuming" in :mod:`dreamer.splats.train`)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import Tensor

from dreamer.scene.result import DreamResult
from dreamer.splats.gaussians import Gaussians
from dreamer.splats.lod import LevelsOfDetail

from dreamer.io import atomic_path
from dreamer.splats.config import NOT_HASHED, SplatConfig
from dreamer.splats.views import TrainingView, _extra_splat_scale

log = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_FILE", "DONE_FILE", "RESULT_FILE", "CONFIG_FILE", "describe_refiner"]

CHECKPOINT_FILE = "checkpoint.pt"
DONE_FILE = "done.json"
RESULT_FILE = "gaussians.ply"
CONFIG_FILE = "config.json"
_FORMAT = 2


def describe_refiner(refiner) -> dict | None:
    """What decides a refiner's answers, for fingerprints: its own ``describe()`` when it has
    one, else its class name (None without a refiner)."""
    if refiner is None:
        return None
    own = getattr(refiner, "describe", None)
    return own() if callable(own) else {"kind": type(refiner).__qualname__}


def _fingerprint(result: DreamResult, config: SplatConfig, init: Gaussians | None = None, refiner=None,
                 lod: LevelsOfDetail | None = None, path_cameras=None) -> str:
    """Hash of the settings that change the result, of the refiner and of the inputs (points,
    their levels of detail, views and the Gaussians training starts from, when given)."""
    h = hashlib.sha256()
    cfg = {k: v for k, v in config.to_dict().items() if k not in NOT_HASHED}
    if refiner is None:  # the repair settings do nothing without a refiner
        cfg = {k: v for k, v in cfg.items() if not k.startswith("repair_")}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    if refiner is not None:
        h.update(json.dumps({"refiner": describe_refiner(refiner)}, sort_keys=True, default=str).encode())
    h.update(json.dumps({"splat_scale": _extra_splat_scale(result, config)}).encode())

    def add(t: Tensor) -> None:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())

    for t in (result.points.xyz, result.points.rgb, result.points.radius):
        add(t)
    if lod is not None:
        for t in (lod.level.float(), lod.lod_in, lod.lod_out):
            add(t)
    for v in result.views:
        for t in (v.camera.K, v.camera.c2w, v.image, v.depth):
            add(t)
        h.update(f"{v.camera.width}x{v.camera.height}".encode())
        if getattr(v, "loss_mask", None) is not None:
            add(v.loss_mask.float())
    if path_cameras:
        h.update(b"path")
        for cam in path_cameras:
            add(cam.K)
            add(cam.c2w)
    if init is not None:
        h.update(b"init")
        for t in init.params().values():
            add(t)
    return h.hexdigest()[:20]


def _save_checkpoint(folder: Path, *, iteration: int, params: dict, optimizers: dict, strategy_state: dict,
                     fingerprint: str, pseudo_views: list[TrainingView] = ()) -> None:

    state = {
        "format": _FORMAT,
        "fingerprint": fingerprint,
        "iteration": iteration,
        "params": {k: p.detach().cpu() for k, p in params.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "strategy_state": {k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in strategy_state.items()},
        "pseudo_views": [{"camera": v.camera.to_dict(), "source": v.source, "round": v.round,
                          "image": (v.image.detach().cpu() * 255.0).round().to(torch.uint8)} for v in pseudo_views],
    }
    with atomic_path(folder / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(folder: Path, fingerprint: str, device: torch.device) -> dict | None:
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a damaged file: start over rather than fail
        log.warning("%s cannot be read (%s); training from scratch", path, e)
        return None
    if state.get("format") != _FORMAT or state.get("fingerprint") != fingerprint:
        log.info("%s belongs to other settings or inputs; training from scratch", path)
        return None
    return state


def _load_finished(folder: Path, fingerprint: str, config: SplatConfig, device: torch.device) -> Gaussians | None:
    """The result of a finished run in ``folder`` (its ``gaussians.ply``; a checkpoint at the last
    iteration for folders written before the result file was), or None."""
    if (folder / RESULT_FILE).is_file():
        try:
            return Gaussians.load_ply(folder / RESULT_FILE, device=device)
        except (OSError, ValueError) as e:
            log.warning("%s cannot be read (%s); training again", folder / RESULT_FILE, e)
            return None
    state = _load_checkpoint(folder, fingerprint, device)
    if state is not None and state["iteration"] >= config.iterations:
        return Gaussians.from_params({k: v.to(device) for k, v in state["params"].items()},
                                     rasterize_mode=config.rasterize_mode)
    return None
