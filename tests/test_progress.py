"""The command lines' progress bars: honest rates."""

import io
import re
import time

from dreamer.progress import StageBars


def _rates(text: str) -> list[float]:
    return [float(r) for r in re.findall(r"([0-9.]+)it/s", text)]


def test_a_stage_loaded_finished_or_resumed_shows_no_rate_for_steps_it_did_not_time():
    out = io.StringIO()
    bars = StageBars("scene", file=out)
    bars("splats", 3000, 3000)  # loaded finished: 3000 steps in no time
    bars("dream", 20, 21)  # resumed after 20 views
    bars("dream", 21, 21)
    text = out.getvalue()
    assert "3000/3000" in text and "21/21" in text
    assert _rates(text) == []  # "?it/s": not 3000 steps per millisecond


def test_the_rate_is_that_of_the_timed_steps():
    out = io.StringIO()
    bars = StageBars(file=out)
    bars("views", 0, 4)
    for done in range(1, 5):
        time.sleep(0.12)
        bars("views", done, 4)
    rates = _rates(out.getvalue())
    assert rates and all(0 < r < 12.0 for r in rates), rates  # at most about 8 steps a second, never thousands


def test_disabled_bars_write_nothing():
    out = io.StringIO()
    StageBars(enabled=False, file=out)("dream", 1, 2)
    assert out.getvalue() == ""
