"""Command line: sample a zoom stack and write its levels, a zoom video and the resolved config.

    python -m zoom.run --prompts "a galaxy" "a solar system" "a planet" --p 2 --out out/zoom
    python -m zoom.run --prompts-file prompts.txt --photo photo.jpg --models tiny --out out/z

Writes into ``--out``: ``level_00.png`` ... (the rendered levels, widest first), ``zoom.mp4``
(a continuous zoom from level 0 to N-1), ``config.json`` (the resolved config and its hashes),
``stack.pt`` (a checkpoint of the final stack) and ``done.json`` (written last). Every file is
written atomically.

Resuming: a finished run with the same config is not redone. When only output settings changed
(fps, seconds per level) the checkpointed stack is reused. A folder that holds a stack sampled
with other settings is refused (exit 2), since sampling it may have taken long: ``--overwrite``
starts over, deleting the previous outputs first, so the folder never mixes files of two configs.
Temporaries of an interrupted run are deleted; an unreadable ``stack.pt`` is ignored (the stack is
sampled again).

Times on a 2-core CPU: the tiny models at 64 px take seconds per level; the real models at 512 px
take minutes per level and step count (a GPU is advised).

Every input (prompts, sizes, seed, photo, output folder) is checked before the model loads, within
the limits of ``dreamer.pipeline.limits`` (``--allow-large`` lifts them). Exit status: 0 done, 1
the run failed (e.g. a model that is not available), 2 bad usage or input: one line naming it
(``-v`` adds the traceback), as ``python -m dreamer.run`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dreamer.cli import EXIT_FAILED, OneLineParser, one_line, parse_json, path_argument, report_bad_input
from dreamer.configs import config_hash, field_docs

# torch, the models' libraries and the input checks (which use torch) are imported where they are
# used, after the arguments are read: ``--help`` and bad usage answer at once.

logger = logging.getLogger(__name__)

__all__ = ["ZoomConfig", "OutputConfig", "run_zoom", "read_prompts", "check_zoom", "check_photo_kept", "main"]

STACK_FILE = "stack.pt"
DONE_FILE = "done.json"
CONFIG_FILE = "config.json"
VIDEO_FILE = "zoom.mp4"


@dataclass(frozen=True)
class ZoomConfig:
    """Everything that decides the sampled stack (its hash keys the checkpoint)."""

    prompts: tuple[str, ...] = ()
    """One prompt per level, widest view first."""
    p: int = 2
    """Zoom factor between consecutive levels (2 or 4)."""
    steps: int = 50
    """Denoising steps."""
    guidance: float = 7.5
    """Classifier-free guidance scale."""
    negative_prompt: str = ""
    """Negative prompt for every level."""
    height: int = 512
    """Image height in pixels (multiple of 16*p)."""
    width: int = 512
    """Image width in pixels (multiple of 16*p)."""
    seed: int = 0
    """Seed of the one torch.Generator that draws all noise."""
    models: str = "default"
    """Model set: 'default' (Stable Diffusion through diffusers) or 'tiny' (random tiny models)."""
    model: str = ""
    """Hub id or local folder of the text-to-image model ('' = the project's default SD 1.5)."""
    tiny_vae: str = ""
    """Hub id or folder of an AutoencoderTiny (e.g. madebyollin/taesd) for the in-loop VAE round
    trip ('' = use the full VAE)."""
    photo: str = ""
    """Photo that fixes one level ('' = none)."""
    photo_sha256: str = ""
    """Content hash of the photo (filled in; a changed photo starts over)."""
    photo_level: int = 0
    """Level the photo fixes."""
    photo_mode: str = "guidance"
    """'guidance' (Adam steps toward the photo) or 'replace_low' (replace low frequencies)."""
    blend_every: int = 1
    """Blend in pixel space every k-th step."""
    paste_depth: int | None = None
    """Deepest paste during sampling (None: bounded by the latent grid)."""
    residual_correction: bool = True
    """Carry the VAE round-trip residual in latent space."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:N'."""
    dtype: str = "auto"
    """'auto' (float16 on CUDA), 'float32', 'float16', 'bfloat16'."""


@dataclass(frozen=True)
class OutputConfig:
    """Settings that only change the written files, not the stack."""

    fps: int = 24
    """Frames per second of the zoom video."""
    seconds_per_level: float = 2.0
    """Video time per level step."""
    feather: float = 0.15
    """Relative width of the soft border of finer levels in the video."""


def read_prompts(path: str | Path, limits=None) -> list[str]:
    """Prompts from a file: a JSON list of strings, or one prompt per line (blank lines and lines
    starting with ``#`` skipped), read within ``limits`` (default the standard
    :class:`dreamer.pipeline.limits.Limits`)."""
    from dreamer.checks import check_text
    from dreamer.pipeline.limits import Limits
    from dreamer.pipeline.preflight import read_text_input

    text = read_text_input(path, "prompts file", limits or Limits())
    if Path(path).suffix.lower() == ".json":
        try:
            data = parse_json(text)
        except ValueError as e:
            raise ValueError(f"prompts file {path}: {e}") from None
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise ValueError(f"{path}: expected a JSON list of strings")
        for i, prompt in enumerate(data):
            try:
                check_text(prompt, f"prompt {i}")
            except ValueError as e:
                raise ValueError(f"prompts file {path}: {e}") from None
        return data
    prompts = []
    # The lines of str.splitlines but for its control characters (form feed, NEL, ...): they are
    # refused with their line, not taken as line breaks.
    for lineno, line in enumerate(re.split("\r\n|[\n\r\u2028\u2029]", text), 1):
        try:
            check_text(line, "the prompt")
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: {e}") from None
        if line.strip() and not line.lstrip().startswith("#"):
            prompts.append(line.strip())
    return prompts


def _level_files(n: int) -> list[str]:
    return [f"level_{i:02d}.png" for i in range(n)]


def _clear_outputs(out: Path, keep_stack: bool) -> None:
    for f in out.glob("level_*.png"):
        f.unlink()
    names = [DONE_FILE, VIDEO_FILE] + ([] if keep_stack else [STACK_FILE])
    for name in names:
        (out / name).unlink(missing_ok=True)


def _load_pipeline(config: ZoomConfig):
    from dreamer.backends.diffusion import DEFAULT_TEXT2IMG_MODEL, load_diffusers_pipeline

    model = "tiny" if config.models == "tiny" else (config.model or DEFAULT_TEXT2IMG_MODEL)
    # the zoom sampler calls the UNet itself, so the pipeline's safety checker would never run
    pipe = load_diffusers_pipeline("text2img", model, device=config.device, dtype=config.dtype,
                                   safety_checker=False)
    tiny_vae = None
    if config.tiny_vae:
        from diffusers import AutoencoderTiny

        from dreamer.backends.loading import load_pretrained

        from zoom.sampler import execution_device

        tiny_vae = load_pretrained(AutoencoderTiny.from_pretrained, config.tiny_vae, what="tiny VAE",
                                   dtype=pipe.unet.dtype).to(execution_device(pipe))
    return pipe, tiny_vae


def check_zoom(config: ZoomConfig, output: OutputConfig = OutputConfig(), limits=None) -> None:
    """Check every setting of a zoom run within ``limits`` (a :class:`dreamer.pipeline.limits.Limits`,
    default the standard ones; ValueError / TypeError naming it); the photo is decoded at the
    stack's size, as the run will use it."""
    from dreamer.checks import check_choice, check_int, check_number, check_text
    from dreamer.pipeline.limits import MAX_STEPS, Limits
    from dreamer.pipeline.preflight import check_limit, check_seed

    limits = limits or Limits()
    prompts = config.prompts
    if not prompts:
        raise ValueError("give at least one prompt (--prompts or --prompts-file)")
    if not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be strings, got {[type(p).__name__ for p in prompts]}")
    for i, prompt in enumerate(prompts):
        check_text(prompt, f"the prompt of level {i}")
    check_text(config.negative_prompt, "--negative-prompt")
    blank = [i for i, text in enumerate(prompts) if not text.strip()]
    if blank:
        raise ValueError(f"the prompt of level {blank[0]} is empty: give each level a prompt")
    check_limit(len(prompts), "the number of prompts (levels)", 1, limits.zoom_levels, "zoom levels")
    p = check_choice(config.p, "--p", (2, 4))
    check_choice(config.models, "--models", ("default", "tiny"))
    check_choice(config.photo_mode, "--photo-mode", ("guidance", "replace_low"))
    check_int(config.steps, "--steps", min=1, max=MAX_STEPS)
    check_number(config.guidance, "--guidance", min=0)
    check_seed(config.seed, "--seed")
    for name, side in (("height", config.height), ("width", config.width)):
        check_limit(side, f"the image {name} (--size)", 16 * p, limits.side, "image sides")
        if side % (16 * p):
            raise ValueError(f"the image {name} (--size) must be a multiple of {16 * p} (16 * p), got {side}")
    check_int(config.photo_level, "--photo-level", min=0, max=len(prompts) - 1)
    check_int(config.blend_every, "--blend-every", min=1)
    from dreamer.pipeline.preflight import check_model_source

    if config.models == "default":
        from dreamer.backends.diffusion import DEFAULT_TEXT2IMG_MODEL

        check_model_source(config.model or DEFAULT_TEXT2IMG_MODEL, "model")
    if config.tiny_vae:
        check_model_source(config.tiny_vae, "tiny_vae")
    if config.paste_depth is not None:
        check_int(config.paste_depth, "--paste-depth", min=0)
    fps = check_int(output.fps, "--fps", min=1)
    seconds = check_number(output.seconds_per_level, "--seconds-per-level", min=0, open_min=True)
    frames = max(1, round(fps * seconds)) * max(1, len(prompts) - 1) + 1
    if limits.frames is not None and frames > limits.frames:
        raise ValueError(f"the zoom video would have {frames} frames (--fps x --seconds-per-level x levels), more "
                         f"than the limit of {limits.frames} (--allow-large lifts it)")
    if config.photo:
        from dreamer.pipeline.inputs import load_image

        # warn=False: what the photo makes the run guess is said once, where the run reads it
        load_image(config.photo, config.width, config.height, fit="crop", max_pixels=limits.photo_pixels, warn=False)


def _resolve(config: ZoomConfig) -> ZoomConfig:
    from dreamer.backends.loading import resolve_device, resolve_dtype
    from dreamer.io import file_sha256

    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    photo_sha = ""
    if config.photo:
        path = Path(config.photo)
        if not path.is_file():
            raise ValueError(f"--photo {config.photo!r} is not a file")
        photo_sha = file_sha256(path)
    return dataclasses.replace(config, device=str(device), dtype=str(dtype).removeprefix("torch."),
                               photo_sha256=photo_sha)


class StackOfOtherSettings(ValueError):
    """The output folder holds a zoom stack sampled with other settings."""


def stack_hash_in(out: str | Path) -> str | None:
    """The stack hash of the run whose outputs are in ``out`` (from ``done.json`` or
    ``config.json``, else the checkpoint ``stack.pt``), or None when it holds none."""
    out = Path(out)
    for name in (DONE_FILE, CONFIG_FILE):
        try:
            found = json.loads((out / name).read_text()).get("stack_hash")
        except (OSError, ValueError, AttributeError):
            continue
        if found:
            return str(found)
    if (out / STACK_FILE).is_file():
        import torch

        try:
            return str(torch.load(out / STACK_FILE, map_location="cpu", weights_only=True).get("stack_hash"))
        except Exception:  # an unreadable checkpoint is sampled again anyway
            return None
    return None


def check_zoom_folder(out: str | Path) -> None:
    """Raise ValueError when ``out`` holds a ``config.json`` that is not a zoom run's (a dreamer
    scene's, another tool's): the run would overwrite it."""
    cfg = Path(out) / CONFIG_FILE
    if not cfg.exists():
        return
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        data = None
    if not (isinstance(data, dict) and "zoom" in data and "stack_hash" in data):
        raise ValueError(f"{out} holds a config.json that is not a zoom stack's (a dreamer scene's, or another "
                         f"tool's), which this run would overwrite; choose another --out")


def check_photo_kept(config: ZoomConfig, out: str | Path) -> None:
    """Raise ValueError when the photo is one of the files a run rewrites in ``out`` (a level of an
    earlier stack there, its video or config): ``--photo out/level_00.png --out out --overwrite``
    deleted the photo with the old outputs, then failed reading it after the model loaded."""
    if not config.photo:
        return
    photo, root = Path(config.photo).resolve(), Path(out).resolve()
    if photo.parent == root and (photo.match("level_*.png") or photo.name in (DONE_FILE, VIDEO_FILE, CONFIG_FILE,
                                                                             STACK_FILE)):
        raise ValueError(f"--photo {config.photo} is one of the files this run rewrites in {out} (the levels, video "
                         f"and config of a zoom stack); copy it out of the folder first")


def check_stack_reuse(config: ZoomConfig, out: str | Path, overwrite: bool = False) -> None:
    """Raise :class:`StackOfOtherSettings` when ``out`` holds a stack of other settings than
    ``config``'s (resolved by :func:`run_zoom`), unless ``overwrite``."""
    old = stack_hash_in(out)
    if old is not None and old != config_hash(_resolve(config)) and not overwrite:
        raise StackOfOtherSettings(f"{out} holds a zoom stack sampled with other settings (config {old}); rerun "
                                   f"with --overwrite to sample it again (deleting its outputs), or choose another "
                                   f"--out")


def run_zoom(config: ZoomConfig, out: str | Path, output: OutputConfig = OutputConfig(), *,
             on_progress: Callable[[str, int, int], None] | None = None, limits=None,
             overwrite: bool = False) -> dict:
    """Sample (or reuse) the stack of ``config`` and write the outputs into ``out``.

    Every setting is checked first (:func:`check_zoom`, within ``limits``). A folder holding a
    stack of other settings raises :class:`StackOfOtherSettings` unless ``overwrite`` (then it is
    sampled again, the old outputs deleted). Returns ``{"skipped": bool, "sampled": bool,
    "files": [paths], "config": dict}``.
    """
    import torch

    from dreamer.io import atomic_path, read_json, remove_temporaries, save_image, write_json
    from dreamer.pipeline.limits import Limits
    from dreamer.pipeline.preflight import check_output_folder
    from zoom.video import write_zoom_video

    limits = limits or Limits()
    check_zoom(config, output, limits)
    out = check_output_folder(out)
    check_zoom_folder(out)
    check_photo_kept(config, out)
    config = _resolve(config)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in remove_temporaries(out):
        logger.info("removed %s, left by an interrupted run", tmp)
    stack_hash = config_hash(config)
    check_stack_reuse(config, out, overwrite)
    full_hash = config_hash({"stack": stack_hash, "output": dataclasses.asdict(output)})
    files = [out / f for f in _level_files(len(config.prompts))] + [out / VIDEO_FILE, out / CONFIG_FILE,
                                                                     out / STACK_FILE]
    record = {"zoom": dataclasses.asdict(config), "output": dataclasses.asdict(output),
              "stack_hash": stack_hash, "hash": full_hash}

    done_path = out / DONE_FILE
    if done_path.exists():
        try:
            done = read_json(done_path)
        except (OSError, ValueError):
            done = {}
        if done.get("hash") == full_hash and all(f.exists() for f in files):
            logger.info("%s already holds this run (config %s); nothing to do", out, full_hash)
            return {"skipped": True, "sampled": False, "files": [str(f) for f in files], "config": record}

    checkpoint = None
    stack_path = out / STACK_FILE
    if stack_path.exists():
        try:
            checkpoint = torch.load(stack_path, map_location="cpu", weights_only=True)
        except Exception as e:  # a corrupt or foreign file: start over
            logger.warning("ignoring unreadable checkpoint %s (%s)", stack_path, e)
            checkpoint = None
        if checkpoint is not None and checkpoint.get("stack_hash") != stack_hash:
            logger.info("%s holds a run of another config; starting over", out)
            checkpoint = None
    _clear_outputs(out, keep_stack=checkpoint is not None)

    sampled = checkpoint is None
    if checkpoint is None:
        from zoom.sampler import sample_zoom_stack, seeded_generator

        pipe, tiny_vae = _load_pipeline(config)
        photo = None
        if config.photo:  # decoded at the stack's size (a large photo is never decoded whole)
            from dreamer.pipeline.inputs import load_image

            photo = load_image(config.photo, config.width, config.height, fit="crop",
                               max_pixels=limits.photo_pixels).image
        result = sample_zoom_stack(
            pipe, list(config.prompts), p=config.p, steps=config.steps, guidance=config.guidance,
            negative_prompt=config.negative_prompt, height=config.height, width=config.width,
            generator=seeded_generator(config.seed), photo=photo, photo_level=config.photo_level,
            photo_mode=config.photo_mode,
            blend_every=config.blend_every, paste_depth=config.paste_depth,
            residual_correction=config.residual_correction, tiny_vae=tiny_vae, on_progress=on_progress)
        checkpoint = {"stack_hash": stack_hash, "levels": result.levels.cpu(),
                      "raw": result.raw.cpu().half(), "settings": json.dumps(result.settings),
                      "seconds": result.seconds}
        with atomic_path(stack_path) as tmp:
            torch.save(checkpoint, tmp)
    else:
        logger.info("reusing the sampled stack in %s", stack_path)

    levels = checkpoint["levels"]
    write_json(out / CONFIG_FILE, {**record, "settings": json.loads(checkpoint["settings"]),
                                   "seconds": checkpoint["seconds"]})
    for i, name in enumerate(_level_files(levels.shape[0])):
        save_image(out / name, levels[i])
    if on_progress is not None:
        on_progress("video", 0, 1)
    write_zoom_video(out / VIDEO_FILE, levels, p=config.p, fps=output.fps,
                     seconds_per_level=output.seconds_per_level, feather=output.feather)
    if on_progress is not None:
        on_progress("video", 1, 1)
    write_json(done_path, {"hash": full_hash, "stack_hash": stack_hash})
    logger.info("wrote %d levels, %s and %s to %s", levels.shape[0], VIDEO_FILE, CONFIG_FILE, out)
    return {"skipped": False, "sampled": sampled, "files": [str(f) for f in files], "config": record}


def _parse_size(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"768x512"`` (width x height) -> (512, 768) as (height, width)."""
    try:
        if "x" in text.lower():
            w, h = text.lower().split("x")
            return int(h), int(w)
        s = int(text)
        return s, s
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--size must be N or WxH, got {text!r}") from e


def _photo_argument(text: str) -> str:
    """--photo's value: not empty (:func:`~dreamer.cli.path_argument`), kept as typed, since the
    stack's hash holds it (``Path`` would make './photo.png' 'photo.png', and a stack an earlier
    version sampled from the same command line would be refused as one of other settings)."""
    path_argument(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    zdoc, odoc = field_docs(ZoomConfig), field_docs(OutputConfig)

    def doc(name: str, default=None, docs=zdoc) -> str:
        text = docs[name]
        return f"{text} (default: {default})" if default is not None else text

    ap = OneLineParser(prog="python -m zoom.run", description=__doc__.split("\n\n")[0],
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_argument_group("what to zoom into")
    src = what.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", nargs="+", metavar="PROMPT", help="one prompt per level, widest first (required, "
                                                                      "or --prompts-file)")
    src.add_argument("--prompts-file", type=path_argument, metavar="FILE",
                     help="the prompts, one per line (# starts a comment) or a JSON list of strings")
    what.add_argument("--negative-prompt", default="", metavar="TEXT", help=doc("negative_prompt", "none"))
    what.add_argument("--photo", type=_photo_argument, default=None, metavar="FILE",
                      help="a photo that fixes one level (default: none)")
    what.add_argument("--photo-level", type=int, default=0, metavar="N", help=doc("photo_level", 0))
    what.add_argument("--photo-mode", default="guidance", choices=("guidance", "replace_low"),
                      help=doc("photo_mode", "guidance"))

    out = ap.add_argument_group("output")
    out.add_argument("--out", type=path_argument, required=True, metavar="FOLDER",
                     help="output folder: level_NN.png, zoom.mp4, config.json, stack.pt, done.json (required)")
    out.add_argument("--fps", type=int, default=24, help=doc("fps", 24, odoc))
    out.add_argument("--seconds-per-level", type=float, default=2.0, metavar="S",
                     help=doc("seconds_per_level", 2.0, odoc))
    out.add_argument("--overwrite", action="store_true",
                     help="sample again when --out holds a stack of other settings, deleting its outputs (without "
                          "it such a folder is refused)")

    sampling = ap.add_argument_group("sampling")
    sampling.add_argument("--p", type=int, default=2, choices=(2, 4), help=doc("p", 2))
    sampling.add_argument("--size", type=_parse_size, default=None, metavar="N|WxH",
                          help="image size in pixels, a multiple of 16*p (default: 512; 64 with --models tiny)")
    sampling.add_argument("--steps", type=int, default=None, metavar="N",
                          help="denoising steps (default: 50; 4 with --models tiny)")
    sampling.add_argument("--guidance", type=float, default=7.5, metavar="G", help=doc("guidance", 7.5))
    sampling.add_argument("--seed", type=int, default=0, metavar="N",
                          help="seed, 0 .. 4294967295; the same seed gives the same stack on every device (default: 0)")
    sampling.add_argument("--blend-every", type=int, default=1, metavar="K", help=doc("blend_every", 1))
    sampling.add_argument("--paste-depth", type=int, default=None, metavar="N",
                          help="deepest paste during sampling (default: bounded by the latent grid)")
    sampling.add_argument("--no-residual-correction", action="store_true",
                          help="do not carry the VAE round-trip residual in latent space (default: carry it)")

    models = ap.add_argument_group("models")
    models.add_argument("--models", default="default", choices=("default", "tiny"),
                        help="model set: default (Stable Diffusion through diffusers; a GPU is advised) or tiny "
                             "(random tiny models, no download: the plumbing in seconds) (default: default)")
    models.add_argument("--model", default="", metavar="ID|FOLDER",
                        help="text-to-image model: a hub id or a local folder (default: the project's SD 1.5)")
    models.add_argument("--tiny-vae", default="", metavar="ID|FOLDER",
                        help="an AutoencoderTiny (e.g. madebyollin/taesd) for the in-loop VAE round trip (default: "
                             "the full VAE)")
    models.add_argument("--device", default="auto", help=doc("device", "auto"))
    models.add_argument("--dtype", default="auto", help=doc("dtype", "auto"))

    run = ap.add_argument_group("run")
    run.add_argument("--allow-large", action="store_true",
                     help="lift the size limits (levels, image side, video frames, photo pixels, prompts file size)")
    run.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    run.add_argument("-v", "--verbose", action="store_true", help="tracebacks with errors")
    return ap


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from dreamer.pipeline.limits import Limits
    from dreamer.pipeline.preflight import check_output_folder
    from dreamer.progress import StageBars

    limits = Limits().lifted() if args.allow_large else Limits()
    if args.allow_large:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # Pillow's own guard against decompression bombs, lifted on request
    tiny = args.models == "tiny"
    try:
        prompts = args.prompts if args.prompts else read_prompts(args.prompts_file, limits)
        height, width = args.size if args.size else ((64, 64) if tiny else (512, 512))
        config = ZoomConfig(
            prompts=tuple(prompts), p=args.p, steps=args.steps if args.steps is not None else (4 if tiny else 50),
            guidance=args.guidance, negative_prompt=args.negative_prompt, height=height, width=width,
            seed=args.seed, models=args.models, model=args.model, tiny_vae=args.tiny_vae, photo=str(args.photo or ""),
            photo_level=args.photo_level, photo_mode=args.photo_mode, blend_every=args.blend_every,
            paste_depth=args.paste_depth, residual_correction=not args.no_residual_correction,
            device=args.device, dtype=args.dtype)
        output = OutputConfig(fps=args.fps, seconds_per_level=args.seconds_per_level)
        check_zoom(config, output, limits)
        check_output_folder(args.out)
        check_zoom_folder(args.out)
        check_photo_kept(config, args.out)
        _resolve(config)
        check_stack_reuse(config, args.out, args.overwrite)
    except (ValueError, TypeError, OSError) as e:
        return report_bad_input(parser.prog, e, args.verbose)
    try:
        result = run_zoom(config, args.out, output, on_progress=StageBars(enabled=not args.quiet, leave=False),
                          limits=limits, overwrite=args.overwrite)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to continue", file=sys.stderr)
        return 130
    except Exception as e:  # the run started and failed: one line (the traceback with -v)
        if args.verbose:
            logger.exception("zoom run failed")
        logger.error("%s", one_line(e))
        return EXIT_FAILED
    logger.info("%s: %s", args.out, "already done (skipped)" if result["skipped"] else
                "sampled" if result["sampled"] else "outputs rewritten from the checkpoint")
    return 0


if __name__ == "__main__":
    sys.exit(main())
