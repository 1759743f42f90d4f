"""Our .spz writer and reader: the round trip within the format's quantization (per attribute),
the on-disk axis convention, the SH sign table against the SH evaluator, the fixed-point bits,
clamping, bad inputs, and the command line's ``--export spz``. splat-transform, an independent
reader, checks the same files in tests/test_splats_transform.py."""

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from dreamer.splats import Gaussians, SplatConfig
from dreamer.splats.gaussians import rgb_to_sh0
from dreamer.splats.spz import (_SH_FLIP, _parse, decode_spz, encode_spz, load_spz,
                                read_spz_header, save_spz)

# Largest errors of the format (module docstring of dreamer.splats.spz), plus float32 rounding.
EPS = 1e-5
OPACITY_STEP = 0.5 / 255
DC_STEP = 0.5 / (255 * 0.15)
LOG_SCALE_STEP = 1 / 32
SH1_STEP = 4 / 128  # 5 bits of 8: buckets of 8 over a range of 256 = 2
SH_REST_STEP = 8 / 128  # 4 bits
# Stored smallest-three components: half of (1/sqrt 2) / 511; the rebuilt largest one (>= 1/2)
# inherits at most sum|q_i| / w <= 3 times that.
QUAT_STORED = 0.5 * math.sqrt(0.5) / 511
QUAT_ANY = 3 * QUAT_STORED


