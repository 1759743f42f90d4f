"""Files at the edges: atomic writes with the user's permissions, leftovers of killed runs."""

import json
import math
import os
import stat
from pathlib import Path
from unittest import mock

import pytest
import torch

from dreamer.io import atomic_path, remove_temporaries, save_image, write_json


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask_like_any_other_file(tmp_path, umask, mask):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    save_image(tmp_path / "b.png", torch.zeros(4, 4, 3))
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~mask
    for name in ("a.json", "b.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_atomic_path_leaves_the_complete_file_or_none(tmp_path):
    with atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"done")
    assert (tmp_path / "x.bin").read_bytes() == b"done"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "y.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_remove_temporaries_takes_only_the_atomic_writers_leftovers(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    leftovers = [videos / ".llff.mp4.k2j4_x9a.tmp.mp4", tmp_path / ".points.ply.0a1b2c3d.tmp.ply",
                 tmp_path / ".config.json.deadbeef.tmp.json"]
    keep = [videos / "llff.mp4", tmp_path / ".hidden", tmp_path / "notes.tmp", videos / ".x.tmp.mp4"]
    for p in leftovers + keep:
        p.write_bytes(b"")
    assert sorted(remove_temporaries(tmp_path, ["videos"])) == sorted(leftovers)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in leftovers)
    assert remove_temporaries(tmp_path / "missing") == []


def _strict_json(path):
    """Parse like JavaScript's JSON.parse or jq: NaN and Infinity are not JSON."""
    def refuse(name):
        raise ValueError(f"{path.name}: {name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_write_json_writes_standard_json_for_non_finite_numbers(tmp_path):
    """A metric without data (NaN) or a perfect PSNR (inf) is written as null, at any depth."""
    write_json(tmp_path / "m.json", {"psnr": math.inf, "views": [{"abs_rel": math.nan, "n": 3}, -math.inf],
                                     "pair": (1.5, math.nan), "ok": 0.25})
    assert _strict_json(tmp_path / "m.json") == {"psnr": None, "views": [{"abs_rel": None, "n": 3}, None],
                                                 "pair": [1.5, None], "ok": 0.25}


def test_remove_temporaries_reads_only_the_runs_own_folders(tmp_path):
    """An output folder may hold other things (--out ~): its other subfolders are neither walked
    (the whole tree of / took 9 s here, a large home minutes) nor cleaned of names that look like
    ours; the run's own subfolders are, however deep."""
    ours = [tmp_path / ".done.json.0a1b2c3d.tmp.json", tmp_path / "views" / "sub" / ".001.png.k2j4_x9a.tmp.png"]
    theirs = tmp_path / "photos" / ".img.jpg.0a1b2c3d.tmp.jpg"
    for p in ours + [theirs]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "photos")  # a symbolic link is no folder of the run's
    walked = []
    real_walk = os.walk
    with mock.patch("dreamer.io.os.walk", lambda top, *a, **k: walked.append(Path(top)) or real_walk(top, *a, **k)):
        assert sorted(remove_temporaries(tmp_path, ["views", "link", "videos"])) == sorted(ours)
    assert walked == [tmp_path / "views"] and theirs.exists()


def test_depth_png_marks_depth_beyond_its_range_unknown_and_names_the_exact_copy(tmp_path, caplog):
    """A 16-bit millimetre PNG holds up to 65.535 m. Farther pixels (a landscape, a long
    trajectory) were clipped to 65.535 m and read back as that depth, silently; they are 0 now,
    the "unknown" the project's reader fills and nerfstudio skips, with a warning that names the
    exact float32 copy (views/NNN_depth.npy), which holds them to the bit."""
    import numpy as np

    from dreamer.cameras import Camera
    from dreamer.pipeline.exports import write_view
    from dreamer.pipeline.inputs import load_depth_with_mask
    from dreamer.scene.result import DreamView

    depth = torch.full((6, 8), 2.5)
    depth[0, :3] = torch.tensor([65.535, 65.5356, 300.0])  # the last in range, two beyond
    depth[5, 7] = 1234.5
    view = DreamView(Camera(torch.eye(3), torch.eye(4), 8, 6), torch.zeros(6, 8, 3), depth,
                     torch.zeros(6, 8, dtype=torch.bool))
    with caplog.at_level("WARNING", logger="dreamer.io"):
        write_view(tmp_path, 2, view)
    back, known = load_depth_with_mask(tmp_path / "views/002_depth.png", 8, 6)
    beyond = depth > 65.5355
    assert torch.equal(~known, beyond)
    assert torch.allclose(back[known], depth[known], atol=0.5e-3 + 1e-6)
    assert np.array_equal(np.load(tmp_path / "views/002_depth.npy"), depth.numpy())
    [message] = [r.getMessage() for r in caplog.records]
    assert "002_depth.png: 3 pixels lie beyond 65.535 m (up to 1234.5 m)" in message
    assert str(tmp_path / "views/002_depth.npy") in message


def test_depth_png_of_a_scene_in_range_is_unchanged(tmp_path, caplog):
    """Depths within range keep the file they always had (millimetres, rounded half up) and no
    warning: resumed runs and other tools read the same bytes."""
    import numpy as np
    from PIL import Image

    from dreamer.io import save_depth_png16

    depth = torch.tensor([[0.0004, 0.0005, 1.2345, 1.2355], [10.0, 33.3333, 65.5, 65.535]])
    with caplog.at_level("WARNING", logger="dreamer.io"):
        assert save_depth_png16(tmp_path / "d.png", depth) == 0
    assert not caplog.records
    expected = np.clip(depth.double().numpy() * 1000.0 + 0.5, 0, 65535).astype(np.uint16)  # the old writer
    assert np.array_equal(np.array(Image.open(tmp_path / "d.png")), expected)
