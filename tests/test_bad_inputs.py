"""Bad and hostile inputs to both command lines, as a table.

Each case runs a command line's ``main(argv)`` in this process with captured output and asserts:
the exit status (2 for bad usage or input, 1 for a run that started and failed), one line of
output that names the input, no Python traceback, no model loaded, and little CPU time (each
case is refused before any work). Two cases also run as real subprocesses, where the CPU time of
the child (imports included) is measured with ``resource.getrusage``.

The categories: validation before work (photos, depth maps, trajectory files, the render
trajectory, the zoom view, batch entries' types, duplicate scene names, output paths, config
files, seeds), resource bounds (image sides, views, frames, photo pixels, .npy headers, complex
depth, YAML alias bombs, input sizes, zoom levels), permissions (folders that cannot be written),
and messages (bad flags, a damaged checkpoint, a model that is not available).
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dreamer.backends.model_sets as model_sets
from dreamer.run import main as dreamer_main
from zoom.run import main as zoom_main

SMALL = ["--models", "synthetic", "--width", "64", "--height", "64", "--views", "2", "--no-splats", "-q"]
ZOOM = ["--models", "tiny", "--steps", "2", "--size", "64", "--quiet"]
CPU_SECONDS = 5.0  # per refused case in this process (no imports); the refusals measured take 0.01-1.5 s
# A run that started (exit 1) may import diffusers and transformers for the first time in this process.
CPU_SECONDS_STARTED = 30.0


def _png_header(path: Path, width: int, height: int, bits: int = 8, color: int = 2) -> None:
    """A PNG that declares width x height but holds almost no data (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bits, color, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _yaml_bomb(path: Path) -> None:
    """About 300 bytes of YAML that expand to 10^8 prompts."""
    lines, prev = ["a: &a [x, x, x, x, x, x, x, x, x, x]"], "a"
    for name in "bcdefgh":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
        prev = name
    lines.append(f"scenes: [{{models: synthetic, prompts: *{prev}}}]")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def make_inputs(d: Path) -> Path:
    """Every input file of the table, in folder ``d``."""
    Image.new("RGB", (64, 48), (120, 90, 60)).save(d / "photo.png")
    (d / "notes.png").write_text("not a picture\n")
    (d / "zero.png").write_bytes(b"")
    (d / "transforms_degrees.json").write_text(json.dumps(  # instant-ngp writes radians; 50 was "field of view
        {"w": 64, "h": 64, "camera_angle_x": 50, "frames": [{"transform_matrix": np.eye(4).tolist()}]}))  # must be..."
    (d / "long_int.json").write_text('{"width": 1' + "0" * 5000 + ', "cameras": []}')
    (d / "long_int.yaml").write_text("- {models: synthetic, seed: 1" + "0" * 5000 + "}\n")
    (d / "bad_date.yaml").write_text("- {models: synthetic, name: 2024-13-45}\n")
    (d / "many_keys.yaml").write_text("- {models: synthetic, " + ", ".join(f"k{i}: 1" for i in range(5_000)) + "}\n")
    (d / "many_keys.json").write_text(json.dumps({"cameras": [{"c2w": np.eye(4).tolist(),
                                                              **{f"k{i}": 1 for i in range(5_000)}}]}))
    (d / "cjk_name.yaml").write_text("- {models: synthetic, name: " + "東" * 100 + "}\n", encoding="utf-8")
    (d / "render_two_sizes.json").write_text(json.dumps({"fov": 60, "cameras": [
        {"c2w": np.eye(4).tolist(), "width": w, "height": 64} for w in (64, 96)]}))
    (d / "old_stack").mkdir()
    Image.new("RGB", (64, 64), (90, 120, 150)).save(d / "old_stack" / "level_00.png")
    (d / "empty_image.yaml").write_text("- {models: synthetic, prompt: a room, image: ''}\n")
    (d / "folder.png").mkdir()
    Image.fromarray(np.full((48, 64), 9, np.uint8)).save(d / "depth8.png")
    nan = np.ones((48, 64), np.float32)
    nan[3, 3] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "square.npy", np.ones((50, 50), np.float32))
    np.save(d / "complex.npy", np.ones((48, 64), np.complex64))
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
    header["shape"] = (100_000, 200_000)  # 80 GB of float32 claimed by a 150-byte file
    with open(d / "claims80gb.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
    _png_header(d / "huge.png", 10_000, 10_000)
    _png_header(d / "hugedepth.png", 10_000, 10_000, bits=16, color=0)
    _png_header(d / "huge20k.png", 20_000, 20_000)
    eye = np.eye(4).tolist()
    step = np.eye(4)
    step[0, 3] = 0.1
    (d / "keyframes10m.json").write_text(json.dumps(
        {"fov": 50, "frames": 10_000_000, "keyframes": [{"c2w": eye}, {"c2w": step.tolist()}]}))
    (d / "broken.json").write_text('{"cameras": [\n')
    bent = np.eye(4)
    bent[0, 0] = 2.0
    (d / "nonrigid.json").write_text(json.dumps({"cameras": [{"c2w": eye}, {"c2w": bent.tolist()}]}))
    (d / "config_not_json.json").write_text("width = 512\n")
    (d / "config_list.json").write_text("[1, 2, 3]\n")
    (d / "config_deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (d / "config_unknown.json").write_text(json.dumps({"scene": {"widht": 512}}))
    with open(d / "config_huge.json", "wb") as f:  # sparse: 20 MB long, nothing on disk
        f.truncate(20 * 2**20)
    _yaml_bomb(d / "bomb.yaml")
    (d / "dup.yaml").write_text("- {name: a, models: synthetic}\n- {name: a, models: synthetic}\n")
    (d / "list_prompt.yaml").write_text("- {models: synthetic, prompt: [a room, a garden]}\n")
    (d / "string_width.yaml").write_text("- {models: synthetic, width: 512px}\n")
    (d / "number_name.yaml").write_text("- {models: synthetic, name: 7}\n")
    (d / "not_mapping.yaml").write_text("- just a prompt\n")
    (d / "empty_prompts.txt").write_text("# nothing but a comment\n")
    (d / "prompts40.txt").write_text("".join(f"level {i}\n" for i in range(40)))
    (d / "a_file").write_text("x")
    # Control characters in prompts (a NUL, an escape sequence): the files that carry prompts.
    (d / "nul_prompt.jsonl").write_text('{"name": "ok", "prompt": "a room"}\n\n'
                                        '{"name": "b", "prompt": "a \\u0000 room"}\n')
    (d / "esc_prompt.yaml").write_text('- {name: a, models: synthetic}\n- name: b\n  prompt: "a \\e[31mred room"\n')
    (d / "raw_nul.yaml").write_text("- name: a\n  prompt: a room\n- name: b\n  prompt: a \0 room\n")
    (d / "nul_prompts.txt").write_text("a forest\n\n# the next line holds a NUL\nthe tr\0ee\n")
    (d / "bell_prompts.json").write_text('["a forest", "a \\u0007 tree"]')
    (d / "esc_trajectory.json").write_text(json.dumps({"fov": 60, "cameras": [
        {"c2w": np.eye(4).tolist()}, {"c2w": np.eye(4).tolist(), "prompt": "a \x1b[2J window"}]}))
    # Folders a run must not take over: a source tree's zoom/ package, another tool's config.json.
    (d / "foreign" / "zoom").mkdir(parents=True)
    (d / "foreign" / "zoom" / "keep.py").write_text("")
    (d / "other_tool").mkdir()
    (d / "other_tool" / "config.json").write_text(json.dumps({"levels": 3}))
    cams = {"width": 64, "height": 64, "fov": 60}
    far = np.eye(4)
    far[0, 3] = 1e30
    out_of_room = np.eye(4)
    out_of_room[0, 3] = 50.0
    for name, data in [("cam63.json", {**cams, "width": 63, "cameras": [{"c2w": eye}]}),
                       ("cam_wide.json", {**cams, "width": 100_000, "cameras": [{"c2w": eye}]}),
                       ("cam128.json", {**cams, "width": 128, "cameras": [{"c2w": eye}]}),
                       ("cam_off_axis.json", {"width": 64, "height": 64,
                                              "cameras": [{"c2w": eye, "K": [[50, 0, 1e9], [0, 50, 32], [0, 0, 1]]}]}),
                       ("cam_far.json", {**cams, "cameras": [{"c2w": eye}, {"c2w": far.tolist()}]}),
                       ("cam_outside_room.json", {**cams, "cameras": [{"c2w": eye}, {"c2w": out_of_room.tolist()}]}),
                       ("two.json", {**cams, "cameras": [{"c2w": eye}, {"c2w": step.tolist()}]}),
                       ("cam_bools.json", {**cams, "cameras": [{"c2w": (np.eye(4) > 0).tolist()}]})]:
        (d / name).write_text(json.dumps(data))
    (d / "cam_dup_key.json").write_text('{"width": 64, "width": 128, "height": 64, "fov": 60, "cameras": [{"c2w": %s}]}'
                                        % json.dumps(eye))
    (d / "dup_key.yaml").write_text("- {name: a, name: b, models: synthetic}\n")
    (d / "top_key.yaml").write_text("scenes: [{models: synthetic}]\nsettings: {views: 2}\n")
    (d / "dup_case.yaml").write_text("- {name: Room, models: synthetic}\n- {name: room, models: synthetic}\n")
    (d / "long_name.yaml").write_text(f"- {{name: {'x' * 300}, models: synthetic}}\n")
    (d / "dotdot.yaml").write_text("- {name: '..', models: synthetic}\n")
    (d / "no_splats_no.yaml").write_text("- {models: synthetic, no_splats: 'no'}\n")
    (d / "loop").symlink_to("loop")  # a symbolic link to itself: mkdir fails on it ("File exists")
    (d / "loop.png").symlink_to("loop.png")
    return d


def _readonly_folder(path: Path):
    """A folder this process cannot write to: chmod for a user, chattr +i for root (skip when the
    file system cannot do it). Returns a function that makes it writable again."""
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


# (id, command line, arguments ({d}: the inputs folder, {o}: a fresh output folder), exit status,
#  fragments the one-line message must hold)
CASES = [
    # --- validation before work: photos and depth maps
    ("photo-missing", "dreamer", ["--image", "{d}/nope.png", "--out", "{o}"], 2, ["nope.png", "does not exist"]),
    ("photo-not-an-image", "dreamer", ["--image", "{d}/notes.png", "--out", "{o}"], 2, ["notes.png", "not an image"]),
    ("photo-is-a-folder", "dreamer", ["--image", "{d}/folder.png", "--out", "{o}"], 2, ["folder.png", "folder"]),
    ("depth-without-photo", "dreamer", ["--depth", "{d}/nan.npy", "--out", "{o}"], 2, ["--depth needs --image"]),
    ("depth-8-bit", "dreamer", ["--image", "{d}/photo.png", "--depth", "{d}/depth8.png", "--out", "{o}"], 2,
     ["depth8.png", "8-bit"]),
    ("depth-nan", "dreamer", ["--image", "{d}/photo.png", "--depth", "{d}/nan.npy", "--out", "{o}"], 2,
     ["nan.npy", "non-finite"]),
    ("depth-other-aspect", "dreamer", ["--image", "{d}/photo.png", "--depth", "{d}/square.npy", "--out", "{o}"], 2,
     ["square.npy", "aspect"]),
    # --- trajectories, prompts, render trajectory, zoom view
    ("trajectory-not-json", "dreamer", ["--trajectory", "{d}/broken.json", "--out", "{o}"], 2,
     ["broken.json", "not valid JSON"]),
    ("trajectory-non-rigid", "dreamer", ["--trajectory", "{d}/nonrigid.json", "--out", "{o}"], 2,
     ["nonrigid.json", "camera 1"]),
    ("trajectory-unknown-preset", "dreamer", ["--trajectory", "spiral", "--out", "{o}"], 2, ["'spiral'", "lookaround"]),
    ("prompts-per-camera", "dreamer", ["--prompts", "a", "b", "c", "--out", "{o}"], 2, ["3 prompts", "2 cameras"]),
    ("render-frames-too-few", "dreamer+splats", ["--render-frames", "1", "--out", "{o}"], 2,
     ["render_frames", ">= 2"]),
    ("render-trajectory-broken", "dreamer+splats", ["--render-trajectory", "{d}/broken.json", "--out", "{o}"], 2,
     ["broken.json"]),
    ("zoom-view-out-of-range", "dreamer", ["--zoom-levels", "3", "--zoom-view", "5", "--out", "{o}"], 2,
     ["zoom_view 5", "2 views"]),
    ("zoom-centre-outside", "dreamer", ["--zoom-levels", "3", "--zoom-center", "500", "10", "--out", "{o}"], 2,
     ["zoom_center", "outside"]),
    # --- batch entries
    ("batch-list-as-prompt", "dreamer", ["--batch", "{d}/list_prompt.yaml", "--out", "{o}"], 2,
     ["list_prompt.yaml:1: scene 0", "prompt must be a string"]),
    ("batch-string-as-width", "dreamer", ["--batch", "{d}/string_width.yaml", "--out", "{o}"], 2,
     ["string_width.yaml:1: scene 0", "width must be an integer", "512px"]),
    ("batch-number-as-name", "dreamer", ["--batch", "{d}/number_name.yaml", "--out", "{o}"], 2, ["scene 0", "name 7"]),
    ("batch-entry-not-a-mapping", "dreamer", ["--batch", "{d}/not_mapping.yaml", "--out", "{o}"], 2,
     ["not_mapping.yaml:1: scene 0 must be a mapping"]),
    ("batch-duplicate-names", "dreamer", ["--batch", "{d}/dup.yaml", "--out", "{o}"], 2,
     ["dup.yaml:2: scenes 0 (line 1) and 1 are both named 'a'"]),
    ("batch-missing", "dreamer", ["--batch", "{d}/nope.yaml", "--out", "{o}"], 2, ["nope.yaml", "does not exist"]),
    # --- output paths and permissions
    ("out-is-a-file", "dreamer", ["--out", "{d}/a_file"], 2, ["a_file", "existing file"]),
    ("out-under-a-file", "dreamer", ["--out", "{d}/a_file/scene"], 2, ["a_file", "existing file"]),
    ("out-read-only", "dreamer", ["--out", "{readonly}/scene"], 2, ["cannot write", "readonly"]),
    ("zoom-out-is-a-file", "zoom", ["--prompts", "a", "--out", "{d}/a_file"], 2, ["a_file", "existing file"]),
    ("zoom-out-read-only", "zoom", ["--prompts", "a", "--out", "{readonly}"], 2, ["cannot write", "readonly"]),
    # --- config files and seeds
    ("config-not-json", "dreamer", ["--config", "{d}/config_not_json.json", "--out", "{o}"], 2,
     ["config_not_json.json", "not valid JSON"]),
    ("config-not-an-object", "dreamer", ["--config", "{d}/config_list.json", "--out", "{o}"], 2,
     ["config_list.json", "mapping"]),
    ("config-nested-too-deeply", "dreamer", ["--config", "{d}/config_deep.json", "--out", "{o}"], 2,
     ["config_deep.json", "nested too deeply"]),
    ("config-unknown-setting", "dreamer", ["--config", "{d}/config_unknown.json", "--out", "{o}"], 2,
     ["config_unknown.json", "widht"]),
    # Geometry and estimator settings out of range: refused before the run, not by the view that uses them.
    ("grow-px-negative", "dreamer", ["--grow-px", "-1", "--out", "{o}"], 2, ["grow_px", ">= 0", "-1"]),
    ("denoise-radius-huge", "dreamer", ["--denoise-radius", "100000", "--out", "{o}"], 2, ["denoise_radius", "16"]),
    ("splat-scale-zero", "dreamer", ["--splat-scale", "0", "--out", "{o}"], 2, ["splat_scale", "> 0"]),
    ("merge-cell-factor-zero", "dreamer", ["--merge-cell-factor", "0", "--out", "{o}"], 2, ["merge_cell_factor"]),
    ("min-overlap-negative", "dreamer", ["--min-overlap-pixels", "-5", "--out", "{o}"], 2, ["min_overlap_pixels"]),
    ("estimator-noise-5", "dreamer", ["--noise", "5", "--out", "{o}"], 2, ["noise", "[0, 0.5)", "5.0"]),
    ("strength-zero", "dreamer", ["--strength", "0", "--out", "{o}"], 2, ["strength", "> 0", "0.0"]),
    ("prune-every-gaussian", "dreamer+splats", ["--prune-opa", "2", "--out", "{o}"], 2, ["prune_opa", "below 1"]),
    ("extension-missing", "dreamer+splats", ["--extensions", "{d}/nope.json", "--out", "{o}"], 2,
     ["extension trajectory", "nope.json", "does not exist"]),
    ("extension-not-json", "dreamer+splats", ["--extensions", "{d}/broken.json", "--out", "{o}"], 2,
     ["broken.json", "not valid JSON"]),
    ("seed-negative", "dreamer", ["--seed", "-1", "--out", "{o}"], 2, ["seed", ">= 0", "-1"]),
    ("seed-too-large", "dreamer", ["--seed", str(2**40), "--out", "{o}"], 2, ["seed", "4294967295"]),
    ("zoom-seed-too-large", "zoom", ["--prompts", "a", "--seed", str(2**70), "--out", "{o}"], 2,
     ["--seed", "4294967295"]),
    # --- resource bounds
    ("width-100000", "dreamer", ["--width", "100000", "--out", "{o}"], 2, ["width", "2048", "--allow-large"]),
    ("views-10000", "dreamer", ["--views", "10000", "--out", "{o}"], 2, ["views", "500", "--allow-large"]),
    ("keyframes-10-million", "dreamer", ["--trajectory", "{d}/keyframes10m.json", "--out", "{o}"], 2,
     ["keyframes10m.json", "10000000 cameras", "--allow-large"]),
    ("render-frames-10-million", "dreamer+splats", ["--render-frames", "10000000", "--out", "{o}"], 2,
     ["render_frames", "10000"]),
    ("render-keyframes-10-million", "dreamer+splats", ["--render-trajectory", "{d}/keyframes10m.json", "--out", "{o}"],
     2, ["keyframes10m.json", "10000000 cameras"]),
    ("photo-100-megapixels", "dreamer", ["--image", "{d}/huge.png", "--out", "{o}"], 2,
     ["huge.png", "10000x10000", "--allow-large"]),
    ("depth-100-megapixels", "dreamer", ["--image", "{d}/photo.png", "--depth", "{d}/hugedepth.png", "--out", "{o}"], 2,
     ["hugedepth.png", "10000x10000"]),
    ("npy-header-claims-80-gb", "dreamer", ["--image", "{d}/photo.png", "--depth", "{d}/claims80gb.npy",
                                            "--out", "{o}"], 2, ["claims80gb.npy", "100000x200000"]),
    ("depth-complex", "dreamer", ["--image", "{d}/photo.png", "--depth", "{d}/complex.npy", "--out", "{o}"], 2,
     ["complex.npy", "complex64"]),
    ("yaml-alias-bomb", "dreamer", ["--batch", "{d}/bomb.yaml", "--out", "{o}"], 2, ["bomb.yaml", "expands"]),
    ("config-20-mb", "dreamer", ["--config", "{d}/config_huge.json", "--out", "{o}"], 2, ["config_huge.json", "MiB"]),
    ("zoom-photo-100-megapixels", "zoom", ["--prompts", "a", "--photo", "{d}/huge.png", "--out", "{o}"], 2,
     ["huge.png", "10000x10000"]),
    ("zoom-40-levels", "zoom", ["--prompts-file", "{d}/prompts40.txt", "--out", "{o}"], 2, ["40", "16"]),
    ("zoom-steps-zero", "zoom", ["--prompts", "a", "--steps", "0", "--out", "{o}"], 2, ["--steps", ">= 1", "0"]),
    ("zoom-size-100000", "zoom", ["--prompts", "a", "--size", "100000", "--out", "{o}"], 2, ["--size", "2048"]),
    ("zoom-video-frames", "zoom", ["--prompts", "a", "b", "--fps", "1000", "--seconds-per-level", "100",
                                   "--out", "{o}"], 2, ["100001 frames", "--allow-large"]),
    # --- zoom.run's own inputs
    ("zoom-no-prompts", "zoom", ["--prompts-file", "{d}/empty_prompts.txt", "--out", "{o}"], 2, ["prompt"]),
    ("zoom-prompts-file-missing", "zoom", ["--prompts-file", "{d}/nope.txt", "--out", "{o}"], 2, ["nope.txt"]),
    ("zoom-photo-not-an-image", "zoom", ["--prompts", "a", "--photo", "{d}/notes.png", "--out", "{o}"], 2,
     ["notes.png"]),
    ("zoom-photo-level", "zoom", ["--prompts", "a", "b", "--photo", "{d}/photo.png", "--photo-level", "2",
                                  "--out", "{o}"], 2, ["--photo-level", "2"]),
    ("zoom-size-not-a-multiple", "zoom", ["--prompts", "a", "--size", "72", "--out", "{o}"], 2, ["--size", "32"]),
    # --- found by the input audit: options, cameras, folders, batch files
    ("out-empty", "dreamer", ["--out", ""], 2, ["--out", "empty"]),
    ("out-foreign-folder", "dreamer", ["--out", "{d}/foreign"], 2, ["foreign", "zoom", "not a scene folder"]),
    ("out-other-tools-config", "dreamer", ["--out", "{d}/other_tool"], 2, ["other_tool", "config.json", "--overwrite"]),
    ("shard-without-batch", "dreamer", ["--shard", "0/2", "--out", "{o}"], 2, ["--shard", "--batch"]),
    ("prompt-whitespace", "dreamer", ["--models", "tiny", "--prompt", " \n ", "--out", "{o}"], 2,
     ["--prompt", "whitespace"]),
    ("focal-near-zero", "dreamer", ["--focal", "1e-9", "--out", "{o}"], 2, ["--focal", "field of view", "170"]),
    ("focal-huge", "dreamer", ["--focal", "1e9", "--out", "{o}"], 2, ["--focal", "field of view", "0.1"]),
    ("focal-negative", "dreamer", ["--focal", "-5", "--out", "{o}"], 2, ["--focal", "> 0", "-5"]),
    ("fov-179.999", "dreamer", ["--fov", "179.999", "--out", "{o}"], 2, ["--fov", "170", "179.999"]),
    ("device-cuda-7", "dreamer", ["--device", "cuda:7", "--out", "{o}"], 2, ["'cuda:7'"]),
    ("model-folder-missing", "dreamer", ["--models", "default", "--prompt", "a room", "--inpaint-model",
                                         "{d}/no_model", "--out", "{o}"], 2, ["--inpaint-model", "no_model",
                                                                             "no such folder"]),
    ("camera-width-63", "dreamer", ["--trajectory", "{d}/cam63.json", "--out", "{o}"], 2,
     ["cam63.json", "camera 0", "multiple of 8"]),
    ("camera-width-100000", "dreamer", ["--trajectory", "{d}/cam_wide.json", "--out", "{o}"], 2,
     ["cam_wide.json", "100000", "2048"]),
    ("camera-0-not-the-first-view", "dreamer", ["--trajectory", "{d}/cam128.json", "--out", "{o}"], 2,
     ["cam128.json", "camera 0 is 128x64", "64x64"]),
    ("camera-off-axis", "dreamer", ["--trajectory", "{d}/cam_off_axis.json", "--out", "{o}"], 2,
     ["cam_off_axis.json", "principal point"]),
    ("camera-1e30-m-away", "dreamer", ["--trajectory", "{d}/cam_far.json", "--out", "{o}"], 2,
     ["cam_far.json", "camera 1", "from the origin"]),
    ("camera-outside-the-room", "dreamer", ["--trajectory", "{d}/cam_outside_room.json", "--out", "{o}"], 2,
     ["cam_outside_room.json", "camera 1", "outside the room"]),
    ("camera-bools-as-numbers", "dreamer", ["--trajectory", "{d}/cam_bools.json", "--out", "{o}"], 2,
     ["cam_bools.json", "numbers", "true"]),
    ("views-1-on-a-path-of-2", "dreamer", ["--trajectory", "llff", "--views", "1", "--out", "{o}"], 2,
     ["--views 1", "'llff'", ">= 2"]),
    ("zoom-p-3-on-64-px", "dreamer", ["--models", "tiny", "--prompt", "a room", "--zoom-levels", "2", "--zoom-p", "3",
                                      "--out", "{o}"], 2, ["zoom_p 3", "64x64", "multiples of 48"]),
    ("extension-of-another-size", "dreamer+splats", ["--extensions", "{d}/cam128.json", "--out", "{o}"], 2,
     ["cam128.json", "camera 0 is 128x64", "64x64"]),
    ("extension-without-splats", "dreamer", ["--extensions", "{d}/cam128.json", "--out", "{o}"], 2,
     ["extensions", "--no-splats"]),
    ("views-and-a-trajectory-file", "dreamer", ["--trajectory", "{d}/two.json", "--views", "5", "--out", "{o}"],
     2, ["--views 5", "two.json", "2 cameras"]),
    ("trajectory-key-twice", "dreamer", ["--trajectory", "{d}/cam_dup_key.json", "--out", "{o}"], 2,
     ["cam_dup_key.json", "'width' is given twice"]),
    ("batch-key-twice", "dreamer", ["--batch", "{d}/dup_key.yaml", "--out", "{o}"], 2,
     ["dup_key.yaml", "'name' is given twice"]),
    ("batch-unknown-top-level-key", "dreamer", ["--batch", "{d}/top_key.yaml", "--out", "{o}"], 2,
     ["top_key.yaml", "'settings'"]),
    ("batch-names-equal-up-to-case", "dreamer", ["--batch", "{d}/dup_case.yaml", "--out", "{o}"], 2,
     ["dup_case.yaml", "up to case"]),
    ("batch-name-300-characters", "dreamer", ["--batch", "{d}/long_name.yaml", "--out", "{o}"], 2,
     ["long_name.yaml:1: scene 0", "at most 100"]),
    ("batch-name-dotdot", "dreamer", ["--batch", "{d}/dotdot.yaml", "--out", "{o}"], 2,
     ["dotdot.yaml:1: scene 0", "'..'"]),
    ("batch-no-splats-as-string", "dreamer", ["--batch", "{d}/no_splats_no.yaml", "--out", "{o}"], 2,
     ["no_splats_no.yaml:1: scene 0", "no_splats must be true or false", "'no'"]),
    ("config-of-another-tool", "dreamer", ["--config", "{d}/other_tool/config.json", "--out", "{o}"], 2,
     ["config.json", "unknown section", "levels"]),
    # --- found by the review: symbolic links that lead nowhere
    ("out-symlink-loop", "dreamer", ["--out", "{d}/loop"], 2, ["--out", "loop", "symbolic link that leads nowhere"]),
    ("out-under-a-symlink-loop", "dreamer", ["--out", "{d}/loop/scene"], 2, ["loop/scene", "symbolic link"]),
    ("photo-symlink-loop", "dreamer", ["--image", "{d}/loop.png", "--out", "{o}"], 2,
     ["loop.png", "symbolic link that leads nowhere"]),
    ("zoom-out-symlink-loop", "zoom", ["--prompts", "a", "--out", "{d}/loop"], 2, ["--out", "symbolic link"]),
    ("deep-zoom-empty-level-prompt", "dreamer", ["--models", "tiny", "--prompt", "a room", "--zoom-levels", "2",
                                                 "--zoom-prompts", "a shelf", " ", "--out", "{o}"], 2,
     ["zoom_prompts", "level 1", "empty"]),
    # --- found by the third audit: input files, URLs
    ("photo-url", "dreamer", ["--image", "https://example.com/room.png", "--out", "{o}"], 2,
     ["example.com/room.png", "is a URL", "download it first"]),
    ("photo-400-megapixels", "dreamer", ["--image", "{d}/huge20k.png", "--out", "{o}"], 2,  # past Pillow's own guard:
     ["huge20k.png", "400.0 megapixels", "64 megapixels", "--allow-large"]),  # it spoke of "DOS attack"
    ("photo-zero-bytes", "dreamer", ["--image", "{d}/zero.png", "--out", "{o}"], 2, ["zero.png", "empty (0 bytes)"]),
    ("batch-url", "dreamer", ["--batch", "s3://bucket/scenes.yaml", "--out", "{o}"], 2, ["batch file", "is a URL"]),
    ("out-url", "dreamer", ["--out", "s3://bucket/scene"], 2, ["--out", "is a URL", "local folder"]),
    ("zoom-photo-url", "zoom", ["--prompts", "a", "--photo", "https://example.com/a.jpg", "--out", "{o}"], 2,
     ["is a URL"]),
    ("transforms-angle-in-degrees", "dreamer", ["--trajectory", "{d}/transforms_degrees.json", "--out", "{o}"], 2,
     ["transforms_degrees.json: camera 0", "camera_angle_x", "radians", "got 50"]),
    # Values Python cannot build: its words were "Exceeds the limit (4300 digits) ...; use sys.set_int_max_str_digits()"
    # (for the batch without the file's name), and a batch's "month must be in 1..12" named nothing either.
    ("trajectory-integer-5000-digits", "dreamer", ["--trajectory", "{d}/long_int.json", "--out", "{o}"], 2,
     ["long_int.json", "not valid JSON", "integer of more than 4300 digits"]),
    ("batch-integer-5000-digits", "dreamer", ["--batch", "{d}/long_int.yaml", "--out", "{o}"], 2,
     ["long_int.yaml", "not valid YAML", "integer of more than 4300 digits"]),
    ("batch-date-that-is-no-date", "dreamer", ["--batch", "{d}/bad_date.yaml", "--out", "{o}"], 2,
     ["bad_date.yaml", "not valid YAML", "month must be in 1..12", "quote it"]),
    # Messages quote what came, so a long input made a long line: 200000 characters of a preset name, all
    # 5000 unknown keys of a file, 40 kB of names (the table's test bounds every message's length).
    ("trajectory-preset-200000-characters", "dreamer", ["--trajectory", "x" * 200_000, "--out", "{o}"], 2,
     ["unknown trajectory preset 'xxx", "characters left out", "lookaround"]),
    ("extension-name-too-long", "dreamer+splats", ["--extensions", "x" * 5000 + ".json", "--out", "{o}"], 2,
     ["extension trajectory", "File name too long"]),
    ("batch-5000-unknown-settings", "dreamer", ["--batch", "{d}/many_keys.yaml", "--out", "{o}"], 2,
     ["many_keys.yaml:1: scene 0", "unknown setting(s) ['k0', 'k1', 'k10'", "and 4992 more]"]),
    ("camera-5000-unknown-keys", "dreamer", ["--trajectory", "{d}/many_keys.json", "--out", "{o}"], 2,
     ["many_keys.json: camera 0: unknown key(s) 'k0'", "and 4992 more; allowed: K, c2w"]),
    # Settings that fail the learned models' first call, after they loaded and the first view was made (exit 1).
    ("strength-of-no-step", "dreamer", ["--models", "tiny", "--prompt", "a room", "--steps", "2", "--strength", "0.1",
                                        "--out", "{o}"], 2, ["strength 0.1 of steps 2 denoises no step"]),
    ("refine-strength-of-no-step", "dreamer+splats", ["--models", "tiny", "--prompt", "a room", "--refine",
                                                      "--refine-strength", "0.1", "--out", "{o}"], 2,
     ["refine_strength 0.1 of refine_steps 2 denoises no step"]),
    # A name the file system cannot take, under a folder still to make: the run's mkdir failed (exit 1, after the
    # models loaded); the scene names' 100-letter rule counts letters, and 100 CJK letters are 300 bytes.
    ("out-name-300-bytes-in-a-new-folder", "dreamer", ["--out", "{o}/new/" + "東" * 100], 2,
     ["--out", "is 300 bytes, more than the 255 the file system takes"]),
    ("batch-name-300-bytes", "dreamer", ["--batch", "{d}/cjk_name.yaml", "--out", "{o}"], 2,
     ["cjk_name.yaml:1: scene 0", "300 bytes"]),
    ("zoom-out-name-300-bytes", "zoom", ["--prompts", "a", "--out", "{o}/" + "x" * 300], 2, ["300 bytes"]),
    ("render-trajectory-of-two-sizes", "dreamer+splats", ["--render-trajectory", "{d}/render_two_sizes.json",
                                                          "--out", "{o}"], 2,
     ["render_two_sizes.json: camera 1 is 96x64 but camera 0 is 64x64", "one size"]),  # failed after the splats
    ("zoom-photo-of-a-level-it-rewrites", "zoom", ["--prompts", "a", "b", "--photo", "{d}/old_stack/level_00.png",
                                                   "--out", "{d}/old_stack", "--overwrite"], 2,
     ["--photo", "level_00.png", "one of the files this run rewrites"]),  # deleted, then failed reading it (exit 1)
    # An empty value is not "none": --image "$PHOTO" of an unset variable dreamed from the prompt instead.
    ("photo-empty-value", "dreamer", ["--models", "tiny", "--prompt", "a room", "--image", "", "--out", "{o}"], 2,
     ["--image", "is empty", "'none'"]),
    ("zoom-prompts-file-empty-value", "zoom", ["--prompts-file", "", "--out", "{o}"], 2,
     ["--prompts-file", "is empty"]),  # was "prompts file . is not a file"
    ("zoom-photo-empty-value", "zoom", ["--prompts", "a", "--photo", " ", "--out", "{o}"], 2, ["--photo", "is empty"]),
    ("batch-photo-empty", "dreamer", ["--batch", "{d}/empty_image.yaml", "--out", "{o}"], 2,
     ["empty_image.yaml:1: scene 0", "image is empty"]),
    # --- messages: bad usage is one line too; failures that happen after the checks are exit 1
    ("bad-flag-value", "dreamer", ["--width", "wide", "--out", "{o}"], 2, ["--width", "invalid int", "--help"]),
    ("unknown-flag", "dreamer", ["--colour", "red", "--out", "{o}"], 2, ["--colour", "--help"]),
    ("zoom-bad-p", "zoom", ["--prompts", "a", "--p", "3", "--out", "{o}"], 2, ["--p", "invalid choice"]),
    ("zoom-model-missing", "zoom", ["--prompts", "a", "--models", "default", "--model", "{d}/no_model",
                                    "--device", "cpu", "--out", "{o}"], 2, ["--model", "no_model", "no such folder"]),
    ("zoom-tiny-vae-missing", "zoom", ["--prompts", "a", "--tiny-vae", "{d}/no_vae", "--out", "{o}"], 2,
     ["--tiny-vae", "no_vae", "no such folder"]),
    # --- prompts with control characters (a NUL, an escape sequence): dreamed with them before
    ("prompt-escape-sequence", "dreamer", ["--prompt", "a \x1b[31mred room", "--out", "{o}"], 2,
     ["prompt", "control characters", "'\\x1b' (U+001B) at character 3"]),
    ("prompts-bell", "dreamer", ["--prompts", "a", "b\x07", "--out", "{o}"], 2, ["prompts[1]", "'\\x07'"]),
    ("batch-jsonl-nul-prompt", "dreamer", ["--batch", "{d}/nul_prompt.jsonl", "--out", "{o}"], 2,
     ["nul_prompt.jsonl:3: scene 1 (b): prompt must be text without control characters", "U+0000"]),
    ("batch-yaml-escaped-escape", "dreamer", ["--batch", "{d}/esc_prompt.yaml", "--out", "{o}"], 2,
     ["esc_prompt.yaml:2: scene 1 (b): prompt must be text", "U+001B"]),
    ("batch-yaml-raw-nul", "dreamer", ["--batch", "{d}/raw_nul.yaml", "--out", "{o}"], 2,
     ["raw_nul.yaml:4: not valid YAML: control character '\\x00' (U+0000)"]),  # was "position 44"
    ("trajectory-prompt-escape", "dreamer", ["--trajectory", "{d}/esc_trajectory.json", "--out", "{o}"], 2,
     ["esc_trajectory.json: camera 1: prompt must be text without control characters", "U+001B"]),
    ("zoom-prompts-file-nul", "zoom", ["--prompts-file", "{d}/nul_prompts.txt", "--out", "{o}"], 2,
     ["nul_prompts.txt:4: the prompt", "U+0000"]),
    ("zoom-prompts-json-bell", "zoom", ["--prompts-file", "{d}/bell_prompts.json", "--out", "{o}"], 2,
     ["bell_prompts.json: prompt 1", "U+0007"]),
    ("zoom-prompt-escape", "zoom", ["--prompts", "a", "b\x1b", "--out", "{o}"], 2, ["level 1", "U+001B"]),
    ("zoom-negative-prompt-nul-like", "zoom", ["--prompts", "a", "--negative-prompt", "x\x7f", "--out", "{o}"], 2,
     ["--negative-prompt", "U+007F"]),
    ("zoom-empty-prompt", "zoom", ["--prompts", "a", " ", "--out", "{o}"], 2, ["level 1", "empty"]),
    ("zoom-out-empty", "zoom", ["--prompts", "a", "--out", ""], 2, ["--out", "empty"]),
    ("zoom-into-a-scene-folder", "zoom", ["--prompts", "a", "--out", "{d}/other_tool"], 2,
     ["other_tool", "config.json", "not a zoom stack's"]),
]

_WITH_SPLATS = [a for a in SMALL if a != "--no-splats"] + ["--gs-iters", "5"]
_COMMANDS = {"dreamer": (dreamer_main, SMALL), "dreamer+splats": (dreamer_main, _WITH_SPLATS),
             "zoom": (zoom_main, ZOOM)}


def _forbid_models(monkeypatch):
    """Refusals happen before any model loads: loading one fails the test."""
    import zoom.run

    def boom(*a, **k):
        raise AssertionError("a model was loaded for a bad input")

    monkeypatch.setattr(model_sets, "build_backends", boom)
    monkeypatch.setattr(zoom.run, "_load_pipeline", boom)


def _run(command: str, argv: list[str], capsys, caplog) -> tuple[int, list[str], float]:
    main, base = _COMMANDS[command]
    capsys.readouterr()
    caplog.clear()
    cpu = time.process_time()
    try:
        code = main([*base, *argv])
    except SystemExit as e:  # argparse's own exit, after its one line
        code = e.code
    cpu = time.process_time() - cpu
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if line.strip()]
    if code == 1:  # a run that started loads transformers, which notes its torchvision fallback here
        lines = [line for line in lines if not line.startswith("[transformers]")]
    lines += [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    return code, lines, cpu


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_it_before_any_work(case, d, tmp_path, capsys, caplog, monkeypatch):
    name, command, argv, code, fragments = case
    if code == 2:
        _forbid_models(monkeypatch)
    restore = None
    readonly = tmp_path / "readonly"
    if any("{readonly}" in a for a in argv):
        restore = _readonly_folder(readonly)
    try:
        args = [a.format(d=d, o=tmp_path / "out", readonly=readonly) for a in argv]
        got, lines, cpu = _run(command, args, capsys, caplog)
    finally:
        if restore:
            restore()
    assert got == code, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    assert len(lines[0]) < 2100, f"{len(lines[0])} characters"  # dreamer.cli.MAX_MESSAGE, and the prefix
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert cpu < (CPU_SECONDS if code == 2 else CPU_SECONDS_STARTED)
    if code == 2 and command.startswith("dreamer"):
        assert not (tmp_path / "out").exists()  # nothing was written


def test_the_table_covers_every_category():
    ids = {c[0] for c in CASES}
    for needed in ("photo-missing", "depth-nan", "trajectory-not-json", "render-frames-too-few",
                   "zoom-view-out-of-range", "batch-list-as-prompt", "batch-string-as-width",
                   "batch-duplicate-names", "out-is-a-file", "out-read-only", "config-not-json", "seed-too-large",
                   "width-100000", "views-10000", "keyframes-10-million", "photo-100-megapixels",
                   "npy-header-claims-80-gb", "depth-complex", "yaml-alias-bomb", "bad-flag-value",
                   "zoom-model-missing"):
        assert needed in ids, needed
    assert len(CASES) >= 50


def test_a_damaged_checkpoint_is_one_line_naming_the_file_before_any_model(tmp_path, capsys, caplog, monkeypatch):
    out = tmp_path / "scene"
    assert dreamer_main([*SMALL, "--keep-checkpoints", "--out", str(out)]) == 0
    # As if killed before the dream finished: the views' checkpoints are all there is to resume.
    (out / "DONE").unlink()
    (out / "checkpoint" / "result.pt").unlink()
    (out / "checkpoint" / "view_001.pt").write_bytes(b"\x80\x04garbage")
    _forbid_models(monkeypatch)
    code, lines, _ = _run("dreamer", ["--keep-checkpoints", "--out", str(out)], capsys, caplog)
    assert code == 2 and len(lines) == 1 and "Traceback" not in lines[0]
    assert "view_001.pt" in lines[0] and "cannot be loaded safely" in lines[0] and "--restart" in lines[0]
    monkeypatch.undo()
    code, lines, _ = _run("dreamer", ["--keep-checkpoints", "--restart", "--out", str(out)], capsys, caplog)
    assert code == 0 and (out / "DONE").exists()
    # --overwrite with other dream settings starts the scene over: its checkpoints are deleted unread.
    (out / "DONE").unlink()
    (out / "checkpoint" / "result.pt").write_bytes(b"\x80\x04garbage")
    code, lines, _ = _run("dreamer", ["--keep-checkpoints", "--seed", "3", "--overwrite", "--out", str(out)], capsys,
                          caplog)
    assert code == 0 and (out / "DONE").exists(), lines


@pytest.mark.slow
@pytest.mark.parametrize("argv, fragment", [
    (["-m", "dreamer.run", *SMALL, "--width", "100000", "--out", "{o}"], "width"),
    (["-m", "zoom.run", *ZOOM, "--prompts", "a", "--seed", "-3", "--out", "{o}"], "--seed"),
], ids=["dreamer.run", "zoom.run"])
def test_real_processes_refuse_in_one_line_and_little_cpu(argv, fragment, tmp_path):
    """The same refusals from the real entry points, imports included: the child's CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, *[a.format(o=tmp_path / "o") for a in argv]], capture_output=True,
                          text=True, env=env, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert "Traceback" not in done.stderr
    assert cpu < 10.0, f"{cpu:.1f} s of CPU"  # about 3 s here, nearly all of it importing torch


def test_an_input_inside_what_starting_over_deletes_is_refused_before_any_model(tmp_path, capsys, caplog,
                                                                                  monkeypatch):
    """--image scene/views/000.png --out scene --restart deleted the photo with the scene's outputs,
    then failed reading it (exit 1, after the models loaded); the same for --overwrite of changed
    settings. The photo is kept and the run refused; a photo beside the scene's own files is fine."""
    out = tmp_path / "scene"
    assert dreamer_main([*SMALL, "--out", str(out)]) == 0
    photo = out / "views" / "000.png"
    before = photo.read_bytes()
    _forbid_models(monkeypatch)
    for extra, how in ((["--restart"], "--restart deletes"), (["--overwrite", "--seed", "5"], "--overwrite")):
        code, lines, _ = _run("dreamer", ["--image", str(photo), "--out", str(out), *extra], capsys, caplog)
        assert code == 2 and len(lines) == 1, lines
        assert "--image" in lines[0] and "lies in views of the scene folder" in lines[0] and how in lines[0]
        assert photo.read_bytes() == before
    beside = out / "photo.png"
    beside.write_bytes(before)
    monkeypatch.undo()
    code, lines, _ = _run("dreamer", ["--image", str(beside), "--out", str(out), "--restart"], capsys, caplog)
    assert code == 0, lines
