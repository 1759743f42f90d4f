"""Trajectory files (JSON): explicit cameras, keyframes, and nerfstudio ``transforms.json``.

Explicit cameras (a bare JSON list of camera objects is accepted as well)::

    {
      "convention": "opencv",            # optional; "opengl" for nerfstudio / Blender camera axes
      "width": 512, "height": 512,       # optional defaults for every camera
      "fov": 50.0,                       # optional default intrinsics: one of K, fov, focal
      "cameras": [
        {"c2w": [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]},
        {"c2w": [...], "fov": 60.0, "prompt": "a window with a view of the sea"},
        {"c2w": [...], "K": [[500,0,256],[0,500,256],[0,0,1]], "width": 512, "height": 512}
      ],
      "prompts": [null, "...", "..."]    # optional, one per camera, instead of per-camera "prompt"
    }

* ``c2w``: camera-to-world 4x4 (rows), rigid (rotation + translation, last row 0 0 0 1), in world
  units. The world frame is the file's own; the first camera is the camera of the input image.
  With ``"convention": "opengl"`` the camera axes are +x right, +y up, +z backward (nerfstudio,
  Blender) and are converted on load.
* Intrinsics, per camera or as top-level defaults, at most one of: ``K`` 3x3 pixels; ``fov``
  horizontal field of view in degrees (square pixels, centred principal point); ``focal`` pixels
  (square pixels, centred principal point). Missing intrinsics come from the top level, else from
  the ``first`` camera given to :func:`load_trajectory` (resized when the image size differs).
  ``width``/``height`` (pixels) default to the top level, else to ``first``'s.
* ``prompt``: a string or null (null = the scene prompt).

Keyframes, interpolated into a smooth path::

    {
      "keyframes": [
        {"c2w": [...], "frames": 30},    # 30 frames from this keyframe up to (not incl.) the next
        {"c2w": [...], "frames": 60, "fov": 40.0},
        {"c2w": [...]}                   # the last keyframe is the last frame
      ],
      "interpolation": "catmull_rom"     # positions: "linear" (default) or "catmull_rom"
    }

Instead of per-segment ``frames``, a top-level ``"frames": N`` gives the total number of frames
(both end keyframes included), spread evenly over the segments. Every keyframe is hit exactly.
Positions are interpolated linearly (or by a uniform Catmull-Rom spline), rotations by quaternion
slerp, focal lengths geometrically (f0^(1-t) * f1^t), principal points linearly; all keyframes
must share one image size. A keyframe's prompt applies to the frames of the segment it starts.
The other top-level keys (``convention``, ``width``, ``height``, ``K``/``fov``/``focal``,
``prompts``) work as for cameras.

A run's own ``cameras.json`` (``dreamer.pipeline.exports``: explicit cameras with the top-level
``"depth": "z-depth"`` and per-camera ``index``, ``image``, ``stats``) is read as explicit cameras:
those three keys record what the run made and are ignored, and so is each camera's ``prompt``,
which records the prompt the view was dreamed with (the scene prompt of the new run applies; pass
``--prompts`` to give one per view).

A nerfstudio / instant-ngp ``transforms.json`` (``"frames": [{"transform_matrix": ...}]`` with
``fl_x``/``fl_y``/``cx``/``cy``/``w``/``h`` or ``camera_angle_x``; OpenGL axes) is read as well:
pinhole cameras only (``camera_model`` PINHOLE, SIMPLE_PINHOLE or OPENCV with its distortion
coefficients ``k1``..``k4``, ``p1``, ``p2`` zero; a fisheye or a distorted lens is refused).

Errors raise :class:`TrajectoryFileError` (a ValueError) naming the file, the camera (or
keyframe) index and what is wrong. ``max_cameras`` bounds how many cameras a file may make,
checked before they are made (keyframes: from the frame counts, before interpolating).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dreamer.cameras import (
    FOV_RANGE,
    Camera,
    check_float32_focal,
    check_rigid,
    focal_from_fov,
    intrinsics_matrix,
    opencv_to_opengl,
    opengl_to_opencv,
)
from dreamer.checks import check_int, check_number, check_text
from dreamer.cli import parse_json, quote_names
from dreamer.trajectories.base import Trajectory, TrajectoryFileError, _check_first
from dreamer.trajectories.interpolate import _segment_counts, interpolate_cameras

# ------------------------------------------------------------------------------------------------
# Trajectory files
# ------------------------------------------------------------------------------------------------
_INTRINSIC_KEYS = ("K", "fov", "focal")
_CAMERA_KEYS = {"c2w", "width", "height", "prompt", *_INTRINSIC_KEYS}
_TOP_KEYS = {"convention", "width", "height", "prompts", "cameras", "keyframes", "frames", "interpolation",
             "description", *_INTRINSIC_KEYS}
# A run's cameras.json (dreamer.pipeline.exports.write_cameras_json): what the run recorded beside
# each camera, ignored on load; the top-level "depth" marks the file.
_EXPORT_CAMERA_KEYS = {"index", "image", "stats"}
_EXPORT_DEPTH = "z-depth"


class _Source:
    """Where an error happened: the file (or '<trajectory dict>') and the entry."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error(self, where: str | None, what: str) -> TrajectoryFileError:
        return TrajectoryFileError(f"{self.name}: {where}: {what}" if where else f"{self.name}: {what}")


