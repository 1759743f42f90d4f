"""Speed of the work that is ours (not the models'), each against a baseline in the same run.

Sections (``--only NAME`` runs one; all of them by default, in this order):

* ``world``: the procedural world's render (image + depth + normal + object id) per 512x512
  view, the fast renderer (dreamer/worlds/procedural.py, cache cleared before each render)
  against the reference renderer it replaced (dreamer/worlds/reference.py): median of
  ``--repeats`` interleaved runs per camera, for the default first camera and views of the
  lookaround trajectory (the world keeps its surfaces' noise tables from one render to the next,
  as in a run; a fresh world's first render, which builds them, is timed too); also the
  depth-only trace. Then the offline demo's dream loop
  (oracle inpainter and depth estimator on the world, then the ground-truth metrics) at 256x256
  along the first ``--loop-views`` lookaround views, with today's renderer, with the fast one
  and no cache, and with the fast one and its render cache.
* ``geometry``: one view of the loop's own work at 512x512 over 2M points against a scipy
  griddata re-projection of the same points (``bench/bench_geometry.py --only geometry``:
  wall and CPU time, medians of ``--repeats``, and the ratio).
* ``joint``: the joint refinement (``refine_scene`` as it is) of a 7-view lookaround at
  512x512, seconds per dreamed view; then ``bench/bench_joint.py``: today's refinement and the old
  algorithm on one 96x96 scene, each in fresh processes (seconds and accuracy).
* ``splats``: CPU seconds per splat iteration and the Gaussian count at the README's first
  command (256x256, 21 views).
* ``flying``: flying pixels per trajectory kind before and after the edge-aware lifting
  (``bench/bench_flying.py``).

Times are wall clock at torch's thread count (``--threads`` sets it). The machine is shared:
run it under ``flock /tmp/dreamer-heavy.lock`` and read the ratios, which are measured side
by side. On a loaded machine ``--threads 1 --clock cpu`` (this thread's CPU time) gives steadier
ratios of the renders.

    flock /tmp/dreamer-heavy.lock python bench/bench_speed.py --only world   # about a minute on 2 cores
    flock /tmp/dreamer-heavy.lock python bench/bench_speed.py --cache /tmp/bench   # all: 20-30 minutes
    flock /tmp/dreamer-heavy.lock python bench/bench_speed.py --threads 1 --clock cpu --only world
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

# The checkout this script is in, before any installed copy (a worktree measures its own code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.cameras import DEFAULT_FOCAL_512, Camera
from dreamer.scene import DreamConfig, dream
from dreamer.scene.metrics import world_metrics
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds import ProceduralWorld
from dreamer.worlds.reference import ReferenceRenderer


class _TodaysWorld(ProceduralWorld):
    """The world as the loop saw it before the fast renderer: every render and depth request
    answered by the reference renderer, nothing cached."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed, cache_bytes=0)
        self._reference = ReferenceRenderer(self)

    def render(self, camera, *, supersample=1):
        return self._reference.render(camera, supersample=supersample)

    def depth(self, camera):
        return self._reference.depth(camera)


_CLOCK = time.perf_counter


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = _CLOCK()
        fn()
        times.append(_CLOCK() - t0)
    return 1e3 * statistics.median(times)


def _world_render(args: argparse.Namespace) -> None:
    world = ProceduralWorld(args.seed)
    reference = ReferenceRenderer(world)
    first = world.first_camera(512, 512)
    cams = {"first view": first}
    lookaround = make_trajectory("lookaround", first, center_depth_from(world.depth(first))).cameras
    for i in (3, 8, 14):
        cams[f"lookaround {i}/{len(lookaround)}"] = lookaround[i]
    clock = "wall clock" if args.clock == "wall" else "CPU time of this thread"
    print(f"== world render, 512x512, torch threads {torch.get_num_threads()}, median of {args.repeats}, {clock} ==")
    print(f"{'camera':<18}{'reference ms':>14}{'new ms':>10}{'speed-up':>10}")
    ratios = []
    ref_first = math.nan

    def fresh_render(cam: Camera):
        world.clear_cache()
        return world.render(cam)

    for name, cam in cams.items():
        reference.render(cam)  # warm up both
        fresh_render(cam)
        ref_t, new_t = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine
            ref_t.append(_median_ms(lambda c=cam: reference.render(c), 1))
            new_t.append(_median_ms(lambda c=cam: fresh_render(c), 1))
        r, n = statistics.median(ref_t), statistics.median(new_t)
        ref_first = r if cam is first else ref_first
        ratios.append(r / n)
        print(f"{name:<18}{r:>14.1f}{n:>10.1f}{r / n:>9.1f}x")
    print(f"{'geometric mean':<42}{math.exp(sum(map(math.log, ratios)) / len(ratios)):>9.1f}x")
    # The rows above reuse the noise tables the world keeps for its surfaces (built by the first
    # render of a world, whatever the camera); a fresh world builds them during its first render.
    fresh = []
    for _ in range(args.repeats):
        w = ProceduralWorld(args.seed)
        fresh.append(_median_ms(lambda w=w: w.render(first), 1))
    r, n = ref_first, statistics.median(fresh)
    print(f"{'first, new world':<18}{r:>14.1f}{n:>10.1f}{r / n:>9.1f}x   (builds the world's noise tables)")

    def fresh_depth(cam: Camera):
        world.clear_cache()
        return world.depth(cam)

    r = _median_ms(lambda: reference.depth(first), args.repeats)
    n = _median_ms(lambda: fresh_depth(first), args.repeats)
    print(f"{'depth only, first':<18}{r:>14.1f}{n:>10.1f}{r / n:>9.1f}x")
    world.clear_cache()
    world.render(first)
    hit = _median_ms(lambda: world.render(first), args.repeats)
    print(f"{'cached render':<18}{'':>14}{hit:>10.1f}   (a copy of the cached tensors)")


