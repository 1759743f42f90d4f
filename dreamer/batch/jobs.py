"""One scene of a batch, run with this process's models: what every executor calls."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from dreamer.backends.loading import ModelNotAvailable
from dreamer.backends import model_sets
from dreamer.cli import one_line
from dreamer.pipeline import SceneConfigs, SceneOutcome, run_scene
from dreamer.pipeline.limits import Limits
from dreamer.scene import ProgressFn

__all__ = ["SceneJob", "run_job", "note_in_log"]

log = logging.getLogger("dreamer.run")


@dataclass(frozen=True)
class SceneJob:
    """A scene to dream: its name (for messages), its folder, its resolved settings, the size
    limits its inputs were checked against, whether to start it over (``--restart``; with
    ``overwrite``, only when its folder holds a scene of other settings) and whether to keep the
    checkpoints of finished stages (``--keep-checkpoints``)."""

    name: str
    out: Path
    configs: SceneConfigs
    limits: Limits = field(default_factory=Limits)
    restart: bool = False
    overwrite: bool = False
    keep_checkpoints: bool = False


def note_in_log(out: Path, message: str) -> None:
    """Append one line to the scene's ``run.log`` (in the format of the scene's own log lines)."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(out / "run.log", "a") as f:
        f.write(f"{stamp} INFO dreamer.batch: {message}\n")


def run_job(job: SceneJob, on_progress: ProgressFn | None = None) -> SceneOutcome:
    """Dream ``job`` with the backends of this process (loaded once, reused by later scenes).

    A scene that raises is a "failed" outcome, its traceback appended to its ``run.log``: one
    failing scene must not stop the batch. ``KeyboardInterrupt`` propagates.
    """
    try:
        # Looked up on the module at call time, so a test that replaces it cannot leave it replaced.
        backends = model_sets.build_backends(job.configs.models)
        return run_scene(job.configs, job.out, backends, on_progress=on_progress, name=job.name,
                         limits=job.limits, restart=job.restart, overwrite=job.overwrite,
                         keep_checkpoints=job.keep_checkpoints)
    except ModelNotAvailable as e:
        log.error("%s", one_line(e))
        return SceneOutcome(job.name, job.out, "failed", error=one_line(e))
    except Exception as e:
        log.error("%s failed: %s", job.name, one_line(e))
        log.debug("%s", traceback.format_exc())
        try:
            job.out.mkdir(parents=True, exist_ok=True)
            with open(job.out / "run.log", "a") as f:
                f.write(traceback.format_exc())
        except OSError:  # an unwritable folder: the summary still says why the scene failed
            pass
        return SceneOutcome(job.name, job.out, "failed", error=f"{type(e).__name__}: {one_line(e)}")