def _shape_str(a: np.ndarray) -> str:
    return "x".join(map(str, a.shape)) if a.ndim else "a scalar"


def _has_non_number(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_has_non_number(v) for v in value)
    return isinstance(value, bool) or not isinstance(value, (int, float))


def _parse_matrix(value: Any, rows: int, cols: int, key: str, src: _Source, where: str | None) -> np.ndarray:
    if _has_non_number(value):  # numpy would read "1" and true as numbers
        raise src.error(where, f"{key} must be {rows}x{cols} (a list of {rows} rows of {cols} numbers), "
                               f"got {json.dumps(value)[:80]}")
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise src.error(where, f"{key} must be {rows}x{cols} (a list of {rows} rows of {cols} numbers), "
                               f"got {json.dumps(value)[:80]}") from None
    if a.shape != (rows, cols):
        raise src.error(where, f"{key} must be {rows}x{cols} (a list of {rows} rows of {cols} numbers), "
                               f"got {_shape_str(a)}")
    if not np.isfinite(a).all():
        raise src.error(where, f"{key} has non-finite entries")
    return a


def _parse_number(value: Any, key: str, src: _Source, where: str | None) -> float:
    try:
        return check_number(value, key)
    except (TypeError, ValueError) as e:
        raise src.error(where, str(e)) from None


