"""Progress bars for the command lines: ``on_progress(stage, done, total)`` -> one tqdm bar per stage."""

from __future__ import annotations

__all__ = ["StageBars"]


class StageBars:
    """An ``on_progress`` callback that shows one tqdm bar per stage, closed when the stage ends.

    ``label`` prefixes each bar's description (e.g. the scene name); ``enabled`` False shows
    nothing; ``leave`` keeps finished bars on screen.
    """

    def __init__(self, label: str = "", *, enabled: bool = True, leave: bool = True):
        self.label, self.enabled, self.leave = label, enabled, leave
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            desc = f"{self.label}: {stage}" if self.label else stage
            bar = self.bars[stage] = tqdm(total=total, desc=desc, leave=self.leave, dynamic_ncols=True)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            del self.bars[stage]

    def close(self) -> None:
        """Close the bars of stages that did not finish (an error or an interrupt)."""
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
