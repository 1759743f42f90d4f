"""A real client reads what we write: the SuperSplat team's converter, splat-transform
(``@playcanvas/splat-transform``, Node.js), converts our gaussians.ply to other formats and back,
and reads our .spz (with the reference spz library, built to WebAssembly) and writes its own.

The package is installed once with npm into a cache folder (``$SPLAT_TRANSFORM_DIR``, default
``~/.cache/dreamer/splat-transform``; CI installs it there beforehand). The test is skipped only
when Node's ``npx`` is missing.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import Tensor

from dreamer.splats import Gaussians
from dreamer.splats.gaussians import rgb_to_sh0, sh0_to_rgb
from dreamer.splats.spz import load_spz, read_spz_header
from test_splats_spz import assert_within_quantization

VERSION = "2.7.1"  # the newest release whose engines accept Node 20 (3.x asks for Node >= 22)


@pytest.fixture(scope="module")
def splat_transform() -> str:
    if shutil.which("npx") is None:
        pytest.skip("npx (Node.js) is not installed, so splat-transform cannot run")
    prefix = Path(os.environ.get("SPLAT_TRANSFORM_DIR", Path.home() / ".cache" / "dreamer" / "splat-transform"))
    exe = prefix / "node_modules" / ".bin" / "splat-transform"
    if not exe.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                        f"@playcanvas/splat-transform@{VERSION}"], check=True, timeout=600,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return str(exe)


def _convert(exe: str, src: Path, dst: Path) -> None:
    r = subprocess.run([exe, "-w", str(src), str(dst)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    assert r.returncode == 0 and dst.exists(), f"splat-transform {src.name} -> {dst.name} failed:\n{r.stdout}"


@pytest.fixture
def ours(tmp_path) -> tuple[Gaussians, Path]:
    g = torch.Generator().manual_seed(0)
    n = 600
    gs = Gaussians(
        means=torch.randn(n, 3, generator=g) * torch.tensor([2.0, 1.0, 3.0]),
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g) - 4.0,
        opacity_logits=torch.randn(n, generator=g) * 2,
        sh0=rgb_to_sh0(torch.rand(n, 1, 3, generator=g)),  # colours inside [0, 1]
        shN=torch.randn(n, 15, 3, generator=g) * 0.2,
    )
    path = tmp_path / "gaussians.ply"
    gs.save_ply(path)
    return gs, path


def test_splat_transform_reads_and_rewrites_our_ply_exactly(splat_transform, ours, tmp_path):
    g, path = ours
    _convert(splat_transform, path, tmp_path / "rewritten.ply")
    back = Gaussians.load_ply(tmp_path / "rewritten.ply")
    assert len(back) == len(g)
    for a, b in zip(back.params().values(), g.params().values()):
        assert torch.equal(a, b)


def test_splat_transform_compressed_round_trip(splat_transform, ours, tmp_path):
    """ply -> SuperSplat's compressed.ply (quantized per chunk of 256 splats) -> ply: every
    Gaussian comes back (in another order) within the format's quantization steps."""
    from scipy.spatial import cKDTree

    g, path = ours
    _convert(splat_transform, path, tmp_path / "s.compressed.ply")
    assert (tmp_path / "s.compressed.ply").stat().st_size < path.stat().st_size / 3
    _convert(splat_transform, tmp_path / "s.compressed.ply", tmp_path / "back.ply")
    back = Gaussians.load_ply(tmp_path / "back.ply")
    assert len(back) == len(g)
    # The converter reorders the splats (spatial chunks): match each one by position.
    _, idx = cKDTree(back.means.numpy()).query(g.means.numpy())
    assert len(set(idx.tolist())) == len(g)
    b = {k: v[torch.from_numpy(idx)] for k, v in back.params().items()}
    a = g.params()
    margin = 1.05

    def step(t: Tensor, bits: int) -> Tensor:  # half a quantization step over the full range, per axis
        return 0.5 * (t.amax(0) - t.amin(0)) / (2**bits - 1) * margin

    # Positions and log scales: 11/10/11 bits within each chunk's bounds (<= the global range).
    assert ((a["means"] - b["means"]).abs() <= step(a["means"], 10)).all()
    assert ((a["scales"] - b["scales"]).abs() <= step(a["scales"], 10)).all()
    # Colour and opacity: 8 bits in [0, 1].
    assert ((sh0_to_rgb(a["sh0"]) - sh0_to_rgb(b["sh0"])).abs() <= 0.5 / 255 * margin).all()
    assert ((torch.sigmoid(a["opacities"]) - torch.sigmoid(b["opacities"])).abs() <= 0.5 / 255 * margin).all()
    # Higher SH: 8 bits over [-4, 4].
    assert ((a["shN"] - b["shN"]).abs() <= 0.5 * 8 / 255 * margin).all()
    # Rotations: unit quaternions up to sign, smallest-three with 10 bits.
    qa = a["quats"] / a["quats"].norm(dim=1, keepdim=True)
    qb = b["quats"] / b["quats"].norm(dim=1, keepdim=True)
    assert (1 - (qa * qb).sum(1).abs() <= 1e-4).all()



