"""Progress bars for the command lines: ``on_progress(stage, done, total)`` -> one tqdm bar per stage."""

from __future__ import annotations

import functools

__all__ = ["StageBars"]


class StageBars:
    """An ``on_progress`` callback that shows one tqdm bar per stage, closed when the stage ends.

    ``label`` prefixes each bar's description (e.g. the scene name); ``enabled`` False shows
    nothing; ``leave`` keeps finished bars on screen; ``file`` is where the bars go (default
    stderr).

    Rates are honest: a bar starts counting at the first step it is told about (a stage resumed
    at step 2000, or loaded finished, does not show 2000 steps done in a millisecond), its rate
    is a smoothed average of the steps since then, and no rate is shown before two steps.
    """

    def __init__(self, label: str = "", *, enabled: bool = True, leave: bool = True, file=None):
        self.label, self.enabled, self.leave, self.file = label, enabled, leave, file
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            desc = f"{self.label}: {stage}" if self.label else stage
            # initial=done: the steps before this call (a resumed or reloaded stage) are not timed.
            bar = self.bars[stage] = _bar_class()(total=total, initial=done, desc=desc, leave=self.leave,
                                                  dynamic_ncols=True, smoothing=0.1, file=self.file)
        else:
            bar.total = total
            if done >= bar.n:
                bar.update(done - bar.n)
            else:  # a stage that went back (a new round): show where it is
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


@functools.cache
def _bar_class():
    """tqdm, showing no rate (nor time left) until two steps were timed (imported on first use)."""
    from tqdm import tqdm

    class Bar(tqdm):
        @property
        def format_dict(self):
            d = super().format_dict
            if d["n"] - d["initial"] < 2:
                d["rate"] = 0  # tqdm shows "?it/s" and "?" time left for a zero rate
            return d

    return Bar
