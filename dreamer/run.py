"""Dream one scene or a batch of scenes from the command line.

Examples (times on a quiet 2-core CPU without a GPU):

    # the offline demo: the procedural world, no weights needed (about 40 s; on a CPU the
    # 'quick' preset: 128 px, 200 splat iterations, 48 video frames)
    python -m dreamer.run --models synthetic --out runs/demo

    # the plumbing with tiny random models, no download: noise, in about 15 s
    python -m dreamer.run --models tiny --prompt "a reading room" --out runs/tiny

    # a prompt with the real models (downloads weights on first use; a GPU is advised: on a CPU
    # even the 'quick' preset dreams for an hour or more)
    python -m dreamer.run --models default --prompt "a cozy reading room with a fireplace" --out runs/room

    # a photo, with its depth map (RGBD)
    python -m dreamer.run --models default --image photo.jpg --depth photo_depth.png --prompt "a garden" \\
        --out runs/garden

    # a batch file (YAML or JSON lines), split over 4 machines: this is shard 0 of 4
    python -m dreamer.run --batch scenes.yaml --out runs/scenes --shard 0/4

    # the same batch on every GPU of this machine, or on a Ray cluster (pip install -e ".[ray]")
    python -m dreamer.run --batch scenes.yaml --out runs/scenes --executor ray
    python -m dreamer.run --batch scenes.yaml --out /shared/runs/batch --executor ray --ray-address HEAD:6379

Every option below maps onto a field of the settings dataclasses (scene, dream loop, models,
splats); a batch entry may set any of them by name (``grow_px: 4``). The costly ones (size,
views, steps, splat iterations, video frames) default to --preset's values for the machine.

A scene folder keeps its resolved config (config.json). Rerunning continues an interrupted scene,
skips a finished one, and redoes only the stages whose settings changed (splats, videos, zoom);
it never deletes finished work silently: a folder whose dream settings changed is refused (or,
for one scene in a terminal, you are asked) unless --overwrite starts it over; --restart starts
a scene over even when nothing changed (e.g. after a damaged checkpoint). Checkpoints are deleted
when their stage completes (--keep-checkpoints keeps them); the end of a run reports each scene's
size on disk.

Every input of every scene (settings, photos, depth maps, trajectory files, the output folder) is
checked before a model loads, within limits that ``--allow-large`` lifts (see the README's "When
something is wrong"). A bad input prints one line naming it (``-v`` adds the traceback); in a
batch, every scene with a bad input is named, and none runs.
Exit status: 0 when every scene is done or skipped, 1 when any failed, 2 for bad usage or input
(nothing ran).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

from dreamer.cli import (EXIT_FAILED, OneLineParser, literal_error, one_line, parse_json, path_argument, quote_names,
                         report_bad_input)
from dreamer.configs import FieldSpec, SourceUnreadable, add_field_arguments, read_field_specs, read_module_constant

log = logging.getLogger("dreamer.run")

_GROUP_TITLES = {
    "scene": "scene (inputs, camera, trajectory)",
    "dream": "dream loop (geometry)",
    "models": "models",
    "splats": "Gaussian splats",
    "zoom": "deep zoom (zoom into a view, lift the levels into 3D, fly in)",
    "refine": "refine step (completion pass, repaired novel views, depth supervision)",
}
# Where each section's settings dataclass lives (dreamer.pipeline.settings.CONFIG_SECTIONS holds
# the classes; the tests check that both agree): the parser reads the fields from the source, so
# reading the arguments (and --help) imports neither torch nor the models' libraries.
_SECTION_CLASSES = {
    "scene": ("dreamer.pipeline.settings", "SceneConfig"),
    "dream": ("dreamer.scene.loop", "DreamConfig"),
    "models": ("dreamer.backends.model_sets", "ModelConfig"),
    "splats": ("dreamer.splats.config", "SplatConfig"),
    "zoom": ("dreamer.deepzoom.config", "DeepZoomConfig"),
    "refine": ("dreamer.pipeline.settings", "RefineConfig"),
}


def _section_specs(from_source: bool = True) -> dict[str, list[FieldSpec]]:
    """Each section's fields: read from the source (fast), or from the imported classes when the
    source cannot be read alone (see :func:`dreamer.configs.read_field_specs`)."""
    if from_source:
        try:
            return {section: read_field_specs(*home) for section, home in _SECTION_CLASSES.items()}
        except SourceUnreadable as e:
            log.debug("settings read by importing their modules (%s)", e)
    from dreamer.configs import field_specs
    from dreamer.pipeline.settings import CONFIG_SECTIONS

    return {section: field_specs(get_cls()) for section, get_cls in CONFIG_SECTIONS.items()}


def _setting_aliases() -> dict[str, str]:
    try:
        return read_module_constant("dreamer.pipeline.settings", "SETTING_ALIASES")
    except SourceUnreadable:
        from dreamer.pipeline.settings import SETTING_ALIASES

        return SETTING_ALIASES


def _preset_notes(specs: dict[str, list[FieldSpec]]) -> dict[str, str]:
    """The "(default: ...)" of the settings a preset sets: the value on a CPU, on a GPU and with
    the tiny models (what --preset auto picks)."""
    from dreamer.pipeline.presets import PRESETS, REAL_MODELS_QUICK

    defaults = {f.name: f.default for fields in specs.values() for f in fields}
    where = {"quick": "on a CPU", "full": "on a GPU", "plumbing": "with --models tiny"}

    def shown(preset: str, key: str) -> str:
        value = PRESETS[preset].get(key, defaults.get(key))
        text = "the path's own" if value is None else repr(value)
        if preset == "quick" and key in REAL_MODELS_QUICK:
            text += f" ({REAL_MODELS_QUICK[key]!r} with --models default)"
        return f"{text} {where[preset]}"

    names = sorted({k for values in PRESETS.values() for k in values})
    return {k: "default: " + ", ".join(shown(p, k) for p in where) + "; see --preset" for k in names}


def build_parser(*, from_source: bool = True) -> argparse.ArgumentParser:
    """The command line's parser. ``from_source``: read the settings from the dataclasses' source
    (imports no model code); False: from the imported classes (the tests compare both)."""
    from dreamer.batch.options import add_executor_arguments
    from dreamer.pipeline.presets import HELP as PRESET_HELP, PRESET_CHOICES

    parser = OneLineParser(
        prog="python -m dreamer.run",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--out", type=path_argument, default=None,
                     help="output folder (one scene), or the parent of the scenes' folders (--batch); "
                          "default runs/<name>")
    run.add_argument("--batch", type=path_argument, default=None,
                     help="a batch file: YAML (a list of scenes, or {scenes: [...]}) or JSON lines; each scene sets "
                          "any option by name, plus 'name'")
    run.add_argument("--shard", default=None, metavar="I/N",
                     help="run only the I-th of N shards of the batch (I counts from 0): scenes whose index %% N == I")
    run.add_argument("--config", type=path_argument, default=None,
                     help="a saved config.json of a scene folder: its settings, then the options given here on top")
    run.add_argument("--preset", choices=PRESET_CHOICES, default="auto", help=PRESET_HELP + " (default: auto)")
    run.add_argument("--no-splats", action="store_true", default=argparse.SUPPRESS,
                     help="stop after the point cloud: no Gaussian splats, no videos")
    run.add_argument("--overwrite", action="store_true",
                     help="start over the scenes whose folder holds one dreamed with other settings (deleting its "
                          "outputs); without it such a scene is refused, or for one scene in a terminal you are asked")
    run.add_argument("--restart", action="store_true",
                     help="start the scene(s) over even when their settings did not change (e.g. after a damaged "
                          "checkpoint): delete their outputs and checkpoints first")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep the checkpoints of finished stages (the dream loop's per-view files, the splats' "
                          "optimizer state: about three times gaussians.ply); by default they are deleted once the "
                          "stage's result is saved")
    run.add_argument("--allow-large", action="store_true",
                     help="lift the size limits (image side, views, video frames, photo pixels, zoom levels, "
                          "input file size) for a run that really needs more")
    run.add_argument("-v", "--verbose", action="store_true", help="log debug messages (and tracebacks)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_executor_arguments(parser)
    specs = _section_specs(from_source)
    notes = _preset_notes(specs)
    renames = {field: alias for alias, field in _setting_aliases().items()}  # --gs-iters for SplatConfig.iterations
    seen: set[str] = set()
    for section, fields in specs.items():
        group = parser.add_argument_group(_GROUP_TITLES.get(section, section))
        # One flag per setting name: a name shared by several sections (seed, device) sets all of them.
        names = [f.name for f in fields]
        exclude = tuple(n for n in names if n in seen)
        add_field_arguments(group, fields, exclude=exclude, renames=renames, default_notes=notes)
        seen |= set(names)
    return parser


def _flat_settings(args: argparse.Namespace) -> dict[str, Any]:
    from dreamer.pipeline.settings import CONFIG_SECTIONS

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


def _scene_lines(root) -> list[int]:
    """The line (from 1) where each scene of a composed batch document starts: the items of the
    top-level list, or of the list under 'scenes' (none for another document)."""
    import yaml

    node = root
    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "scenes"), None)
    return [item.start_mark.line + 1 for item in node.value] if isinstance(node, yaml.SequenceNode) else []


def _load_yaml(text: str) -> tuple[Any, list[int]]:
    """``yaml.safe_load(text)``, refusing a mapping that gives one key twice (``{name: a, name: b}``
    would otherwise keep the last value without a word), and the line (from 1) where each scene
    of a batch starts (:func:`_scene_lines`). The keys are compared on the composed nodes, as
    written, before anything is built: a merge (``<<: *defaults``) may still be overridden by the
    mapping's own keys, as YAML means it."""
    import yaml

    merge = "tag:yaml.org,2002:merge"
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        stack, visited = [root], set()
        while stack:
            node = stack.pop()
            if node is None or id(node) in visited:  # an alias's node is walked once (anchors may recurse)
                continue
            visited.add(id(node))
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, value_node in node.value:
                    stack += [key_node, value_node]
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == merge:
                        continue  # a collection as a key: the constructor refuses it (unhashable)
                    key = loader.construct_object(key_node)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                                key_node.start_mark)
                    seen.add(key)
            elif isinstance(node, yaml.SequenceNode):
                stack += node.value
        return (None, []) if root is None else (loader.construct_document(root), _scene_lines(root))
    finally:
        loader.dispose()


