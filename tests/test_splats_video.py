"""Fly-through videos: readable files with the right frame counts, chunked rendering, errors."""

import imageio.v2 as imageio
import imageio.v3 as iio
import imageio_ffmpeg
import pytest
import torch

from dreamer.cameras import Camera
from dreamer.pointcloud import PointCloud
from dreamer.splats import Gaussians, render_video
from dreamer.splats.video import colorize_depth


@pytest.fixture(scope="module")
def gaussians():
    g = torch.Generator().manual_seed(0)
    n = 400
    xyz = torch.randn(n, 3, generator=g) * torch.tensor([1.0, 0.7, 0.5]) + torch.tensor([0.0, 0.0, 3.0])
    return Gaussians.from_points(PointCloud(xyz, torch.rand(n, 3, generator=g), torch.full((n,), 0.08)), sh_degree=1)


def _path(n, w=48, h=32):
    first = Camera.from_fov(50.0, w, h)
    try:
        from dreamer.trajectories import make_trajectory

        return make_trajectory("back_and_forth", first, 3.0, n=n).cameras
    except ImportError:  # trajectories not there: a hand-made dolly
        cams = []
        for i in range(n):
            c2w = torch.eye(4)
            c2w[2, 3] = 0.5 * i / max(n - 1, 1)
            cams.append(first.with_c2w(c2w))
        return cams


def test_video_files_have_every_frame(gaussians, tmp_path):
    cams = _path(13)
    seen = []
    files = render_video(gaussians, cams, tmp_path / "videos", name="back_and_forth", fps=12, chunk=4,
                         preview_frames=5, on_progress=lambda s, d, t: seen.append((s, d, t)))
    assert files.frames == 13
    assert files.rgb.name == "back_and_forth.mp4" and files.depth.name == "back_and_forth_depth.mp4"
    for path in (files.rgb, files.depth):
        assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 13
        with imageio.get_reader(path) as r:
            frame = r.get_data(6)
        assert frame.shape == (32, 48, 3) and frame.dtype.name == "uint8" and frame.max() > 50
    gif = iio.imread(files.preview, index=None)
    assert gif.shape[0] == 5 and gif.shape[1:3] == (32, 48)
    assert seen == [("video", 4, 13), ("video", 8, 13), ("video", 12, 13), ("video", 13, 13)]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [
        "back_and_forth.mp4", "back_and_forth_depth.mp4", "back_and_forth_preview.gif"]  # no temporaries left


def test_video_frames_match_renders(gaussians, tmp_path):
    cams = _path(3)
    files = render_video(gaussians, cams, tmp_path, name="v", depth=False, preview=False, quality=10)
    assert files.depth is None and files.preview is None
    with imageio.get_reader(files.rgb) as r:
        frame = torch.from_numpy(r.get_data(2)).float() / 255
    rgb, _, _ = gaussians.render(cams[2])
    assert float((frame - rgb).abs().mean()) < 0.03  # H.264 is lossy; the picture is the same


@pytest.mark.parametrize("w, h", [(40, 24), (33, 31)])
def test_a_size_that_is_no_multiple_of_16_is_not_stretched(gaussians, tmp_path, w, h):
    """A multiple of 8 (any scene size) is written as it is, an odd side with one more row or
    column (yuv420p needs even sides); the picture is the render's, not rescaled (imageio's
    default took 40 x 24 to 48 x 32 and 33 x 31 to 48 x 32)."""
    cams = _path(2, w, h)
    files = render_video(gaussians, cams, tmp_path, name="v", depth=False, preview=False, quality=10)
    with imageio.get_reader(files.rgb) as r:
        frame = torch.from_numpy(r.get_data(1)).float() / 255
    assert frame.shape == (h + h % 2, w + w % 2, 3)
    rgb, _, _ = gaussians.render(cams[1])
    assert float((frame[:h, :w] - rgb).abs().mean()) < 0.03


def test_depth_colours_go_from_near_bright_to_far_dark():
    depth = torch.tensor([[1.0, 2.0, 4.0, 0.0]])
    rgb = colorize_depth(depth, 1.0, 4.0)
    lum = rgb.sum(-1)[0]
    assert lum[0] > lum[1] > lum[2] > 0 and lum[3] == 0
    with pytest.raises(ValueError, match="near < far"):
        colorize_depth(depth, 2.0, 1.0)


def test_bad_video_inputs(gaussians, tmp_path):
    with pytest.raises(ValueError, match="zero frames"):
        render_video(gaussians, [], tmp_path)
    cams = _path(2)
    with pytest.raises(ValueError, match="one size"):
        render_video(gaussians, [cams[0], Camera.from_fov(50.0, 32, 32)], tmp_path)
    with pytest.raises(ValueError, match="name"):
        render_video(gaussians, cams, tmp_path, name="../x")
    with pytest.raises(TypeError, match="Camera"):
        render_video(gaussians, [None], tmp_path)
    with pytest.raises(ValueError, match="positive integer"):
        render_video(gaussians, [Camera(torch.eye(3), torch.eye(4), 0, 16)], tmp_path)
    assert not any(tmp_path.iterdir())
