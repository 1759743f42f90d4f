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

Every option below maps onto a field of the settings dataclasses (scene, dream loop, models,
splats); a batch entry may set any of them by name (``grow_px: 4``). A scene folder keeps its
resolved config: rerunning continues an interrupted scene, skips a finished one, and starts one
over when its settings changed. Exit status: 0 when every scene is done or skipped, 1 when any
failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from dreamer.configs import add_dataclass_arguments
from dreamer.pipeline import CONFIG_SECTIONS, SETTING_ALIASES, SceneConfigs, SceneOutcome, configs_from_flat, run_scene
from dreamer.progress import StageBars

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
    parser = argparse.ArgumentParser(
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
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
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


def load_batch(path: Path) -> list[dict[str, Any]]:
    """The scenes of a batch file: YAML (a list, or a mapping with 'scenes') or JSON lines."""
    if not path.exists():
        raise ValueError(f"batch file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".jsonl", ".ndjson"):
        scenes = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    scenes.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
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
    if entry.get("name"):
        name = str(entry["name"])
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in (".", ".."):
            raise ValueError(f"scene {index}: name {name!r} must use only letters, digits, '.', '_' and '-'")
        return name
    basis = entry.get("prompt") or Path(str(entry.get("image") or "")).stem
    return f"{index:03d}-{_slug(basis, 'scene')}"


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
    from dreamer.backends.loading import ModelNotAvailable
    from dreamer.backends.model_sets import build_backends

    try:
        base = SceneConfigs.from_dict(json.loads(args.config.read_text())) if args.config else SceneConfigs()
        if base.splats is None and not args.config:
            base = dataclasses.replace(base, splats=CONFIG_SECTIONS["splats"]()())
        cli = _flat_settings(args)
        shard_i, shard_n = _parse_shard(args.shard)
        if args.batch:
            entries = load_batch(args.batch)
            root = args.out or Path("runs") / args.batch.stem
            jobs = []
            for i, entry in enumerate(entries):
                if i % shard_n != shard_i:
                    continue
                entry = dict(entry)
                name = _scene_name(i, entry)
                entry.pop("name", None)
                configs = configs_from_flat({**cli, **entry}, base, where=f"{args.batch} scene {i} ({name})")
                jobs.append((name, root / name, configs))
        else:
            configs = configs_from_flat(cli, base, where="options")
            name = _slug(configs.scene.prompt or Path(configs.scene.image or "").stem or configs.models.models, "scene")
            jobs = [(name, args.out or Path("runs") / name, configs)]
    except (ValueError, OSError) as e:
        parser.exit(2, f"error: {e}\n")

    outcomes: list[SceneOutcome] = []
    for name, out, configs in jobs:
        bars = StageBars(name, enabled=not args.quiet)
        try:
            backends = build_backends(configs.models)
            outcomes.append(run_scene(configs, out, backends, on_progress=bars, name=name))
        except ModelNotAvailable as e:
            log.error("%s", e)
            outcomes.append(SceneOutcome(name, out, "failed", error=str(e).splitlines()[0]))
        except KeyboardInterrupt:
            bars.close()
            print(f"\ninterrupted: rerun the same command to continue {name} where it stopped", file=sys.stderr)
            return 130
        except Exception as e:  # one failing scene must not stop the batch
            log.error("%s failed: %s", name, e)
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "run.log", "a") as f:
                f.write(traceback.format_exc())
            outcomes.append(SceneOutcome(name, out, "failed", error=f"{type(e).__name__}: {e}"))
        finally:
            bars.close()
    _print_summary(outcomes)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
