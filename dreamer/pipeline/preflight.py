"""Everything a scene needs, checked before a model loads or a view is dreamed.

:func:`check_scene` reads and checks every input of one scene the way the run will use it, within
:class:`~dreamer.pipeline.limits.Limits`: the settings' types and ranges, seeds, the photo and its
depth map (decoded, at the working size), the trajectory (built with a stand-in depth: presets
and files give their cameras without the scene), the prompts per camera, the render trajectory
and ``--render-frames``, the zoom view and centre, the model set's device, sampler and model
folders (offline: cached hub ids), and whether the output folder can be written (nothing is
created). A bad input raises ``ValueError`` (:class:`ModelSourceMissing` for a model that is not
here) or ``TypeError`` whose one-line message names it and says what to do; nothing heavy has run
yet.

:func:`check_output_folder` and :func:`read_text_input` are the pieces the command lines share.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import tempfile
from pathlib import Path

from dreamer.checks import check_int, check_number, check_text
from dreamer.configs import check_settings
from dreamer.pipeline.inputs import BROKEN_LINK, unexpanded_home, check_input_file, looks_like_url
from dreamer.pipeline.limits import MAX_SEED, MAX_STEPS, Limits
from dreamer.pipeline.settings import CONFIG_SECTIONS, SceneConfigs

__all__ = ["check_scene", "check_output_folder", "read_text_input", "check_seed", "check_limit", "check_model_source",
           "ModelSourceMissing"]

# A depth for building presets before the scene exists: their number of cameras does not depend on it.
_STAND_IN_DEPTH = 1.0


def check_seed(value, name: str) -> int:
    """A seed: an integer in [0, :data:`~dreamer.pipeline.limits.MAX_SEED`]."""
    return check_int(value, name, min=0, max=MAX_SEED)


def read_text_input(path: str | Path, what: str, limits: Limits = Limits()) -> str:
    """The text of an input file (batch, config, trajectory, prompts), refused when it is not a
    file that can be read (:func:`~dreamer.pipeline.inputs.check_input_file`), larger than
    ``limits.input_bytes`` or not UTF-8."""
    path = check_input_file(path, what)
    size = path.stat().st_size
    if limits.input_bytes is not None and size > limits.input_bytes:
        raise ValueError(f"{what} {path} is {size / 2**20:.1f} MiB, more than the limit of "
                         f"{limits.input_bytes / 2**20:g} MiB for a text input (or lift the limit: --allow-large)")
    try:
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")  # a byte order mark is no content
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {path} is not a UTF-8 text file ({e.reason} at byte {e.start})") from None


def check_output_folder(out: str | Path, what: str = "--out") -> Path:
    """Make sure ``out`` can be a folder this process writes to, without creating it: an existing
    file on the way, or a place that cannot be written (permissions, a read-only file system)
    raise ``ValueError`` naming it. Probes by creating and deleting an empty file in ``out`` or,
    when it does not exist yet, in its nearest existing parent."""
    out = Path(out)
    place = out
    try:
        while not place.exists() and place != place.parent:
            if place.is_symlink():  # mkdir would fail there (File exists, or too many levels of links)
                raise ValueError(f"{what} {out}: {place} {BROKEN_LINK}; choose another folder")
            place = place.parent
    except OSError as e:  # a name longer than the file system takes, a folder on the way that cannot be searched
        fix = "choose a shorter path" if e.errno == errno.ENAMETOOLONG else "choose a folder you can write to"
        raise ValueError(f"{what} {out}: {e.strerror or e}; {fix}") from None
    # A URL would be made here as a folder named 'https:' or 's3:'; one that exists is a local folder.
    if place != out and looks_like_url(out) and not Path(out.parts[0]).exists():
        raise ValueError(f"{what} {out} is a URL: the outputs are written to a local folder; give one")
    # A '~' no shell expanded (quoted, or read from a batch or config file) would be made here as a
    # folder named '~' in the working folder; one that exists is a folder of that name.
    if place != out and unexpanded_home(out) and not Path(out.parts[0]).exists():
        raise ValueError(f"{what} {out} starts with {out.parts[0]!r}, which no shell expanded here (a folder of that "
                         f"name would be made in {Path.cwd()}); write the full path: {os.path.expanduser(out)}")
    if not place.is_dir():
        raise ValueError(f"{what} {out}: {place} is an existing file, not a folder; choose a folder")
    # The folders still to make: the file system reads a name only once its parent exists, so a
    # name it cannot take passed the walk above and failed the run's mkdir (a batch scene of 100
    # CJK letters is 300 bytes).
    longest, path_max = _name_max(place)
    for part in out.relative_to(place).parts if place != out else ():
        if len(os.fsencode(part)) > longest:
            raise ValueError(f"{what} {out}: the name {part[:40]!r}{'...' if len(part) > 40 else ''} is "
                             f"{len(os.fsencode(part))} bytes, more than the {longest} the file system takes; "
                             f"choose a shorter name")
    length = len(os.fsencode(os.path.abspath(out)))
    if length + _INSIDE > path_max:  # the run's own files below it would be too long to write
        raise ValueError(f"{what} {out}: its path is {length} bytes; the files a run writes in it need it to be at "
                         f"most {path_max - _INSIDE} (the system's {path_max}, less {_INSIDE} for their own names); "
                         f"choose a shorter path")
    try:
        # A name of its own per call (not per process): two jobs of one process (the app's threads)
        # probing one parent folder at once deleted each other's probe ("No such file or directory").
        handle, name = tempfile.mkstemp(prefix=".dreamer-write-test-", dir=place)
        os.close(handle)
        Path(name).unlink()
    except OSError as e:
        raise ValueError(f"{what} {out}: cannot write in {place} ({e.strerror or e}); choose a folder you can "
                         f"write to") from None
    return out


# Bytes an output folder's path leaves for the paths a run writes below it (the longest, a
# temporary in a scene's extensions/NNN/checkpoint/, is about 60).
_INSIDE = 128


def _name_max(folder: Path) -> tuple[int, int]:
    """The longest file name and path, in bytes, the file system of ``folder`` takes (255 and 4096
    where it cannot say)."""
    limits = []
    for name, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limits.append(os.pathconf(folder, name))
        except (OSError, ValueError):
            limits.append(default)
    return limits[0], limits[1]


def _check_types(configs: SceneConfigs) -> None:
    for section, get_cls in CONFIG_SECTIONS.items():
        config = getattr(configs, section)
        if config is not None:
            check_settings(get_cls(), {f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
                           where=section)


def _check_prompts(configs: SceneConfigs) -> None:
    """Every prompt of the scene is text without control characters (its types are checked)."""
    check_text(configs.scene.prompt, "prompt")
    for key, prompts in (("prompts", configs.scene.prompts), ("zoom_prompts", configs.zoom.zoom_prompts)):
        for i, text in enumerate(prompts or ()):
            check_text(text, f"{key}[{i}]")


def check_limit(value, name: str, minimum: int, limit: int | None, what: str) -> int:
    """An integer >= ``minimum`` and within a :class:`Limits` bound (``what`` names the bound);
    the message says how to lift it."""
    value = check_int(value, name, min=minimum)
    if limit is not None and value > limit:
        raise ValueError(f"{name} must be <= {limit} (the limit on {what}; --allow-large lifts it), got {value}")
    return value


def _check_numbers(configs: SceneConfigs, limits: Limits) -> None:
    sc, mc = configs.scene, configs.models
    for name in ("width", "height"):
        value = check_limit(getattr(sc, name), name, 8, limits.side, "image sides")
        if value % 8:
            raise ValueError(f"{name} must be a multiple of 8 (the diffusion models' latent grid), got {value}")
    if sc.views is not None:
        check_limit(sc.views, "views", 1, limits.views, "dreamed views")
    if sc.render_frames is not None:
        check_limit(sc.render_frames, "render_frames", 2, limits.frames, "video frames")
    check_seed(configs.dream.seed, "seed")
    check_seed(mc.world_seed, "world_seed")
    check_int(mc.steps, "steps", min=1, max=MAX_STEPS)
    check_number(mc.guidance, "guidance", min=0)
    check_number(mc.strength, "strength", min=0, max=1, open_min=True)
    if mc.models != "synthetic":  # the learned models' inpainting and repair run diffusers' steps x strength
        from dreamer.backends.diffusion import check_strength

        check_strength(mc.steps, mc.strength)
        if configs.refine.refine:
            check_strength(configs.refine.refine_steps, configs.refine.refine_strength,
                           ("refine_steps", "refine_strength"))
    check_int(mc.feather, "feather", min=0)
    check_int(sc.extension_iterations, "extension_iterations", min=0)
    if configs.splats is not None:
        check_seed(configs.splats.seed, "seed")
    zc = configs.zoom
    if zc.enabled:
        check_limit(zc.zoom_levels, "zoom_levels", 2, limits.zoom_levels, "zoom levels")
        check_seed(zc.zoom_seed, "zoom_seed")
        check_int(zc.zoom_steps, "zoom_steps", min=1, max=MAX_STEPS)
        check_limit(zc.zoom_fly_frames, "zoom_fly_frames", 0, limits.frames, "video frames")


def _check_models(configs: SceneConfigs) -> None:
    from dreamer.backends.diffusion import SCHEDULERS
    from dreamer.backends.loading import resolve_device, resolve_dtype

    mc = configs.models
    device = resolve_device(mc.device)
    resolve_dtype(mc.dtype, device)
    resolve_dtype(mc.depth_dtype, device)
    name = mc.scheduler.strip().lower().replace("dpmpp", "dpm++")
    if name != "default" and name not in SCHEDULERS:
        raise ValueError(f"scheduler must be 'default' or one of {', '.join(sorted(SCHEDULERS))}; got {mc.scheduler!r}")
    if configs.splats is not None and getattr(configs.splats, "device", "auto") != "auto":
        resolve_device(configs.splats.device)
    if mc.models == "default":
        from dreamer.backends.depth import DEPTH_MODELS

        needed = {"inpaint_model": mc.inpaint_model, "text2img_model": mc.text2img_model,
                  "depth_model": DEPTH_MODELS.get(mc.depth_model, mc.depth_model)}  # a short name: its hub id
        if configs.refine.refine:
            needed["refine_model"] = configs.refine.refine_model
        for name, model in needed.items():
            check_model_source(model, name)


class ModelSourceMissing(ValueError):
    """A model setting names a folder that does not exist, or (offline) a hub id that is not cached."""


def check_model_source(model: str, name: str) -> None:
    """A model setting (a hub id or a local folder) that cannot work is refused before any model
    loads: empty, a folder that does not exist, or (with ``HF_HUB_OFFLINE`` set) a hub id that is
    not in the Hugging Face cache. Whether a folder or a cached id holds a loadable model is only
    known when it loads (a failed run naming it)."""
    from dreamer.backends.depth import TINY_DEPTH_MODELS  # "tiny" is also the diffusion loaders' tiny model
    from dreamer.backends.loading import hub_cache_dir, hub_offline, is_local_model

    flag = "--" + name.replace("_", "-")
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"{flag} is empty; give a Hugging Face model id ('org/name') or a local folder")
    model = model.strip()
    if model in TINY_DEPTH_MODELS:  # random tiny models, built on the fly: nothing to find
        return
    if is_local_model(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise ModelSourceMissing(f"{flag} {model}: no such folder (a local model is a folder written by "
                                     f"save_pretrained or `huggingface-cli download ID --local-dir FOLDER`; a hub id "
                                     f"looks like 'org/name')")
    elif hub_offline() and not os.path.isdir(os.path.join(hub_cache_dir(), "models--" + model.replace("/", "--"))):
        raise ModelSourceMissing(f"{flag} {model!r} is not in the Hugging Face cache ({hub_cache_dir()}) and "
                                 f"HF_HUB_OFFLINE is set, so it cannot be downloaded: run `huggingface-cli download "
                                 f"{model}` where the hub can be reached, or pass a local folder")


def _check_inputs(configs: SceneConfigs, limits: Limits, first) -> None:
    sc = configs.scene
    for name in ("image", "depth"):  # a batch's or config's "" (null leaves them out)
        if getattr(sc, name) is not None and not getattr(sc, name).strip():
            raise ValueError(f"{name} is empty; give a file, or leave it out (null) for none")
    if sc.image is not None:
        from dreamer.pipeline.inputs import load_depth, load_image

        # warn=False: the run says what these files make it guess (once, where it reads them again)
        loaded = load_image(sc.image, sc.width, sc.height, fit=sc.fit, max_pixels=limits.photo_pixels, warn=False)
        if sc.depth is not None:
            load_depth(sc.depth, sc.width, sc.height, fit=sc.fit, like=loaded, max_pixels=limits.photo_pixels,
                       warn=False)
    else:
        if sc.depth is not None:
            raise ValueError("--depth needs --image (the depth map belongs to a photo)")
        if not sc.prompt.strip() and configs.models.models != "synthetic":
            given = "is only whitespace" if sc.prompt else "is empty"
            raise ValueError(f"--prompt {given}: give a --prompt (text to scene) or an --image (photo to scene)")


def _cameras(name: str, first, count: int | None, what: str, max_cameras: int | None, limits: Limits, *,
             dreamed: bool = False, synthetic: bool = False) -> list:
    """The cameras of a preset or trajectory file, as the run will build them (presets with a
    stand-in centre depth: their count and validity do not depend on it). A file's cameras are
    checked as a person's input (:func:`dreamer.cameras.check_input_camera`, image sides within
    ``limits.side``); ``dreamed`` ones also need sides that are multiples of 8 (the diffusion
    models' latent grid) and, for a dream trajectory, a first camera of the working size (it is
    the camera of the first view); ``synthetic``: inside the procedural world's room."""
    from dreamer.cameras import check_input_camera
    from dreamer.trajectories import is_trajectory_file, load_trajectory, make_trajectory

    if is_trajectory_file(name):
        read_text_input(name, f"{what} file", limits)
        cams = load_trajectory(name, first, max_cameras=max_cameras).cameras
        for i, cam in enumerate(cams):
            where = f"{name}: camera {i}"
            for side, value in (("width", cam.width), ("height", cam.height)):
                if limits.side is not None and value > limits.side:
                    raise ValueError(f"{where}: {side} {value} is more than the limit of {limits.side} px on image "
                                     f"sides (--allow-large lifts it)")
                if dreamed and value % 8:
                    raise ValueError(f"{where}: {side} {value} must be a multiple of 8 (the diffusion models' latent "
                                     f"grid)")
            check_input_camera(cam, where)
        if what == "render trajectory":  # its cameras are a video's frames (checked when the video is written)
            for i, cam in enumerate(cams):
                if (cam.width, cam.height) != (cams[0].width, cams[0].height):
                    raise ValueError(f"{name}: camera {i} is {cam.width}x{cam.height} but camera 0 is "
                                     f"{cams[0].width}x{cams[0].height}: the frames of a video share one size")
        if what == "extension trajectory":
            for i, cam in enumerate(cams):
                if (cam.width, cam.height) != (first.width, first.height):
                    raise ValueError(f"{name}: camera {i} is {cam.width}x{cam.height}; an extension's cameras have the "
                                     f"scene's size, {first.width}x{first.height}")
        if what == "trajectory" and (cams[0].width, cams[0].height) != (first.width, first.height):
            raise ValueError(f"{name}: camera 0 is {cams[0].width}x{cams[0].height} but the first view is "
                             f"{first.width}x{first.height} (--width, --height): camera 0 is the first view's camera, "
                             f"so give it that size (or leave width and height out of the file)")
    else:
        params = {} if count is None else {"n": count}
        try:
            cams = make_trajectory(name, first, _STAND_IN_DEPTH, **params).cameras
        except ValueError as e:
            if count is None or not str(e).startswith("n "):
                raise
            flag = "--views" if what == "trajectory" else "--render-frames"
            raise ValueError(f"{flag} {count} does not fit the {what} {name!r}: its camera count {e}") from None
        if max_cameras is not None and len(cams) > max_cameras:
            raise ValueError(f"{what} {name!r} has {len(cams)} cameras, more than the limit of {max_cameras} "
                             f"(--allow-large lifts it)")
    if synthetic and dreamed:
        from dreamer.worlds.procedural import check_inside_room

        for i, cam in enumerate(cams):
            check_inside_room(cam, f"{what} {name} camera {i} (the procedural world of --models synthetic)")
    return cams


