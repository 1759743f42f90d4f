"""Command-line options that choose and size the executor (``--executor``, ``--ray-address``, ...)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dreamer.batch.executors import Executor

__all__ = ["add_executor_arguments", "make_executor", "RAY_INSTALL_HINT"]

RAY_INSTALL_HINT = 'pip install -e ".[ray]" (or pip install "ray>=2.40,<3")'
_RAY_ONLY = ("ray_address", "gpus_per_scene", "cpus_per_scene", "workers", "retries")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("executor (where the scenes of a batch run)")
    group.add_argument("--executor", choices=("inprocess", "ray"), default="inprocess",
                       help="inprocess (default): scene after scene in this process; ray: the scenes run in "
                            "parallel on Ray workers (a local Ray instance, or the cluster of --ray-address)")
    group.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="connect to this Ray cluster (the address 'ray start --head' printed, or "
                            "ray://HOST:10001); default: a new local Ray instance on this machine (or the cluster "
                            "in $RAY_ADDRESS)")
    group.add_argument("--gpus-per-scene", type=float, default=None, metavar="G",
                       help="GPUs each scene's worker holds (a fraction shares a GPU); default 1 when the cluster "
                            "has GPUs, else 0")
    group.add_argument("--cpus-per-scene", type=float, default=None, metavar="C",
                       help="CPUs each scene's worker holds, also its torch threads; default 1")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="Ray workers running scenes at the same time (each loads the models once); default: "
                            "as many as the cluster's CPUs and GPUs fit, at most one per scene")
    group.add_argument("--retries", type=int, default=None, metavar="N",
                       help="times a scene is started again when its worker dies (a crash, a killed process, a lost "
                            "machine); it continues from its last checkpoint. A scene that raises an error is not "
                            "retried. Default 2")


def make_executor(args: argparse.Namespace) -> Executor:
    """The executor the options ask for. Raises ValueError (a usage error) for inconsistent options
    or when ``--executor ray`` is asked for without Ray installed."""
    from dreamer.batch.executors import InProcessExecutor  # after the arguments are read: it imports the models' code

    if args.executor == "inprocess":
        given = [f"--{name.replace('_', '-')}" for name in _RAY_ONLY if getattr(args, name, None) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --executor ray; add --executor ray or drop them")
        return InProcessExecutor(quiet=args.quiet)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    from dreamer.batch.ray_executor import RayExecutor, RayOptions

    options = RayOptions(
        address=args.ray_address,
        gpus_per_scene=args.gpus_per_scene,
        cpus_per_scene=1.0 if args.cpus_per_scene is None else args.cpus_per_scene,
        workers=args.workers,
        retries=2 if args.retries is None else args.retries,
    )
    return RayExecutor(options, quiet=args.quiet, verbose=args.verbose)
