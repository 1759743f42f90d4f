"""The board of a Ray batch's progress events: an actor the workers report to and the driver drains.

A module of its own, without imports: Ray starts the board's process by importing the module
that defines it, and beside the workers' imports (torch, the pipeline: about 2.5 s of CPU each)
the board needs none.
"""

from __future__ import annotations

__all__ = ["ProgressBoard"]


class ProgressBoard:
    """A Ray actor collecting the workers' progress events until the driver drains them."""

    def __init__(self):
        self.events: list = []

    def report(self, events: list) -> None:
        self.events.extend(events)

    def drain(self) -> list:
        events, self.events = self.events, []
        return events
