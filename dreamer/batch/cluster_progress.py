"""The driver's terminal view of a batch on Ray: scenes done / running / failed / retried, and
the stage bars of running scenes (fed by the events the workers send)."""

from __future__ import annotations

import logging
import sys

from dreamer.progress import StageBars

__all__ = ["ClusterProgress"]

log = logging.getLogger("dreamer.batch")

_MAX_SCENE_BARS = 8  # stage bars of at most this many running scenes; the others are only counted


class ClusterProgress:
    """The driver's terminal view: a bar of finished scenes (running / failed / retried as its
    postfix) and the stage bars of up to ``_MAX_SCENE_BARS`` running scenes."""

    def __init__(self, total: int, enabled: bool):
        self.enabled = enabled
        self.running: set[str] = set()
        self.failed = self.retried = 0
        self.scene_bars: dict[str, StageBars] = {}
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="scenes", unit="scene", dynamic_ncols=True)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"running {len(self.running)}, failed {self.failed}, retried {self.retried}")

    def started(self, name: str) -> None:
        self.running.add(name)
        self._postfix()

    def stage(self, name: str, stage: str, done: int, total: int) -> None:
        if not self.enabled or name not in self.running:
            return
        bars = self.scene_bars.get(name)
        if bars is None:
            if len(self.scene_bars) >= _MAX_SCENE_BARS:
                return
            bars = self.scene_bars[name] = StageBars(name, leave=False)
        bars(stage, done, total)

    def ended(self, name: str, status: str | None) -> None:
        """``status`` None: the scene will be started again."""
        self.running.discard(name)
        bars = self.scene_bars.pop(name, None)
        if bars is not None:
            bars.close()
        if status is None:
            self.retried += 1
        else:
            self.failed += status == "failed"
            if self.bar is not None:
                self.bar.update(1)
        self._postfix()

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            log.warning("%s", text)

    def close(self) -> None:
        for bars in self.scene_bars.values():
            bars.close()
        self.scene_bars.clear()
        if self.bar is not None:
            self.bar.close()