@pytest.mark.parametrize("version", [3, 4])
def test_splat_transform_reads_our_spz(splat_transform, ours, tmp_path, version):
    """Our .spz -> splat-transform -> .ply: the same Gaussians in the same order (so the same
    axes, rotations and SH signs as our .ply), each attribute within the format's quantization;
    and our reader decodes the file to what splat-transform decodes."""
    g, _ = ours
    spz = tmp_path / "g.spz"
    g.save_spz(spz, version=version)
    _convert(splat_transform, spz, tmp_path / "back.ply")
    theirs = Gaussians.load_ply(tmp_path / "back.ply")
    assert_within_quantization(g, theirs, read_spz_header(spz).fractional_bits)
    mine = load_spz(spz)
    for name in ("means", "log_scales", "sh0", "shN", "opacities"):
        assert torch.allclose(getattr(mine, name), getattr(theirs, name), atol=1e-6), name
    assert torch.allclose(mine.quats, theirs.quats, atol=1e-6)


def test_splat_transform_reads_the_same_filtered_scene_from_our_ply_and_our_spz(splat_transform, ours, tmp_path):
    """Splats with a 3D filter (a deep zoom's): splat-transform decodes our .spz to the Gaussians
    of our .ply (the filter baked into scales and opacities in both), within the quantization."""
    g, _ = ours
    g.filter_3d = torch.rand(len(g), generator=torch.Generator().manual_seed(2)) * 0.05
    g.shN = g.shN.clamp(-0.9, 0.9)  # inside the spz SH range, as in test_splats_spz
    g.save_ply(tmp_path / "f.ply")
    g.save_spz(tmp_path / "f.spz")
    _convert(splat_transform, tmp_path / "f.spz", tmp_path / "back.ply")
    assert_within_quantization(Gaussians.load_ply(tmp_path / "f.ply"), Gaussians.load_ply(tmp_path / "back.ply"),
                               read_spz_header(tmp_path / "f.spz").fractional_bits)


@pytest.mark.parametrize("version", [3, 4])
def test_our_reader_reads_splat_transforms_spz(splat_transform, ours, tmp_path, version):
    """.ply -> splat-transform's .spz (12 fractional bits; its SH rounding goes through two
    steps, half a level more) -> our reader: the Gaussians of the .ply."""
    g, path = ours
    spz = tmp_path / "theirs.spz"
    r = subprocess.run([splat_transform, "-w", "--spz-version", str(version), str(path), str(spz)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, r.stdout
    header = read_spz_header(spz)
    assert (header.version, header.num_points, header.fractional_bits) == (version, len(g), 12)
    assert_within_quantization(g, load_spz(spz), 12, sh_slack=0.5 / 128)


def test_splat_transform_reads_a_1024x_zoom_scene_with_the_same_count_and_values(splat_transform, tmp_path):
    """A deep-zoom export: 11 levels (p = 2, 1024x) of Gaussians around a target 3 m away, the
    deepest a thousand times smaller than the first, with the level, fade lengths and 3D filter
    as extra properties and the rasterize mode as a header comment. splat-transform reads it and
    writes back every Gaussian and every property (ours included) bit for bit."""
    from plyfile import PlyData

    from dreamer.splats.lod import LevelsOfDetail

    g = torch.Generator().manual_seed(4)
    level = torch.arange(11).repeat_interleave(60)
    n = level.numel()
    size = 0.004 * 0.5 ** level.double()  # the footprint of each level at 3 m
    means = (torch.tensor([0.31, -0.22, 2.93], dtype=torch.float64)
             + torch.randn(n, 3, generator=g, dtype=torch.float64) * 40 * size[:, None]).float()
    lod = LevelsOfDetail(level, torch.where(level > 0, size, 0.0).float(),
                         torch.where(level < 10, size / 2, 0.0).float())
    gs = Gaussians(means=means, quats=torch.randn(n, 4, generator=g),
                   log_scales=torch.log(size.float())[:, None].repeat(1, 3) + 0.1 * torch.randn(n, 3, generator=g),
                   opacity_logits=torch.randn(n, generator=g), sh0=rgb_to_sh0(torch.rand(n, 1, 3, generator=g)),
                   shN=torch.randn(n, 3, 3, generator=g) * 0.1, lod=lod, filter_3d=(0.45 * size).float(),
                   rasterize_mode="antialiased")
    path = tmp_path / "gaussians.ply"
    gs.save_ply(path)
    _convert(splat_transform, path, tmp_path / "rewritten.ply")
    ours, theirs = PlyData.read(str(path))["vertex"].data, PlyData.read(str(tmp_path / "rewritten.ply"))["vertex"].data
    assert len(theirs) == len(ours) == n
    assert set(theirs.dtype.names) == set(ours.dtype.names)
    for name in ours.dtype.names:
        assert (theirs[name] == ours[name]).all(), name
    back = Gaussians.load_ply(tmp_path / "rewritten.ply")
    assert torch.equal(back.lod.level, level) and torch.equal(back.means, gs.means)
