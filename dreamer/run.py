"""Dream one scene or a batch of scenes from the command line.

Examples:

    # the offline demo: the procedural world, no weights needed
    python -m dreamer.run --models synthetic --trajectory lookaround --out runs/demo

    # a prompt with the real models (downloads weights on first use; a GPU is advised)
    python -m dreamer.run --models default --prompt "a cozy reading room with a fireplace" --out runs/room

    # a photo, with its depth map (RGBD)
    python -m dreamer.run --image photo.jpg --depth photo_depth.png --prompt "a garden" --out runs/garden

    # a batch file (YAML or JSON lines), split over 4 machines: this is shard 0 of 4
    python -m dreamer.run --batch scenes.yaml --out runs/batch --shard 0/4

    # the same batch on every GPU of this machine, or on a Ray cluster (pip install -e ".[ray]")
    python -m dreamer.run --batch scenes.yaml --out runs/batch --executor ray
    python -m dreamer.run --batch scenes.yaml --out /shared/runs/batch --executor ray --ray-address HEAD:6379

Every option below maps onto a field of the settings dataclasses (scene, dream loop, models,
splats); a batch entry may set any of them by name (``grow_px: 4``). A scene folder keeps its
resolved config: rerunning continues an interrupted scene, skips a finished one, and starts one
over when its settings changed (``--restart`` starts it over anyway).

Every input of every scene (settings, photos, depth maps, trajectory files, the output folder) is
checked before a model loads, within limits that ``--allow-large`` lifts (see the README's "When
something is wrong"). A bad input prints one line naming it (``-v`` adds the traceback).
Exit status: 0 when every scene is done or skipped, 1 when any failed, 2 for bad usage or input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from dreamer.batch import BatchInterrupted, ExecutorUnavailable, SceneJob, add_executor_arguments, make_executor
from dreamer.cli import EXIT_FAILED, OneLineParser, one_line, report_bad_input
from dreamer.configs import add_dataclass_arguments
from dreamer.pipeline import CONFIG_SECTIONS, SETTING_ALIASES, SceneConfigs, SceneOutcome, configs_from_flat
from dreamer.pipeline.limits import Limits
from dreamer.pipeline.preflight import check_output_folder, check_scene, read_text_input

log = logging.getLogger("dreamer.run")

_GROUP_TITLES = {
    "scene": "scene (inputs, camera, trajectory)",
    "dream": "dream loop (geometry)",
    "models": "models",
    "splats": "Gaussian splats",
    "zoom": "deep zoom (zoom into a view, lift the levels into 3D, fly in)",
    "refine": "refine step (completion pass, repaired novel views, depth supervision)",
}
# Flags named by their alias (--gs-iters for SplatConfig.iterations).
_RENAMES: dict[str, str] = {field: alias for alias, field in SETTING_ALIASES.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m dreamer.run",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, default=None,
                     help="output folder (one scene), or the parent of the scenes' folders (--batch); default runs/<name>")
    run.add_argument("--batch", type=Path, default=None,
                     help="a batch file: YAML (a list of scenes, or {scenes: [...]}) or JSON lines; each scene sets any option by name, plus 'name'")
    run.add_argument("--shard", default=None, metavar="I/N",
                     help="run only the I-th of N shards of the batch (I counts from 0): scenes whose index %% N == I")
    run.add_argument("--config", type=Path, default=None,
                     help="a saved config.json of a scene folder: its settings, then the options given here on top")
    run.add_argument("--no-splats", action="store_true", default=argparse.SUPPRESS,
                     help="stop after the point cloud: no Gaussian splats, no videos")
    run.add_argument("--restart", action="store_true",
                     help="start the scene(s) over: delete their outputs and checkpoints first")
    run.add_argument("--allow-large", action="store_true",
                     help="lift the size limits (image side, views, video frames, photo pixels, zoom levels, "
                          "input file size) for a run that really needs more")
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages (and tracebacks)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_executor_arguments(parser)
    seen: set[str] = set()
    for section, get_cls in CONFIG_SECTIONS.items():
        cls = get_cls()
        group = parser.add_argument_group(_GROUP_TITLES[section])
        # One flag per setting name: a name shared by several sections (seed, device) sets all of them.
        fields = [f.name for f in dataclasses.fields(cls)]
        exclude = tuple(n for n in fields if n in seen)
        add_dataclass_arguments(group, cls, exclude=exclude, renames=_RENAMES)
        seen |= set(fields)
    return parser


def _flat_settings(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for g in CONFIG_SECTIONS.values() for f in dataclasses.fields(g())} | {"no_splats"}
    return {k: v for k, v in vars(args).items() if k in names}


def _parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need N >= 1 and 0 <= I < N")
    return i, n


def _check_expansion(data: Any, budget: int, path: Path) -> None:
    """Refuse a document whose values, expanded, number more than ``budget`` (YAML aliases let a
    500-byte file stand for 1e8 entries; walking it stops at the budget)."""
    stack, seen = [data], 0
    while stack:
        x = stack.pop()
        seen += 1
        if seen > budget:
            raise ValueError(f"{path} expands to more than {budget} values (YAML anchors and aliases repeated "
                             f"inside each other?); write the scenes out")
        if isinstance(x, dict):
            stack.extend(x.values())
            stack.extend(x.keys())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)


def load_batch(path: Path, limits: Limits = Limits()) -> list[dict[str, Any]]:
    """The scenes of a batch file: YAML (a list, or a mapping with 'scenes') or JSON lines."""
    path = Path(path)
    text = read_text_input(path, "batch file", limits)
    if path.suffix in (".jsonl", ".ndjson"):
        scenes = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    scenes.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
                except RecursionError:
                    raise ValueError(f"{path}:{lineno}: nested too deeply") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {one_line(e)}") from None
        except RecursionError:
            raise ValueError(f"{path}: nested too deeply") from None
        _check_expansion(data, limits.batch_entries, path)
        scenes = data.get("scenes") if isinstance(data, dict) else data
    if not isinstance(scenes, list) or not scenes:
        raise ValueError(f"{path}: expected a non-empty list of scenes")
    for i, s in enumerate(scenes):
        if not isinstance(s, dict):
            raise ValueError(f"{path}: scene {i} must be a mapping of settings, got {type(s).__name__}")
    return scenes


def _slug(text: str, fallback: str) -> str:
    s = re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")[:40]
    return s or fallback


def _scene_name(index: int, entry: dict[str, Any]) -> str:
    if entry.get("name") is not None:
        name = entry["name"]
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in (".", ".."):
            raise ValueError(f"scene {index}: name {name!r} must be a string of letters, digits, '.', '_' and '-'")
        return name
    basis = next((v for v in (entry.get("prompt"), entry.get("image")) if isinstance(v, str) and v), "")
    return f"{index:03d}-{_slug(Path(basis).stem if basis == entry.get('image') else basis, 'scene')}"


def _base_configs(args: argparse.Namespace, limits: Limits) -> SceneConfigs:
    if not args.config:
        base = SceneConfigs()
        return dataclasses.replace(base, splats=CONFIG_SECTIONS["splats"]()())
    text = read_text_input(args.config, "--config file", limits)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--config {args.config} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                         f"give the config.json of a scene folder") from None
    except RecursionError:
        raise ValueError(f"--config {args.config} is nested too deeply to be a config") from None
    try:
        return SceneConfigs.from_dict(data)
    except (TypeError, ValueError) as e:
        raise type(e)(f"--config {args.config}: {e}") from None


def plan_jobs(args: argparse.Namespace, limits: Limits) -> list[tuple[str, Path, SceneConfigs]]:
    """The scenes this run will dream, ``(name, folder, configs)``, every input of each checked
    (:func:`dreamer.pipeline.preflight.check_scene`). Raises ValueError / TypeError / OSError for
    the first bad input, before any model loads."""
    base = _base_configs(args, limits)
    cli = _flat_settings(args)
    shard_i, shard_n = _parse_shard(args.shard)
    if not args.batch:
        configs = configs_from_flat(cli, base, where="options")
        sc = configs.scene
        basis = sc.prompt or Path(sc.image or "").stem or configs.models.models
        name = _slug(basis, "scene")
        out = args.out or Path("runs") / name
        check_scene(configs, out, limits)
        return [(name, out, configs)]
    entries = load_batch(args.batch, limits)
    root = check_output_folder(args.out or Path("runs") / args.batch.stem)
    named: dict[str, int] = {}
    jobs, wheres = [], []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        name = _scene_name(i, entry)
        if name in named:
            raise ValueError(f"{args.batch}: scenes {named[name]} and {i} are both named {name!r}, so the second "
                             f"would overwrite the first; give each scene its own name")
        named[name] = i
        entry.pop("name", None)
        where = f"{args.batch} scene {i} ({name})"
        configs = configs_from_flat({**cli, **entry}, base, where=where)
        if i % shard_n == shard_i:
            jobs.append((name, root / name, configs))
            wheres.append(where)
    for (name, out, configs), where in zip(jobs, wheres):
        check_scene(configs, out, limits, where=where)
    return jobs


def _print_summary(outcomes: list[SceneOutcome]) -> None:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(f"\n{len(outcomes)} scene(s): {counts['done']} done, {counts['skipped']} skipped (already complete), "
          f"{counts['failed']} failed")
    for o in outcomes:
        line = f"  {o.status:8s} {o.name}  ->  {o.out}"
        if o.status == "done":
            line += f"  ({o.seconds:.1f} s)"
        if o.error:
            line += f"\n           reason: {o.error}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    limits = Limits().lifted() if args.allow_large else Limits()
    if args.allow_large:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # Pillow's own guard against decompression bombs, lifted on request
    try:
        jobs = [SceneJob(name, out, configs, limits=limits, restart=args.restart)
                for name, out, configs in plan_jobs(args, limits)]
        executor = make_executor(args)
    except (ValueError, TypeError, OSError) as e:
        return report_bad_input(parser.prog, e, args.verbose)
    except ExecutorUnavailable as e:
        return report_bad_input(parser.prog, e, args.verbose)

    try:
        outcomes = executor.run(jobs)
    except BatchInterrupted as e:
        names = ", ".join(e.running[:5]) + (f" and {len(e.running) - 5} more" if len(e.running) > 5 else "")
        print(f"\ninterrupted: rerun the same command to continue {names or 'the batch'} where "
              f"{'they' if len(e.running) > 1 else 'it'} stopped", file=sys.stderr)
        return 130
    except ExecutorUnavailable as e:
        return report_bad_input(parser.prog, e, args.verbose)
    _print_summary(outcomes)
    return EXIT_FAILED if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