def load_batch(path: Path, limits=None) -> list[dict[str, Any]]:
    """The scenes of a batch file: YAML (a list, or a mapping with 'scenes') or JSON lines, read
    within ``limits`` (a :class:`dreamer.pipeline.limits.Limits`; default the standard ones)."""
    return _read_batch(path, limits)[0]


def entry_where(path: Path, line: int | None, index: int, name: str | None = None) -> str:
    """How a message names a batch's scene: ``<file>:<line>: scene <index> (<name>)``, the line
    where its entry starts (``<file>: scene ...`` where it is not known)."""
    return f"{_place(path, line)}: scene {index}" + (f" ({name})" if name is not None else "")


def _place(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


def _read_batch(path: Path, limits=None) -> tuple[list[dict[str, Any]], list[int | None]]:
    """:func:`load_batch`'s scenes and the line where each starts (None where it is not known)."""
    from dreamer.pipeline.limits import Limits
    from dreamer.pipeline.preflight import read_text_input

    path = Path(path)
    limits = limits or Limits()
    text = read_text_input(path, "batch file", limits)
    if path.suffix in (".jsonl", ".ndjson"):
        scenes, lines = [], []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    scenes.append(parse_json(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{lineno}: {e}") from None
                lines.append(lineno)
    else:
        import yaml

        try:
            data, lines = _load_yaml(text)
        except yaml.reader.ReaderError as e:  # a control character; PyYAML counts its position in characters
            line = text.count("\n", 0, e.position) + 1
            raise ValueError(f"{path}:{line}: not valid YAML: control character {chr(e.character)!r} "
                             f"(U+{e.character:04X}); only tabs and line breaks may appear in a YAML file") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {one_line(e)}") from None
        except RecursionError:
            raise ValueError(f"{path}: nested too deeply") from None
        except ValueError as e:  # building a value: int() of a long literal, a date that is no date
            raise ValueError(f"{path}: not valid YAML: {literal_error(e)}") from None
        _check_expansion(data, limits.batch_entries, path)
        if isinstance(data, dict):
            # Keys starting with 'x-' hold YAML anchors for the scenes to merge (<<: *name), as in
            # Docker Compose files; any other key would look like a setting for every scene and be none.
            extra = [k for k in data if k != "scenes" and not str(k).startswith("x-")]
            if extra:
                raise ValueError(f"{path}: unknown top-level key(s) [{quote_names(extra)}]; a batch file is a list of "
                                 f"scenes, or a mapping with 'scenes' (and keys starting with 'x-' for YAML anchors)")
            scenes = data.get("scenes")
        else:
            scenes = data
    if not isinstance(scenes, list) or not scenes:
        raise ValueError(f"{path}: expected a non-empty list of scenes")
    lines = lines if len(lines) == len(scenes) else [None] * len(scenes)
    for i, s in enumerate(scenes):
        if not isinstance(s, dict):
            raise ValueError(f"{entry_where(path, lines[i], i)} must be a mapping of settings, got {type(s).__name__}")
    return scenes, lines


def _slug(text: str, fallback: str) -> str:
    s = re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")[:40]
    return s or fallback


#: Longest scene name (a folder name: file systems take 255 bytes; room is left for the suffixes).
MAX_NAME_CHARS = 100


def _is_name(name: Any) -> bool:
    """A scene name: letters of any script with their combining marks (Devanagari's vowel signs,
    a decomposed 'é'), digits, '.', '_' and '-'; not '.' or '..'."""
    return (isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS and name not in (".", "..")
            and all(c in "._-" or unicodedata.category(c)[0] in "LMN" for c in name))


def _scene_name(index: int, entry: dict[str, Any]) -> str:
    if entry.get("name") is not None:
        name = entry["name"]
        if isinstance(name, str):  # one spelling per name: 'é' or 'e' + U+0301 (macOS writes the second)
            name = unicodedata.normalize("NFC", name)
        if not _is_name(name):
            raise ValueError(f"name {name!r} must be a folder name of at most {MAX_NAME_CHARS} letters, digits, "
                             f"'.', '_' and '-' (no spaces or path separators, not '.' or '..')")
        return name
    basis = next((v for v in (entry.get("prompt"), entry.get("image")) if isinstance(v, str) and v), "")
    return f"{index:03d}-{_slug(Path(basis).stem if basis == entry.get('image') else basis, 'scene')}"


def _base_configs(args: argparse.Namespace, limits):
    from dreamer.pipeline.preflight import read_text_input
    from dreamer.pipeline.settings import CONFIG_SECTIONS, SceneConfigs

    if not args.config:
        base = SceneConfigs()
        return dataclasses.replace(base, splats=CONFIG_SECTIONS["splats"]()())
    text = read_text_input(args.config, "--config file", limits)
    try:
        data = parse_json(text)
    except ValueError as e:
        raise ValueError(f"--config {args.config}: {e}; give the config.json of a scene folder") from None
    try:
        return SceneConfigs.from_dict(data)
    except (TypeError, ValueError) as e:
        raise type(e)(f"--config {args.config}: {e}") from None


def _configs(args: argparse.Namespace, flat: dict[str, Any], base, where: str):
    """The settings of one scene: ``flat`` (the options, a batch entry) over ``base``, and below
    them the values of ``--preset`` for this scene's models and device. A ``--config`` file's
    settings are the scene's own: ``--preset auto`` leaves them as they are."""
    from dreamer.pipeline.presets import preset_values
    from dreamer.pipeline.settings import SETTING_ALIASES, configs_from_flat

    configs = configs_from_flat(flat, base, where=where)
    if args.config and args.preset == "auto":
        return configs
    explicit = {SETTING_ALIASES.get(k, k) for k in flat}
    name, values = preset_values(args.preset, models=configs.models.models, device=configs.models.device,
                                 trajectory=configs.scene.trajectory, explicit=explicit)
    if values:
        configs = configs_from_flat({**values, **flat}, base, where=where)
    return dataclasses.replace(configs, preset=name)


def plan_jobs(args: argparse.Namespace, limits) -> tuple[list[tuple[str, Path, Any, str]], list[str]]:
    """The scenes this run will dream, ``(name, folder, configs, where)``, every input of each
    checked (:func:`dreamer.pipeline.preflight.check_scene`; ``where`` names a batch's scene in
    messages, :func:`entry_where`, and is "" for a single scene), and the reasons the scenes of a
    batch were refused for a bad input, each a line ``<file>:<line>: scene <i> (<name>): <reason>``:
    all are reported and none runs. Raises ValueError / TypeError / OSError for a bad option, a bad
    input of a single scene, or a batch file that cannot be read as a list of uniquely named
    scenes; all before any model loads."""
    from dreamer.pipeline.preflight import check_output_folder, check_scene

    base = _base_configs(args, limits)
    cli = _flat_settings(args)
    if args.shard is not None and not args.batch:
        raise ValueError("--shard splits a batch: it needs --batch")
    shard_i, shard_n = _parse_shard(args.shard)
    if not args.batch:
        configs = _configs(args, cli, base, "options")
        sc = configs.scene
        basis = sc.prompt or Path(sc.image or "").stem or configs.models.models
        name = _slug(basis, "scene")
        out = args.out or Path("runs") / name
        check_scene(configs, out, limits)
        return [(name, out, configs, "")], []
    entries, lines = _read_batch(args.batch, limits)
    root = check_output_folder(args.out or Path("runs") / args.batch.stem)
    names: list[str | Exception] = []
    named: dict[str, int] = {}
    for i, entry in enumerate(entries):
        try:
            name = _scene_name(i, entry)
        except ValueError as e:
            names.append(e)
            continue
        key = name.casefold()  # 'A' and 'a' are one folder on macOS and Windows file systems
        if key in named:
            first = named[key]
            raise ValueError(f"{_place(args.batch, lines[i])}: scenes {first}"
                             f"{'' if lines[first] is None else f' (line {lines[first]})'} and {i} are both named "
                             f"{name!r}{'' if names[first] == name else ' (up to case)'}, so the second would "
                             f"overwrite the first; give each scene its own name")
        named[key] = i
        names.append(name)
    jobs, refused = [], []
    for i, (entry, name) in enumerate(zip(entries, names)):
        if i % shard_n != shard_i:
            continue
        if isinstance(name, Exception):
            refused.append(f"{entry_where(args.batch, lines[i], i)}: {name}")
            continue
        where = entry_where(args.batch, lines[i], i, name)
        entry = {k: v for k, v in entry.items() if k != "name" and v is not None}  # null: not set
        try:
            configs = _configs(args, {**cli, **entry}, base, where)
            check_scene(configs, root / name, limits, where=where)
        except (ValueError, TypeError, OSError) as e:
            message = one_line(e)
            refused.append(message if message.startswith(where) else f"{where}: {message}")
            continue
        jobs.append((name, root / name, configs, where))
    return jobs, refused


def _ask(question: str) -> bool:
    """Ask a yes/no question on the terminal (no means no: an empty answer or end of input)."""
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _check_folder(args: argparse.Namespace, out: Path, configs) -> None:
    """Raise unless ``out`` may receive this scene: a folder of other files of a scene's names, a
    damaged checkpoint that a resume would read, or (without --overwrite / --restart) finished
    work of other dream settings (:class:`~dreamer.pipeline.folder.SettingsChanged`). A scene
    started over (--restart, or --overwrite of other dream settings) reads no checkpoint: the run
    deletes them first."""
    from dreamer.pipeline.checkpoint import check_checkpoints
    from dreamer.pipeline.folder import changed_settings, check_inputs_kept, check_scene_folder
    from dreamer.pipeline.stages import refuse_changed_settings

    check_scene_folder(out, take_over=args.overwrite or args.restart)
    if args.restart or (args.overwrite and changed_settings(out, configs) is not None):
        check_inputs_kept(out, configs, "--restart" if args.restart else "--overwrite (the settings changed)")
        return
    if not args.overwrite:
        refuse_changed_settings(out, configs, batch=bool(args.batch))
    check_checkpoints(out / "checkpoint")


def refuse_or_ask(args: argparse.Namespace, jobs: list) -> tuple[set[Path], list[str]]:
    """Check each scene's folder (:func:`_check_folder`) of :func:`plan_jobs`' ``jobs``. Returns
    the folders this run may start over although their dream settings changed (all of them with
    --overwrite; for one scene run in a terminal, the one you agree to), and the reasons the scenes
    of a batch were refused for their folder, in :func:`plan_jobs`' form. Raises for the folder of
    a single scene."""
    from dreamer.pipeline.checkpoint import CheckpointError
    from dreamer.pipeline.folder import SettingsChanged, changed_settings, check_inputs_kept

    allowed = {out for _, out, _, _ in jobs} if args.overwrite or args.restart else set()
    refused = []
    for _, out, configs, where in jobs:
        try:
            try:
                _check_folder(args, out, configs)
            except SettingsChanged:
                interactive = not args.batch and sys.stdin.isatty() and sys.stderr.isatty()
                if interactive:  # before the question: a yes would delete them
                    check_inputs_kept(out, configs, "starting it over")
                if interactive and _ask(f"{out} holds a scene dreamed with other settings "
                                        f"({changed_settings(out, configs)}). Start it over and delete its outputs?"):
                    allowed.add(out)
                    continue
                raise
        except (ValueError, OSError, CheckpointError) as e:
            if not args.batch:
                raise
            refused.append(f"{where}: {one_line(e)}")
    return allowed, refused


def _print_summary(outcomes: list) -> None:
    from dreamer.pipeline.folder import format_bytes

    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    sizes = [o.disk_bytes for o in outcomes if o.disk_bytes is not None]
    total = f"; {format_bytes(sum(sizes))} on disk" if sizes else ""
    print(f"\n{len(outcomes)} scene(s): {counts['done']} done, {counts['skipped']} skipped (already complete), "
          f"{counts['failed']} failed{total}")
    for o in outcomes:
        line = f"  {o.status:8s} {o.name}  ->  {o.out}"
        details = ([f"{o.seconds:.1f} s"] if o.status == "done" else []) + \
                  ([format_bytes(o.disk_bytes)] if o.disk_bytes is not None else [])
        if details:
            line += f"  ({', '.join(details)})"
        if o.error:
            line += f"\n           reason: {o.error}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # reads the settings from their source: no model code imported yet
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from dreamer.pipeline.limits import Limits

    limits = Limits().lifted() if args.allow_large else Limits()
    if args.allow_large:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # Pillow's own guard against decompression bombs, lifted on request
    from dreamer.batch import BatchInterrupted, ExecutorUnavailable, SceneJob, make_executor
    from dreamer.pipeline.checkpoint import CheckpointError

    try:
        planned, refused = plan_jobs(args, limits)
        overwrite, refused_folders = refuse_or_ask(args, planned)
        refused += refused_folders
        if refused:  # nothing runs: a batch is fixed and rerun as a whole, every bad scene named at once
            for reason in refused[:-1]:
                print(f"{parser.prog}: error: {reason}", file=sys.stderr)
            raise ValueError(refused[-1])
        jobs = [SceneJob(name, out, configs, limits=limits, restart=args.restart, overwrite=out in overwrite,
                         keep_checkpoints=args.keep_checkpoints) for name, out, configs, _ in planned]
        executor = make_executor(args)
    except (ValueError, TypeError, OSError, ExecutorUnavailable, CheckpointError) as e:
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