def _parse_size(value: Any, key: str, src: _Source, where: str | None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON writers may write 512 as 512.0
    try:
        return check_int(value, f"{key} (pixels)", min=1)
    except (TypeError, ValueError) as e:
        raise src.error(where, str(e)) from None


def _parse_c2w(value: Any, convention: str, src: _Source, where: str) -> Tensor:
    c2w = torch.from_numpy(_parse_matrix(value, 4, 4, "c2w", src, where))
    try:
        check_rigid(c2w, name="c2w")
    except ValueError as e:
        raise src.error(where, f"c2w is non-rigid (expected a rotation and a translation with last row "
                               f"0 0 0 1): {e}") from None
    # Snap the rotation onto SO(3): files written by hand carry a few digits only.
    u, _, vt = np.linalg.svd(c2w[:3, :3].numpy())
    c2w[:3, :3] = torch.from_numpy(u @ vt)
    if convention == "opengl":
        c2w = opengl_to_opencv(c2w)
    return c2w.to(torch.float32)


def _parse_intrinsics(entry: dict, width: int, height: int, src: _Source, where: str | None) -> Tensor | None:
    """K [3,3] from whichever of K / fov / focal the entry has, or None if it has none."""
    given = [k for k in _INTRINSIC_KEYS if k in entry]
    if len(given) > 1:
        raise src.error(where, f"give at most one of K, fov, focal; got {', '.join(given)}")
    if not given:
        return None
    key = given[0]
    if key == "K":
        K = _parse_matrix(entry["K"], 3, 3, "K", src, where)
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise src.error(where, f"K needs positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
        if not np.allclose(K[2], [0.0, 0.0, 1.0]):
            raise src.error(where, f"K must have last row [0, 0, 1], got {K[2].tolist()}")
        try:
            check_float32_focal(K[0, 0], K[1, 1], "K")
        except ValueError as e:
            raise src.error(where, str(e)) from None
        return torch.from_numpy(K).to(torch.float32)
    v = _parse_number(entry[key], key, src, where)
    if key == "fov":
        lo, hi = FOV_RANGE  # as for --fov and any camera a person gives (check_input_camera)
        if not lo <= v <= hi:
            raise src.error(where, f"fov must be a horizontal field of view of {lo:g} to {hi:g} degrees, got {v}")
        f = focal_from_fov(v, width)
    else:
        if v <= 0:
            raise src.error(where, f"focal must be positive (pixels), got {v}")
        f = v
    try:
        check_float32_focal(f, f, key)
    except ValueError as e:
        raise src.error(where, str(e)) from None
    return intrinsics_matrix(f, f, width / 2.0, height / 2.0)


class _Defaults:
    """Top-level defaults of a file, falling back to the ``first`` camera."""

    def __init__(self, top: dict, first: Camera | None, src: _Source) -> None:
        self.first, self.src, self.top = first, src, top
        self.width = _parse_size(top["width"], "width", src, None) if "width" in top else None
        self.height = _parse_size(top["height"], "height", src, None) if "height" in top else None

    def size(self, entry: dict, where: str) -> tuple[int, int]:
        out = []
        for key, top in (("width", self.width), ("height", self.height)):
            if key in entry:
                out.append(_parse_size(entry[key], key, self.src, where))
            elif top is not None:
                out.append(top)
            elif self.first is not None:
                out.append(getattr(self.first, key))
            else:
                raise self.src.error(where, f"no {key}: give it per camera or at the top level, "
                                            "or pass a first camera")
        return out[0], out[1]

    def K(self, entry: dict, width: int, height: int, where: str) -> Tensor:
        K = _parse_intrinsics(entry, width, height, self.src, where)
        if K is None:
            K = _parse_intrinsics(self.top, width, height, self.src, "top level")
        if K is None:
            if self.first is None:
                raise self.src.error(where, "no intrinsics: give K, fov or focal per camera or at the top level, "
                                            "or pass a first camera")
            K = self.first.resized(width, height).K.detach().cpu()
        return K


def _check_prompt_text(prompt: str, key: str, src: _Source, where: str | None) -> None:
    try:
        check_text(prompt, key)
    except ValueError as e:
        raise src.error(where, str(e)) from None


def _parse_entries(entries: Any, kind: str, top: dict, defaults: _Defaults, convention: str,
                   src: _Source, extra_keys: set[str]) -> tuple[list[Camera], list[str | None], list[dict]]:
    if not isinstance(entries, list):
        raise src.error(None, f"'{kind}s' must be a list of {kind} objects, got {type(entries).__name__}")
    if not entries:
        raise src.error(None, f"has zero {kind}s; a trajectory needs at least one camera")
    cams: list[Camera] = []
    prompts: list[str | None] = []
    for i, entry in enumerate(entries):
        where = f"{kind} {i}"
        if not isinstance(entry, dict):
            raise src.error(where, f"must be an object with a 'c2w', got {type(entry).__name__}")
        unknown = sorted(set(entry) - _CAMERA_KEYS - extra_keys)
        if unknown:
            raise src.error(where, f"unknown key(s) {quote_names(unknown)}; "
                                   f"allowed: {', '.join(sorted(_CAMERA_KEYS | extra_keys))}")
        if "c2w" not in entry:
            raise src.error(where, "missing 'c2w' (the camera-to-world 4x4 matrix)")
        c2w = _parse_c2w(entry["c2w"], convention, src, where)
        width, height = defaults.size(entry, where)
        K = defaults.K(entry, width, height, where)
        try:
            cam = Camera(K, c2w, width, height)
        except ValueError as e:
            raise src.error(where, str(e)) from None
        if defaults.first is not None:
            cam = cam.to(defaults.first.device)
        prompt = entry.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise src.error(where, f"prompt must be a string or null, got {type(prompt).__name__}")
        if prompt is not None:
            _check_prompt_text(prompt, "prompt", src, where)
        cams.append(cam)
        prompts.append(prompt)
    if "prompts" in top:
        plist = top["prompts"]
        if not isinstance(plist, list):
            raise src.error(None, f"'prompts' must be a list (one per {kind}), got {type(plist).__name__}")
        if len(plist) != len(entries):
            raise src.error(None, f"'prompts' has {len(plist)} entries but there are {len(entries)} {kind}s; "
                                  f"give one prompt (or null) per {kind}")
        if any(p is not None for p in prompts):
            raise src.error(None, f"give prompts either per {kind} ('prompt') or as a top-level 'prompts' list, "
                                  "not both")
        for i, p in enumerate(plist):
            if p is not None and not isinstance(p, str):
                raise src.error(f"prompts[{i}]", f"must be a string or null, got {type(p).__name__}")
            if p is not None:
                _check_prompt_text(p, f"prompts[{i}]", src, None)
        prompts = list(plist)
    return cams, prompts, entries


def _check_camera_count(count: int, max_cameras: int | None, what: str, src: _Source) -> None:
    if max_cameras is not None and count > max_cameras:
        raise src.error(None, f"{what} {count} cameras, more than the limit of {max_cameras}; use fewer "
                              f"(--allow-large lifts the limit)")


def _parse_keyframes(data: dict, defaults: _Defaults, convention: str, src: _Source,
                     max_cameras: int | None = None) -> Trajectory:
    cams, prompts, entries = _parse_entries(data["keyframes"], "keyframe", data, defaults, convention, src,
                                            {"frames"})
    if len(cams) < 2:
        raise src.error(None, "'keyframes' needs at least 2 keyframes (use 'cameras' for a single camera)")
    interp = data.get("interpolation", "linear")
    if interp not in ("linear", "catmull_rom"):
        raise src.error(None, f"'interpolation' must be 'linear' or 'catmull_rom', got {interp!r}")
    size0 = (cams[0].width, cams[0].height)
    for i, c in enumerate(cams):
        if (c.width, c.height) != size0:
            raise src.error(f"keyframe {i}", f"is {c.width}x{c.height} but keyframe 0 is {size0[0]}x{size0[1]}; "
                                             "keyframes must share one image size")
    per_segment = [i for i, e in enumerate(entries) if "frames" in e]
    if "frames" in data:
        if per_segment:
            raise src.error(f"keyframe {per_segment[0]}", "has 'frames' but the top level gives a total "
                                                          "'frames'; use one or the other")
        try:
            total = check_int(data["frames"], "top-level 'frames' (the total, both end keyframes included)",
                              min=len(cams))
        except (TypeError, ValueError) as e:
            raise src.error(None, f"{e} (the number of keyframes is {len(cams)})") from None
        _check_camera_count(total, max_cameras, "asks for", src)
        counts = _segment_counts(total, len(cams) - 1)
    else:
        if len(entries) - 1 in per_segment:
            raise src.error(f"keyframe {len(entries) - 1}", "is the last keyframe: it ends the path and has no "
                                                            "segment, so it takes no 'frames'")
        missing = [i for i in range(len(entries) - 1) if i not in per_segment]
        if missing:
            raise src.error(f"keyframe {missing[0]}", "has no 'frames' (the number of frames up to the next "
                                                      "keyframe); give it on every keyframe but the last, or a "
                                                      "top-level total 'frames'")
        counts = []
        for i in range(len(entries) - 1):
            try:
                counts.append(check_int(entries[i]["frames"], "'frames'", min=1))
            except (TypeError, ValueError) as e:
                raise src.error(f"keyframe {i}", str(e)) from None
        _check_camera_count(sum(counts) + 1, max_cameras, "asks for", src)
    cameras = interpolate_cameras(cams, counts, position=interp)
    frame_prompts: list[str | None] = []
    for i, c in enumerate(counts):
        frame_prompts += [prompts[i]] * c
    frame_prompts.append(prompts[-1])
    return Trajectory(cameras, frame_prompts)


# transforms.json camera models that are pinholes (OPENCV: a pinhole with distortion coefficients,
# which must then be zero); nerfstudio also writes OPENCV_FISHEYE, EQUIRECTANGULAR, FISHEYE624, ...
_PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def _check_pinhole(get, src: _Source, where: str) -> None:
    """Refuse a transforms.json camera that is not a pinhole: the cameras here are (``K`` alone), so
    a fisheye or a distorted lens would be dreamed along other rays than its images show."""
    model = get("camera_model")
    if model is not None and model not in _PINHOLE_MODELS:
        raise src.error(where, f"camera_model {json.dumps(model)[:40]} is not a pinhole camera; the cameras here are "
                               f"pinholes ({', '.join(_PINHOLE_MODELS)} with zero distortion): undistort it first")
    if get("is_fisheye"):  # instant-ngp's flag
        raise src.error(where, "is_fisheye is set: the cameras here are pinholes; undistort it first")
    for key in _DISTORTION_KEYS:
        value = get(key)
        if value is not None and _parse_number(value, key, src, where) != 0.0:
            raise src.error(where, f"{key} = {value:g}: lens distortion, which a pinhole camera here cannot hold "
                                   f"(its views would be dreamed without it); undistort the cameras first, or give "
                                   f"{key} 0")


def _parse_transforms_json(data: dict, first: Camera | None, src: _Source,
                           max_cameras: int | None = None) -> Trajectory:
    """nerfstudio / instant-ngp transforms.json: OpenGL camera axes, intrinsics per file or frame;
    pinhole cameras only (a fisheye model or non-zero distortion coefficients are refused)."""
    frames = data["frames"]
    if not frames:
        raise src.error(None, "has zero frames; a trajectory needs at least one camera")
    _check_camera_count(len(frames), max_cameras, "has", src)
    cams = []
    for i, fr in enumerate(frames):
        where = f"camera {i}"
        if not isinstance(fr, dict) or "transform_matrix" not in fr:
            raise src.error(where, "a transforms.json frame needs a 'transform_matrix'")
        c2w = _parse_c2w(fr["transform_matrix"], "opengl", src, where)
        get = lambda k, fr=fr: fr.get(k, data.get(k))  # noqa: E731 - per-frame value over the file's
        _check_pinhole(get, src, where)
        w = get("w") if get("w") is not None else (first.width if first is not None else None)
        h = get("h") if get("h") is not None else (first.height if first is not None else None)
        if w is None or h is None:
            raise src.error(where, "no image size: give 'w' and 'h' or pass a first camera")
        w, h = _parse_size(w, "w", src, where), _parse_size(h, "h", src, where)
        if get("fl_x") is not None:
            fx = _parse_number(get("fl_x"), "fl_x", src, where)
            fy = _parse_number(get("fl_y") if get("fl_y") is not None else fx, "fl_y", src, where)
            cx = _parse_number(get("cx"), "cx", src, where) if get("cx") is not None else w / 2.0
            cy = _parse_number(get("cy"), "cy", src, where) if get("cy") is not None else h / 2.0
            try:
                K = intrinsics_matrix(fx, fy, cx, cy)
            except ValueError as e:
                raise src.error(where, str(e).replace("K: ", "fl_x, fl_y: ", 1)) from None
        elif get("camera_angle_x") is not None:
            angle = _parse_number(get("camera_angle_x"), "camera_angle_x", src, where)
            lo, hi = FOV_RANGE  # as for "fov" (in radians here, as instant-ngp writes it)
            if not lo <= math.degrees(angle) <= hi:
                raise src.error(where, f"camera_angle_x must be a horizontal field of view in radians, "
                                       f"{math.radians(lo):.4g} to {math.radians(hi):.4g} ({lo:g} to {hi:g} degrees), "
                                       f"got {angle:g}")
            f = focal_from_fov(math.degrees(angle), w)
            K = intrinsics_matrix(f, f, w / 2.0, h / 2.0)
        elif first is not None:
            K = first.resized(w, h).K.detach().cpu()
        else:
            raise src.error(where, "no intrinsics: give fl_x (and fl_y, cx, cy) or camera_angle_x, "
                                   "or pass a first camera")
        try:
            cam = Camera(K, c2w, w, h)
        except ValueError as e:
            raise src.error(where, str(e)) from None
        cams.append(cam if first is None else cam.to(first.device))
    return Trajectory(cams)


def _parse(data: Any, first: Camera | None, src: _Source, max_cameras: int | None = None) -> Trajectory:
    if isinstance(data, list):
        data = {"cameras": data}
    if not isinstance(data, dict):
        raise src.error(None, f"the top level must be an object or a list of cameras, got {type(data).__name__}")
    if isinstance(data.get("frames"), list):
        return _parse_transforms_json(data, first, src, max_cameras)
    exported = "depth" in data
    unknown = sorted(set(data) - _TOP_KEYS - ({"depth"} if "cameras" in data else set()))
    if unknown:
        raise src.error(None, f"unknown top-level key(s) {quote_names(unknown)}; "
                              f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    convention = data.get("convention", "opencv")
    if convention not in ("opencv", "opengl"):
        raise src.error(None, f"'convention' must be 'opencv' (+y down, +z forward) or 'opengl' "
                              f"(+y up, +z backward), got {convention!r}")
    defaults = _Defaults(data, first, src)
    if ("cameras" in data) == ("keyframes" in data):
        raise src.error(None, "give exactly one of 'cameras' (a list of cameras) or 'keyframes'"
                        + ("" if "cameras" in data else "; it has neither, so zero cameras"))
    if "cameras" in data:
        for key in ("frames", "interpolation"):
            if key in data:
                raise src.error(None, f"'{key}' only applies to 'keyframes', not to 'cameras'")
        if isinstance(data["cameras"], list):
            _check_camera_count(len(data["cameras"]), max_cameras, "has", src)
        if exported:
            if data["depth"] != _EXPORT_DEPTH:
                raise src.error(None, f"'depth' marks a run's cameras.json and must be {_EXPORT_DEPTH!r}, "
                                      f"got {json.dumps(data['depth'])[:80]}")
            if "prompts" in data:
                raise src.error(None, "'prompts' is not part of a run's cameras.json (marked by 'depth'); "
                                      "pass --prompts instead")
            # Its prompts record the old run's (ignored, not checked): the new run's prompt applies.
            entries = [{k: v for k, v in e.items() if k != "prompt"} if isinstance(e, dict) else e
                       for e in data["cameras"]]
            cams, _, _ = _parse_entries(entries, "camera", data, defaults, convention, src, _EXPORT_CAMERA_KEYS)
            return Trajectory(cams)
        cams, prompts, _ = _parse_entries(data["cameras"], "camera", data, defaults, convention, src, set())
        return Trajectory(cams, prompts)
    return _parse_keyframes(data, defaults, convention, src, max_cameras)


def load_trajectory(source: str | Path | dict | list, first: Camera | None = None, *,
                    max_cameras: int | None = None) -> Trajectory:
    """Read a trajectory from a JSON file (see the module docstring) or from already-parsed JSON data.

    Args:
        source: a path to a ``.json`` file, or a dict / list as ``json.load`` returns.
        first: the camera of the input image; supplies missing intrinsics and image sizes. The
            file's poses are used as they are (its world frame is the scene's).
        max_cameras: the most cameras the trajectory may have (None: no limit), checked before
            they are made.
    Returns:
        A :class:`Trajectory` with OpenCV-axes cameras (on ``first``'s device when given).
    Raises:
        TrajectoryFileError: bad JSON (with line and column), bad cameras (with the camera index).
        FileNotFoundError: no file at ``source``.
    """
    if first is not None:
        _check_first(first)
    if isinstance(source, (str, Path)):
        src = _Source(str(source))
        text = Path(source).read_text(encoding="utf-8")
        try:
            data = parse_json(text)
        except ValueError as e:
            raise src.error(None, str(e)) from None
    elif isinstance(source, (dict, list)):
        src = _Source("<trajectory dict>")
        data = source
    else:
        raise TypeError(f"source must be a path, a dict or a list, got {type(source).__name__}")
    try:
        return _parse(data, first, src, max_cameras)
    except TrajectoryFileError:
        raise
    except ValueError as e:  # a helper's check (cameras, interpolation): still named by the file
        raise src.error(None, str(e)) from None


def trajectory_to_dict(trajectory: Trajectory, *, convention: str = "opencv") -> dict:
    """The JSON form :func:`load_trajectory` reads: explicit cameras with K, c2w, size, prompt."""
    if not isinstance(trajectory, Trajectory):
        raise TypeError(f"trajectory must be a Trajectory, got {type(trajectory).__name__}")
    if convention not in ("opencv", "opengl"):
        raise ValueError(f"convention must be 'opencv' or 'opengl', got {convention!r}")
    cams = []
    for cam, prompt in zip(trajectory.cameras, trajectory.prompts):
        c2w = cam.c2w.detach().cpu()
        if convention == "opengl":
            c2w = opencv_to_opengl(c2w)
        entry: dict[str, Any] = {"c2w": c2w.tolist(), "K": cam.K.detach().cpu().tolist(),
                                 "width": cam.width, "height": cam.height}
        if prompt is not None:
            entry["prompt"] = prompt
        cams.append(entry)
    return {"convention": convention, "cameras": cams}


def save_trajectory(path: str | Path, trajectory: Trajectory, *, convention: str = "opencv") -> None:
    """Write ``trajectory`` as JSON (atomically); :func:`load_trajectory` reads it back exactly.

    ``convention="opengl"`` writes nerfstudio / Blender camera axes and says so in the file.
    """
    from dreamer.io import write_json

    write_json(path, trajectory_to_dict(trajectory, convention=convention))