def _same_intrinsics(a, b) -> bool:
    """Whether two cameras of one size have the same K (up to a JSON file's rounding)."""
    import torch

    return bool(torch.allclose(a.K.detach().cpu().double(), b.K.detach().cpu().double(), rtol=1e-5, atol=1e-4))


def check_scene(configs: SceneConfigs, out: str | Path | None = None, limits: Limits = Limits(), *,
                where: str = "") -> int:
    """Check everything scene ``configs`` needs (see the module docstring); returns its number of
    cameras. ``out``: its folder, checked for writing when given (nothing is created). ``where`` prefixes
    messages (e.g. a batch entry)."""
    from dreamer.trajectories import is_trajectory_file

    try:
        _check_types(configs)
        _check_prompts(configs)
        _check_numbers(configs, limits)
        _check_models(configs)
        sc = configs.scene
        first = sc.first_camera()
        _check_inputs(configs, limits, first)
        synthetic = configs.models.models == "synthetic"
        cams = _cameras(sc.trajectory, first, sc.views, "trajectory", limits.views, limits, dreamed=True,
                        synthetic=synthetic)
        if sc.views is not None and is_trajectory_file(sc.trajectory) and sc.views != len(cams):
            raise ValueError(f"--views {sc.views} conflicts with the trajectory file {sc.trajectory}, which has "
                             f"{len(cams)} cameras (--views sets the count of a preset's cameras): drop --views "
                             f"(or give --views none)")
        given = f"--fov {sc.fov:g}" if sc.fov is not None else f"--focal {sc.focal:g}" if sc.focal is not None else ""
        if given and is_trajectory_file(sc.trajectory) and not _same_intrinsics(cams[0], first):
            # camera 0 is the first view's camera: the file's intrinsics win, and the flag would be recorded unused
            raise ValueError(f"{given} conflicts with the trajectory file {sc.trajectory}, whose camera 0 (the first "
                             f"view's camera) has its own intrinsics: a field of view of {cams[0].fov_x:.4g} degrees "
                             f"(focal length {cams[0].fx:.4g} px), not {first.fov_x:.4g} ({first.fx:.4g} px): drop "
                             f"{given.split()[0]} (or leave K, fov and focal out of the file)")
        if sc.prompts is not None and len(sc.prompts) != len(cams):
            raise ValueError(f"--prompts has {len(sc.prompts)} prompts but the trajectory has {len(cams)} cameras: "
                             f"give one per camera")
        if configs.splats is not None:
            _cameras(sc.render_trajectory, first, sc.render_frames, "render trajectory", limits.frames, limits)
        if sc.extensions and configs.splats is None:
            raise ValueError("extensions fine-tune the scene's splats: they need the splat stage (drop --no-splats)")
        for extension in sc.extensions:
            check_input_file(extension, "extension trajectory")
            _cameras(extension, first, None, "extension trajectory", limits.views, limits, dreamed=True,
                     synthetic=synthetic)
        zc = configs.zoom
        if zc.enabled:
            k = zc.zoom_view
            if not -len(cams) <= k < len(cams):
                raise ValueError(f"zoom_view {k} is out of range: the trajectory has {len(cams)} views "
                                 f"(0..{len(cams) - 1}, or negative from the last)")
            view = cams[k]
            blank = [i for i, text in enumerate(zc.zoom_prompts or ()) if not text.strip()]
            if blank and configs.models.models != "synthetic":  # as zoom.run refuses it
                raise ValueError(f"zoom_prompts: the prompt of level {blank[0]} is empty: give each level a prompt")
            if configs.models.models != "synthetic":  # the zoom sampler pastes centred 1/p blocks of latents
                from zoom.stack import max_paste_depth

                factor = 8  # the VAE of Stable Diffusion (and of the tiny models)
                if max_paste_depth(view.height // factor, view.width // factor, zc.zoom_p, min_size=2) < 1:
                    raise ValueError(f"zoom_p {zc.zoom_p} does not fit view {k}'s {view.width}x{view.height} image: "
                                     f"its {view.width // factor}x{view.height // factor} latent grid has no centred "
                                     f"1/{zc.zoom_p} block of >= 2 latents; use sides that are multiples of "
                                     f"{2 * zc.zoom_p * factor} px")
            if zc.zoom_center is not None:
                u, v = zc.zoom_center
                if not (0.0 <= u <= view.width and 0.0 <= v <= view.height):
                    raise ValueError(f"zoom_center ({u:g}, {v:g}) lies outside view {k}'s "
                                     f"{view.width}x{view.height} image")
        if out is not None:
            check_output_folder(out)
    except (ValueError, TypeError, OSError) as e:
        message = f"{where}: {e}" if where else str(e)
        kind = TypeError if isinstance(e, TypeError) else ModelSourceMissing if isinstance(e, ModelSourceMissing) \
            else ValueError
        raise kind(message) from None
    return len(cams)
