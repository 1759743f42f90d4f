"""One scene of a batch, run with this process's models: what every executor calls."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from dreamer.backends.loading import ModelNotAvailable
from dreamer.backends.model_sets import build_backends
from dreamer.pipeline import SceneConfigs, SceneOutcome, run_scene
from dreamer.scene import ProgressFn

__all__ = ["SceneJob", "run_job", "note_in_log"]

log = logging.getLogger("dreamer.run")


@dataclass(frozen=True)
class SceneJob:
    """A scene to dream: its name (for messages), its folder and its resolved settings."""

    name: str
    out: Path
    configs: SceneConfigs


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
        backends = build_backends(job.configs.models)
        return run_scene(job.configs, job.out, backends, on_progress=on_progress, name=job.name)
    except ModelNotAvailable as e:
        log.error("%s", e)
        return SceneOutcome(job.name, job.out, "failed", error=str(e).splitlines()[0])
    except Exception as e:
        log.error("%s failed: %s", job.name, e)
        job.out.mkdir(parents=True, exist_ok=True)
        with open(job.out / "run.log", "a") as f:
            f.write(traceback.format_exc())
        return SceneOutcome(job.name, job.out, "failed", error=f"{type(e).__name__}: {e}")
