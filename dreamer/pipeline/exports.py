"""Files a dreamed scene leaves behind: views, cameras, transforms.json, point cloud.

Layout of a scene folder (every file written atomically):

    views/NNN.png            the completed view (RGB)
    views/NNN_depth.npy      its aligned z-depth, float32 metres (the loop's depth)
    views/NNN_depth.png      the same as a 16-bit PNG in millimetres (0: unknown, beyond 65.535 m)
    views/NNN_mask.png       white where the view added new points
    points.ply               the merged cloud: x y z red green blue (+ radius)
    cameras.json             our convention: OpenCV axes, c2w, K per view, prompt, alignment stats
    transforms.json          nerfstudio / instant-ngp layout (OpenGL axes, no masks: every pixel is
                             valid), to train other tools
"""

from __future__ import annotations

from pathlib import Path

from dreamer.cameras import Camera, opencv_to_opengl
from dreamer.io import save_depth_npy, save_depth_png16, save_image, write_json
from dreamer.scene.result import DreamResult, DreamView

__all__ = ["view_paths", "write_view", "write_cameras_json", "write_transforms_json", "write_scene"]


def view_paths(index: int) -> dict[str, str]:
    """Relative paths of the files of view ``index``."""
    stem = f"views/{index:03d}"
    return {
        "image": f"{stem}.png",
        "depth_npy": f"{stem}_depth.npy",
        "depth_png": f"{stem}_depth.png",
        "mask": f"{stem}_mask.png",
    }


def write_view(out: Path, index: int, view: DreamView) -> None:
    paths = view_paths(index)
    save_image(out / paths["image"], view.image)
    save_depth_npy(out / paths["depth_npy"], view.depth)
    save_depth_png16(out / paths["depth_png"], view.depth, exact=out / paths["depth_npy"])
    save_image(out / paths["mask"], view.mask)


def write_cameras_json(path: Path, cameras: list[Camera], views: list[DreamView] | None = None) -> None:
    """Our convention (OpenCV axes, c2w) with the prompt and statistics of each dreamed view."""
    frames = []
    for i, cam in enumerate(cameras):
        entry = {"index": i, **cam.to_dict()}
        if views is not None and i < len(views):
            entry["prompt"] = views[i].prompt
            entry["image"] = view_paths(i)["image"]
            entry["stats"] = views[i].stats  # NaN: null (write_json)
        frames.append(entry)
    write_json(path, {"convention": "opencv", "depth": "z-depth", "cameras": frames})


def write_transforms_json(path: Path, views: list[DreamView]) -> None:
    """nerfstudio / instant-ngp ``transforms.json``: per-frame intrinsics, OpenGL-axes c2w, depth.

    No ``mask_path``: every pixel of a dreamed view is valid, and nerfstudio trains only on the
    pixels a mask marks (the views' ``_mask.png`` marks where new points came from, which is
    something else). An intrinsic (``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``) is written at
    the top level only when every view shares it: nerfstudio takes a top-level value for every
    frame, over the frame's own (a trajectory whose field of view changes would be trained with
    the first view's)."""
    frames = []
    for i, v in enumerate(views):
        cam = v.camera
        paths = view_paths(i)
        frames.append({
            "file_path": paths["image"],
            "depth_file_path": paths["depth_png"],
            "fl_x": cam.fx, "fl_y": cam.fy, "cx": cam.cx, "cy": cam.cy, "w": cam.width, "h": cam.height,
            "transform_matrix": opencv_to_opengl(cam.c2w.cpu()).tolist(),
        })
    shared = {k: frames[0][k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")
              if all(f[k] == frames[0][k] for f in frames)}
    write_json(path, {
        "camera_model": "OPENCV",
        **shared,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "depth_unit_scale_factor": 1e-3,  # depth PNGs are millimetres
        "frames": frames,
    })


def write_scene(out: Path, result: DreamResult) -> None:
    """Every view, the point cloud, cameras.json and transforms.json."""
    out = Path(out)
    for i, view in enumerate(result.views):
        write_view(out, i, view)
    result.points.save_ply(out / "points.ply")
    write_cameras_json(out / "cameras.json", [v.camera for v in result.views], result.views)
    write_transforms_json(out / "transforms.json", result.views)