def random_gaussians(n=500, degree=3, scale=(2.0, 1.0, 3.0), seed=0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    k1 = (degree + 1) ** 2 - 1
    return Gaussians(
        means=torch.randn(n, 3, generator=g) * torch.tensor(scale),
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.randn(n, 3, generator=g) - 4.0,
        opacity_logits=torch.randn(n, generator=g) * 2,
        sh0=rgb_to_sh0(torch.rand(n, 1, 3, generator=g)),
        shN=(torch.randn(n, k1, 3, generator=g) * 0.3).clamp(-0.9, 0.9),  # inside the SH range [-1, 1)
    )


def same_sign(qa: torch.Tensor, qb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both normalized, ``qb`` negated where that brings it nearer ``qa`` (q and -q are one rotation)."""
    qa = qa / qa.norm(dim=1, keepdim=True)
    qb = qb / qb.norm(dim=1, keepdim=True)
    return qa, qb * torch.where((qa * qb).sum(1, keepdim=True) < 0, -1.0, 1.0)


def assert_within_quantization(a: Gaussians, b: Gaussians, fractional_bits: int, sh_slack: float = 0.0) -> None:
    """``b`` is ``a`` written to spz and read back: same order, each attribute within its step
    (``sh_slack``: extra SH error of a writer that rounds twice, as the reference one does)."""
    assert len(a) == len(b) and a.sh_degree == b.sh_degree
    assert ((a.means - b.means).abs() <= 2.0 ** -(fractional_bits + 1) + 1e-7).all()
    assert ((a.opacities - b.opacities).abs() <= OPACITY_STEP + EPS).all()
    assert ((a.sh0 - b.sh0).abs() <= DC_STEP + EPS).all()
    assert ((a.log_scales - b.log_scales).abs() <= LOG_SCALE_STEP + EPS).all()
    qa, qb = same_sign(a.quats, b.quats)
    assert (b.quats.norm(dim=1) - 1).abs().max() < 1e-5
    assert ((qa - qb).abs() <= QUAT_ANY + EPS).all()
    if a.sh_degree:
        d = (a.shN - b.shN).abs()
        assert (d[:, :3] <= SH1_STEP + sh_slack + EPS).all()
        assert (d[:, 3:] <= SH_REST_STEP + sh_slack + EPS).all()


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("degree", [0, 1, 3, 4])
def test_round_trip_within_the_quantization(tmp_path, version, degree):
    g = random_gaussians(degree=degree, seed=degree)
    path = tmp_path / "g.spz"
    g.save_spz(path, version=version)
    header = read_spz_header(path)
    assert (header.version, header.num_points, header.sh_degree) == (version, len(g), degree)
    back = Gaussians.load_spz(path)
    assert back.means.dtype == torch.float32
    assert_within_quantization(g, back, header.fractional_bits)
    # Quantized values are fixed points: writing what was read gives the same values again (the
    # rotations within a step: where the rebuilt largest component ties with a stored one, the
    # other may be dropped the second time).
    save_spz(back, tmp_path / "again.spz", version=version, fractional_bits=header.fractional_bits)
    again = load_spz(tmp_path / "again.spz")
    for name in ("means", "log_scales", "opacity_logits", "sh0", "shN"):
        assert torch.allclose(getattr(back, name), getattr(again, name), atol=2e-6), name
    assert torch.allclose(*same_sign(back.quats, again.quats), atol=QUAT_ANY)


def test_a_zero_sh_coefficient_stays_exactly_zero_and_8_bits_keep_more():
    g = random_gaussians(degree=2, seed=4)
    g.shN[:, 5] = 0.0
    coarse, fine = (decode_spz(encode_spz(g, sh1_bits=b, sh_rest_bits=b)) for b in (4, 8))
    assert torch.equal(coarse.shN[:, 5], torch.zeros_like(coarse.shN[:, 5]))
    assert ((fine.shN - g.shN).abs() <= 0.5 / 128 + EPS).all()
    assert (fine.shN - g.shN).abs().max() < (coarse.shN - g.shN).abs().max() / 4


def test_the_file_stores_right_up_back_axes():
    """On disk a point at OpenCV (x, y, z) sits at (x, -y, -z), a rotation's y and z
    components flip, and the header says what we wrote."""
    g = random_gaussians(n=3, degree=1, seed=5)
    g.means[:] = torch.tensor([[1.0, 2.0, 3.0], [-0.5, 0.25, -4.0], [0.0, -1.0, 0.5]])
    half = math.sqrt(0.5)
    g.quats[0] = torch.tensor([half, 0.0, half, 0.0])  # 90 degrees about +y
    data = encode_spz(g, fractional_bits=10)
    raw = gzip.decompress(data)
    assert struct.unpack_from("<IIIBBBB", raw) == (0x5053474E, 3, 3, 1, 10, 0, 0)
    header, (pos, *_rest) = _parse(data, "test")
    u = np.frombuffer(pos, np.uint8).reshape(-1, 3).astype(np.int64)
    fixed = u[:, 0] | (u[:, 1] << 8) | (u[:, 2] << 16)
    fixed = np.where(fixed >= 1 << 23, fixed - (1 << 24), fixed).reshape(3, 3)
    expected = g.means.numpy() * np.array([1, -1, -1]) * 2**10
    assert np.array_equal(fixed, np.rint(expected).astype(np.int64))
    rot = np.frombuffer(_rest[3], "<u4")[0]
    # x y z w = (0, -half, 0, half): the largest, first in xyzw order, is y (index 1), stored
    # negated to be positive: x = 0, z = 0, w = -half -> sign bit set, magnitude 511.
    assert rot >> 30 == 1
    assert [(rot >> s) & 0x3FF for s in (20, 10, 0)] == [0, 0, (1 << 9) | 511]


def test_sh_sign_table_matches_the_sh_evaluator():
    """The colour seen along d with the original SH equals the colour along the mirrored
    direction (x, -y, -z) with the sign-flipped SH (degrees 1-4, gsplat's evaluator)."""
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = torch.Generator().manual_seed(6)
    coeffs = torch.randn(64, 25, 3, generator=g, dtype=torch.float64)
    dirs = torch.randn(64, 3, generator=g, dtype=torch.float64)
    flipped = coeffs.clone()
    flipped[:, 1:] *= torch.from_numpy(_SH_FLIP)[:, None]
    mirrored = dirs * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    for degree in range(1, 5):
        a = _spherical_harmonics(degree, dirs, coeffs)
        b = _spherical_harmonics(degree, mirrored, flipped)
        assert torch.allclose(a, b, atol=1e-10), degree


def test_fractional_bits_follow_the_gaussians_size_and_the_scene_extent():
    """A step of at most 1/16 of the small Gaussians' middle std, at least the reference
    writer's 12 bits, fewer only where the farthest coordinate would not fit in 24 bits."""
    def bits(g):
        return _parse(encode_spz(g), "t")[0].fractional_bits

    g = random_gaussians(n=200, degree=0, seed=7)
    g.log_scales[:] = 0.0  # std 1: 12 bits would be plenty; the floor is the reference's 12
    assert bits(g) == 12
    g.log_scales[:] = math.log(1e-4)  # deep-zoom detail: 2^-18 <= 1e-4 / 16 < 2^-17
    g.log_scales[:, 0] = math.log(1e-6)  # flat splats: the thin axis does not count
    assert bits(g) == 18
    back = decode_spz(encode_spz(g))
    assert (back.means - g.means).abs().max() <= 2.0 ** -19
    g.means[0] = torch.tensor([100.0, -5.0, 1.0])  # 100 * 2^16 < 2^23 - 1 < 100 * 2^17
    assert bits(g) == 16
    with pytest.raises(ValueError, match="cannot hold"):
        encode_spz(g, fractional_bits=17)
    g.means[0, 0] = 2.0**23
    with pytest.raises(ValueError, match="24-bit fixed point.*export the .ply"):
        encode_spz(g)
    # Sizes as stored: a log scale below the format's -10 is stored as -10 and asks for no
    # finer step than that (1/16 of e^-10 needs 19 bits), even one of -1000 (0 as a float).
    g = random_gaussians(n=50, degree=0, seed=8)
    for log_scale in (-10.0, -120.0, -1000.0):
        g.log_scales[:] = log_scale
        assert bits(g) == 19
    g.log_scales[:] = 1000.0  # a size beyond float's range: the reference's 12 bits, stored as e^5.94
    assert bits(g) == 12 and torch.allclose(decode_spz(encode_spz(g)).log_scales, torch.tensor(255 / 16 - 10))


def test_values_outside_the_format_range_are_clamped_and_logged(caplog):
    g = random_gaussians(n=20, degree=1, seed=8)
    g.log_scales[0] = -20.0  # below exp(-10)
    g.shN[1, 2, 0] = 3.0  # above the SH range (coefficient 2, x, keeps its sign on disk)
    g.shN[3, 1, 2] = 3.0  # and another coefficient's: one warning counts both
    g.sh0[2, 0, 0] = 10.0  # colour far above 1
    with caplog.at_level("WARNING"):
        back = decode_spz(encode_spz(g))
    assert torch.allclose(back.log_scales[0], torch.full((3,), -10.0))
    assert back.shN[1, 2, 0] == pytest.approx(127 / 128) and back.sh0[2, 0, 0] == pytest.approx(0.5 / 0.15)
    text = caplog.text
    assert "3 log scale values" in text and "2 SH values" in text and "1 colour" in text
    assert text.count("SH values") == 1
    # An opacity that rounds to 0 or 255 reads back as a finite logit.
    g.opacity_logits[:2] = torch.tensor([-40.0, 40.0])
    assert decode_spz(encode_spz(g)).opacity_logits[:2].tolist() == [-30.0, 30.0]


@pytest.mark.parametrize("version", [3, 4])
def test_a_3d_filtered_antialiased_set_is_stored_as_the_ply_stores_it(tmp_path, version):
    """Splats trained with Mip-Splatting's filters (a deep zoom): the .spz holds the filtered
    scales and opacities the .ply holds (what render draws), within the quantization, and says
    they are antialiased; our reader gives the mode back."""
    g = random_gaussians(n=300, degree=1, seed=11)
    g.filter_3d = torch.rand(300, generator=torch.Generator().manual_seed(1)) * 0.05
    g.rasterize_mode = "antialiased"
    g.save_ply(tmp_path / "g.ply")
    g.save_spz(tmp_path / "g.spz", version=version)
    ply, spz = Gaussians.load_ply(tmp_path / "g.ply"), Gaussians.load_spz(tmp_path / "g.spz")
    header = read_spz_header(tmp_path / "g.spz")
    assert header.antialiased and spz.rasterize_mode == "antialiased"
    assert_within_quantization(ply, spz, header.fractional_bits)
    filtered_scales, filtered_opacities = g.filtered()
    assert (spz.scales.log() - filtered_scales.log()).abs().max() <= LOG_SCALE_STEP + EPS
    assert (spz.opacities - filtered_opacities).abs().max() <= OPACITY_STEP + EPS
    # Classic splats carry no flag; the flag can still be forced either way.
    g.rasterize_mode = "classic"
    assert not _parse(encode_spz(g, version=version), "t")[0].antialiased
    assert _parse(encode_spz(g, version=version, antialiased=True), "t")[0].antialiased


def test_same_gaussians_same_bytes_and_version_4_is_smaller():
    g = random_gaussians(n=2000, seed=9)
    assert encode_spz(g) == encode_spz(g)
    v3, v4 = encode_spz(g, version=3), encode_spz(g, version=4)
    assert v4[:4] == b"NGSP" and v3[:2] == b"\x1f\x8b"
    assert len(v4) < len(v3)
    assert torch.equal(decode_spz(v3).means, decode_spz(v4).means)


def test_bad_inputs_are_named(tmp_path):
    g = random_gaussians(n=5, seed=10)
    with pytest.raises(TypeError, match="gaussians must be"):
        encode_spz(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="version must be one of"):
        encode_spz(g, version=2)
    with pytest.raises(ValueError, match="sh1_bits"):
        encode_spz(g, sh1_bits=0)
    with pytest.raises(FileNotFoundError):
        load_spz(tmp_path / "missing.spz")
    (tmp_path / "a.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\n")
    with pytest.raises(ValueError, match="not an spz file"):
        load_spz(tmp_path / "a.ply")
    data = encode_spz(g)
    (tmp_path / "cut.spz").write_bytes(gzip.compress(gzip.decompress(data)[:-10]))
    with pytest.raises(ValueError, match="truncated"):
        load_spz(tmp_path / "cut.spz")
    v4 = encode_spz(g, version=4)
    with pytest.raises(ValueError, match="stream"):
        decode_spz(v4[:-5])


def test_splat_config_export_setting():
    assert SplatConfig().export == ("ply",)
    assert SplatConfig(export="ply, spz").export == ("ply", "spz")
    with pytest.raises(ValueError, match="export must name"):
        SplatConfig(export=("obj",))
    with pytest.raises(ValueError, match="export must name"):
        SplatConfig(export=())
    with pytest.raises(ValueError, match="spz_version"):
        SplatConfig(spz_version=2)


@pytest.mark.slow
def test_cli_export_writes_the_spz_and_drops_files_no_longer_asked_for(tmp_path):
    """``--export ply spz`` writes both files holding the same Gaussians; rerun with
    ``--export spz --spz-version 4``, the .ply goes and the .spz is version 4 (two training
    iterations: the splats' quality is tested in test_splats_train.py)."""
    from dreamer.run import main

    out = tmp_path / "s"
    args = ["--models", "synthetic", "--views", "2", "--width", "64", "--height", "64", "-q", "--render-frames", "2",
            "--gs-iters", "2", "--out", str(out)]
    assert main([*args, "--export", "ply", "spz"]) == 0
    ply = Gaussians.load_ply(out / "gaussians.ply")
    spz = Gaussians.load_spz(out / "gaussians.spz")
    assert_within_quantization(ply, spz, read_spz_header(out / "gaussians.spz").fractional_bits)
    assert (out / "gaussians.spz").stat().st_size < (out / "gaussians.ply").stat().st_size / 4
    assert main([*args, "--export", "spz", "--spz-version", "4"]) == 0
    assert not (out / "gaussians.ply").exists() and read_spz_header(out / "gaussians.spz").version == 4
