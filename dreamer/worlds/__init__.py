"""Analytic worlds: ground truth for the offline demo, the tests and the benchmarks."""

from dreamer.worlds.procedural import ProceduralWorld, WorldRender

__all__ = ["ProceduralWorld", "WorldRender"]
