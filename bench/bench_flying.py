"""Flying pixels of the dream loop on the procedural world, per trajectory kind, before and after
the edge-aware lifting (prints figures; not a test).

A flying pixel is a lifted point farther than three of its pixel footprints from every true
surface, at a pixel within two pixels of a true occlusion edge
(:func:`dreamer.scene.metrics.flying_points`); points off the surface elsewhere (depth noise,
alignment drift) are counted apart ("off"), and "beyond drift" counts the flying points that
stay off after the local drift of the view's depth is taken out (a region aligned a few percent
off as a whole is off at its edges too: that is drift, not flying pixels). "before" turns the edge-aware steps off
(``dreamer.scene.placement.EDGE_RAMP_RADIUS = 0``: no ramp test on the lifted depth or the first
view, every known pixel anchors the alignment); "after" is the code as it is.

Depth estimators (oracle inpainter in all cases):

* ``ramps``: the world's true depth with silhouettes blurred into ramps (``edge_blur`` pixels, as
  monocular models do), no other error: isolates the edges.
* ``ramps+errors``: the same ramps with the synthetic model set's scale, distortion and noise.
* ``sharp+errors``: the synthetic model set's estimator as the offline demo uses it (sharp edges).

    flock /tmp/dreamer-heavy.lock python bench/bench_flying.py            # about a minute on 2 cores
    python bench/bench_flying.py --size 256 --estimators ramps
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

# The checkout this script is in, before any installed copy (a worktree measures its own code).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dreamer.scene.placement as placement
from dreamer.backends.synthetic import WorldDepthEstimator, WorldInpainter
from dreamer.cameras import DEFAULT_FOCAL_512, Camera
from dreamer.scene import DreamConfig, dream
from dreamer.scene.metrics import flying_points
from dreamer.trajectories import center_depth_from, make_trajectory
from dreamer.worlds import ProceduralWorld

# Trajectory kinds: (label, preset, parameters).
# "pan": the first five views of a 12-view turn on the spot (30 degree steps).
KINDS = (("orbit", "orbit", {"n": 5}), ("translating", "moveright", {"n": 5}), ("pan", "rotate360", {"n": 12}),
         ("forward", "forward", {"n": 4}), ("lookaround", "lookaround", {"n": 7}))
VIEWS = {"pan": 5}


def estimator(name: str, world: ProceduralWorld, blur: int) -> WorldDepthEstimator:
    if name == "ramps":
        return WorldDepthEstimator(world, scale_range=(1.0, 1.0), distortion=0.0, noise=0.0, edge_blur=blur)
    if name == "ramps+errors":
        return WorldDepthEstimator(world, seed=0, edge_blur=blur)
    if name == "sharp+errors":
        return WorldDepthEstimator(world, seed=0)
    raise ValueError(f"unknown estimator {name!r}")


def run(world, first, label, kind, params, est, joint: bool, radius: int) -> list[dict]:
    saved = placement.EDGE_RAMP_RADIUS
    placement.EDGE_RAMP_RADIUS = radius
    try:
        truth = world.render(first)
        cams = make_trajectory(kind, first, center_depth_from(truth.depth), **params).cameras[: VIEWS.get(label)]
        result = dream(truth.image, cams, "", inpainter=WorldInpainter(world), depth_estimator=est,
                       config=DreamConfig(joint_refinement=joint), depth=truth.depth)
    finally:
        placement.EDGE_RAMP_RADIUS = saved
    return [flying_points(v, world) for v in result.views[1:]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128, help="square view size in pixels")
    ap.add_argument("--edge-blur", type=int, default=2, help="ramp half-width of the 'ramps' estimators (pixels)")
    ap.add_argument("--estimators", nargs="+", default=["ramps", "ramps+errors", "sharp+errors"])
    ap.add_argument("--no-joint", action="store_true", help="without the joint refinement")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the loop's per-view warnings are not the figures
    if args.threads:
        torch.set_num_threads(args.threads)
    world = ProceduralWorld(0)
    first = Camera.from_focal(DEFAULT_FOCAL_512 * args.size / 512, args.size, args.size)
    after_radius = placement.EDGE_RAMP_RADIUS
    print(f"flying pixels (lifted points > 3 footprints from any surface, within 2 px of a true edge) at "
          f"{args.size}x{args.size}, joint refinement {'off' if args.no_joint else 'on'}; per dreamed view "
          f"flying/lifted, then totals; 'off' = off-surface points away from edges")
    for name in args.estimators:
        print(f"\n== estimator {name}" + (f" (edge_blur {args.edge_blur})" if "ramps" in name else "") + " ==")
        for label, kind, params in KINDS:
            t0 = time.perf_counter()
            rows = {}
            for when, radius in (("before", 0), ("after", after_radius)):
                est = estimator(name, world, args.edge_blur)
                rows[when] = run(world, first, label, kind, params, est, not args.no_joint, radius)
            for when, views in rows.items():
                fly, lifted, off, beyond = (sum(v[k] for v in views)
                                            for k in ("flying", "lifted", "off_surface", "flying_beyond_drift"))
                per = " ".join(f"{v['flying']}/{v['lifted']}" for v in views)
                print(f"{label:12s}{when:7s} flying {fly:5d} of {lifted:6d} lifted ({100 * fly / max(lifted, 1):5.2f}%)"
                      f", beyond drift {beyond:5d}  off {off:5d}   views: {per}")
            print(f"{'':12s}({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