def _dream_loop(args: argparse.Namespace) -> None:
    size, n = 256, args.loop_views
    clock = "wall clock" if args.clock == "wall" else "CPU time of this thread"
    print(f"== offline demo loop, {size}x{size}, {n} lookaround views + ground-truth metrics, {clock} ==")
    rows = (("today's renderer, no cache", lambda: _TodaysWorld(args.seed)),
            ("fast renderer, no cache", lambda: ProceduralWorld(args.seed, cache_bytes=0)),
            ("fast renderer, render cache", lambda: ProceduralWorld(args.seed)))
    base = None
    for name, make in rows:
        world = make()
        cam = Camera.from_focal(DEFAULT_FOCAL_512 * size / 512, size, size)
        t0 = _CLOCK()
        first = world.render(cam)
        est = WorldDepthEstimator(world, seed=args.seed)
        traj = make_trajectory("lookaround", cam, center_depth_from(first.depth), n=n)
        result = dream(first.image, traj.cameras, "", inpainter=WorldInpainter(world), depth_estimator=est,
                       depth=first.depth, config=DreamConfig(seed=args.seed, joint_refinement=False))
        world_metrics(result, world, est)
        seconds = _CLOCK() - t0
        base = base or seconds
        info = world.cache_info()
        note = f"   cache hits {info['hits']}, misses {info['misses']}" if info["hits"] else ""
        print(f"{name:<30}{seconds:>8.2f} s{base / seconds:>7.1f}x{note}")


def _geometry(args: argparse.Namespace) -> None:
    _bench_module("bench_geometry").main(["--only", "geometry", "--repeats", str(args.repeats), *_cache(args)])


def _joint(args: argparse.Namespace) -> None:
    # The joint refinement as it is (refine_scene), timed per dreamed view at 512x512; then today's
    # algorithm and the old one on one 96x96 scene (bench_joint: each in fresh processes).
    _bench_module("bench_geometry").main(["--only", "joint", *_cache(args)])
    _bench_module("bench_joint").main(["--repeats", str(args.repeats), "--previous", ""])


def _splats(args: argparse.Namespace) -> None:
    _bench_module("bench_geometry").main(["--only", "splats", *_cache(args)])


def _flying(args: argparse.Namespace) -> None:
    _bench_module("bench_flying").main(["--estimators", "ramps", "sharp+errors"])


def _cache(args: argparse.Namespace) -> list[str]:
    return [] if args.cache is None else ["--cache", str(args.cache)]


def _bench_module(name: str):
    """Another script of this folder, imported as a module (its ``main(argv)`` prints a section)."""
    import importlib
    import sys
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(name)


SECTIONS = {"world": (_world_render, _dream_loop), "geometry": (_geometry,), "joint": (_joint,),
            "splats": (_splats,), "flying": (_flying,)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run one section")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per camera (median)")
    parser.add_argument("--loop-views", type=int, default=6, help="views of the dream-loop timing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the renders by wall clock or by this thread's CPU time (with --threads 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None,
                        help="folder keeping the scenes the geometry, joint and splats sections build")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        if torch.get_num_threads() != 1:
            parser.error("--clock cpu measures one thread: add --threads 1")
        global _CLOCK
        _CLOCK = time.thread_time
    for name, parts in SECTIONS.items():
        if args.only in (None, name):
            for part in parts:
                part(args)
                print()


if __name__ == "__main__":
    main()
