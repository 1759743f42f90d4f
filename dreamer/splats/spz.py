"""Niantic's compressed splat format, ``.spz``: writer and reader (our own, from the format's
public description), about a twentieth of the size of the 3DGS ``.ply``
(``bench/bench_spz.py`` measures it).

Versions
    3 (the default): one gzip stream holding a 16-byte header and the attributes, read by
    Niantic's reference library, splat-transform / SuperSplat, Spark and three.js's SPZLoader.
    4: a 32-byte plaintext header, a table of contents and one zstd frame per attribute
    (smaller; read by the reference library, splat-transform / SuperSplat, three.js since
    August 2026 and the PlayCanvas engine's spz parser, which reads nothing else; Spark 2.1
    does not read it). Writing and reading it needs the ``zstandard`` package. Version 2 files
    (rotations as three bytes) are read, not written.

Header (little endian): ``magic`` u32 = 0x5053474e ("NGSP"), ``version`` u32, ``numPoints``
u32, ``shDegree`` u8 (0-4), ``fractionalBits`` u8, ``flags`` u8 (0x1 antialiased, 0x2 vendor
extensions follow), then in version 3 one reserved byte; in version 4 ``numStreams`` u8,
``tocByteOffset`` u32 and 12 reserved bytes, the table (``compressedSize`` u64,
``uncompressedSize`` u64 per stream) at ``tocByteOffset`` and the streams after it, empty
ones (the SH of a degree-0 file) left out.

Attributes, each for every Gaussian in turn, in this order (the quantization error is the
largest difference a reader sees, as measured against splat-transform in
``tests/test_splats_transform.py``):

=============  ==========================================================  ========================
attribute      bytes per Gaussian and encoding                             largest error
=============  ==========================================================  ========================
positions      9: x y z as 24-bit signed fixed point, ``fractionalBits``    half a step, 2^-(f+1)
alphas         1: round(255 * opacity)                                      0.5/255 in opacity
colours        3: round(255 * (0.5 + 0.15 * f_dc)), f_dc in [-3.33, 3.33]  0.013 in f_dc
                                                                            (0.0037 in colour)
scales         3: round(16 * (log scale + 10)), log scale in [-10, 5.94]    1/32 in log scale
rotations      4 (v3, v4): smallest three of the unit quaternion, 10 bits   7e-4 per stored
               each (sign + 9-bit magnitude over [0, 1/sqrt 2]), the        component, 2.1e-3 for
               largest one's index in the top 2 bits; 3 (v2): x y z bytes   the rebuilt largest
SH (rest)      3 * (K-1): 128 + 128 * c in [-1, 1), rounded to a multiple   4/128 (degree 1),
               of 2^(8-bits): 5 bits for degree 1, 4 for degrees 2-4        8/128 (degrees 2-4)
=============  ==========================================================  ========================

Values outside an attribute's range are clamped to it (logged with their count). As in the
``.ply``, a 3D filter (``Gaussians.filter_3d``) is baked into the scales and opacities, so the file
holds what :meth:`~dreamer.splats.gaussians.Gaussians.render` draws; the header's antialiased
flag follows the Gaussians' ``rasterize_mode`` and the reader sets the mode from it.
``fractionalBits`` is chosen per file (the reference writer always uses 12, a step of 2.4e-4
units): the fewest bits, but at least 12, whose step is at most 1/16 of the small Gaussians'
size, so a deep-zoom scene's fine detail keeps its place (position error <= 1/32 of the size)
while finer bits, which compress badly, are not spent on a scene that does not need them; fewer
if the farthest coordinate would not fit in 24 bits.

Coordinates
    spz stores right-up-back axes (OpenGL / three.js). Our Gaussians and the 3DGS ``.ply`` are
    in OpenCV world axes (right-down-forward), which is how splat-transform reads a ``.ply``
    and how it asks an spz to be decoded. The writer maps (x, y, z) -> (x, -y, -z): positions,
    the rotations' y and z components and the sign of every SH basis function odd in y + z
    (``_SH_FLIP``); the reader maps back. So the ``.spz`` and the ``.ply`` hold the same scene
    once each is read by its reader, and a y-up viewer shows it upright.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dreamer.checks import check_int

__all__ = ["save_spz", "load_spz", "encode_spz", "decode_spz", "read_spz_header", "SpzHeader", "SPZ_VERSIONS"]

log = logging.getLogger(__name__)

MAGIC = 0x5053474E  # "NGSP"
SPZ_VERSIONS = (3, 4)
"""Versions the writer writes (the reader also reads 2)."""
COLOR_SCALE = 0.15
MAX_FRACTIONAL_BITS = 23  # 1 << bits stays far inside a 32-bit integer in every reader
REFERENCE_FRACTIONAL_BITS = 12  # what the reference writer always uses
MAX_POINTS = 10_000_000  # the reference reader refuses larger version 3 files
_FIXED_LIMIT = 2**23 - 1
_SQRT1_2 = math.sqrt(0.5)
_LOG_SCALE_MIN, _LOG_SCALE_MAX = -10.0, 255 / 16 - 10.0  # the range of a log scale byte
_LOGIT_LIMIT = 30.0  # an alpha of exactly 0 or 255 reads as an infinite logit: keep it finite
_FLAG_ANTIALIASED = 0x1
_FLAG_EXTENSIONS = 0x2
_HEADER_V3 = struct.Struct("<IIIBBBB")  # 16 bytes
_HEADER_V4 = struct.Struct("<IIIBBBBI12x")  # 32 bytes
_SH_DIM = {0: 0, 1: 3, 2: 8, 3: 15, 4: 24}  # coefficients per channel after the DC term

# Sign of each SH basis function after the DC term (3DGS / gsplat order) under
# (x, y, z) -> (x, -y, -z): (-1) ** (its degree in y + its degree in z).
_SH_FLIP = np.array([-1, -1, 1,                          # degree 1: y, z, x
                     -1, 1, 1, -1, 1,                    # degree 2: xy, yz, 3z2-1, xz, x2-y2
                     -1, 1, -1, -1, 1, -1, 1,            # degree 3
                     -1, 1, -1, 1, 1, -1, 1, -1, 1],     # degree 4
                    dtype=np.float64)
_AXIS_FLIP = np.array([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class SpzHeader:
    """What an spz header says: format ``version``, ``num_points``, ``sh_degree``,
    ``fractional_bits`` of the positions, ``antialiased`` flag, ``extensions`` flag."""

    version: int
    num_points: int
    sh_degree: int
    fractional_bits: int
    antialiased: bool = False
    extensions: bool = False


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise ImportError("spz version 4 is zstd-compressed and needs the 'zstandard' package: "
                          "pip install zstandard (or write version 3, gzip)") from None
    return zstandard


# -- encoding ------------------------------------------------------------------------------------
def _fractional_bits(positions: np.ndarray, log_scales: np.ndarray) -> int:
    """Fixed-point bits of the positions: a step of at most 1/16 of the small Gaussians' size
    (the 1st percentile of each one's middle standard deviation: a flat splat's thin axis does
    not count), never coarser than the reference writer's 12 bits, as long as the farthest
    coordinate fits in 24 bits. Sizes are taken as the file stores them (log scales clamped to
    the format's range): a finer step would be spent on a size no reader sees, and a log scale
    of -1000 (a size of 0 in floating point) would ask for infinitely many bits."""
    extent = float(np.abs(positions).max())
    if extent > _FIXED_LIMIT:
        raise ValueError(f"spz stores positions as 24-bit fixed point (|coordinate| <= {_FIXED_LIMIT}); this "
                         f"scene reaches {extent:.4g}: scale it down or export the .ply")
    fit = MAX_FRACTIONAL_BITS
    while fit > 0 and np.rint(extent * 2.0**fit) > _FIXED_LIMIT:
        fit -= 1
    stored = np.clip(np.median(log_scales, axis=1), _LOG_SCALE_MIN, _LOG_SCALE_MAX)
    small = float(np.exp(np.quantile(stored, 0.01)))
    need = math.ceil(math.log2(16.0 / small))
    return min(fit, max(REFERENCE_FRACTIONAL_BITS, need))


def _clamped_bytes(values: np.ndarray, name: str) -> np.ndarray:
    """Round to [0, 255] as uint8, logging how many values fell outside the attribute's range."""
    q = np.rint(values)
    out = int(((q < 0) | (q > 255)).sum())
    if out:
        log.warning("spz: %d %s values lie outside the format's range and were clamped", out, name)
    return np.clip(q, 0, 255).astype(np.uint8)


def _pack_positions(p: np.ndarray, bits: int) -> np.ndarray:
    fixed = np.rint(p * 2.0**bits).astype(np.int64).reshape(-1)  # [N*3], |fixed| <= 2^23 - 1
    u = (fixed & 0xFFFFFF).astype(np.uint32)  # two's complement in 24 bits
    return np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], 1).astype(np.uint8).reshape(-1)


def _pack_smallest_three(q: np.ndarray) -> np.ndarray:
    """Unit quaternions [N,4] in x y z w order -> [N*4] bytes (u32 little endian each)."""
    n = len(q)
    largest = np.abs(q).argmax(1)
    # q and -q are one rotation: make the dropped (largest) component positive.
    q = q * np.where(q[np.arange(n), largest] < 0, -1.0, 1.0)[:, None]
    word = largest.astype(np.uint32)
    for i in range(4):  # ascending index: the first stored component ends up in the highest bits
        keep = largest != i
        sign = (q[:, i] < 0).astype(np.uint32)
        mag = np.minimum(np.floor(511.0 * np.abs(q[:, i]) / _SQRT1_2 + 0.5), 511).astype(np.uint32)
        word = np.where(keep, (word << 10) | (sign << 9) | mag, word)
    return word.astype("<u4").view(np.uint8)


def _quantize_sh(c: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """SH coefficients [N, K-1, 3] -> bytes, keeping ``bits[k]`` bits of coefficient k (one
    warning for all the values out of range)."""
    step = (2.0 ** (8 - bits))[:, None]
    q = np.rint((c * 128.0 + 128.0) / step) * step  # 128 (a zero coefficient) is always a bucket centre
    return _clamped_bytes(q, "SH")


def encode_spz(gaussians, *, version: int = 3, sh1_bits: int = 5, sh_rest_bits: int = 4,
               fractional_bits: int | None = None, antialiased: bool | None = None) -> bytes:
    """The bytes of an spz file holding ``gaussians`` (see :func:`save_spz`)."""
    from dreamer.splats.gaussians import Gaussians

    if not isinstance(gaussians, Gaussians):
        raise TypeError(f"gaussians must be a dreamer.splats.Gaussians, got {type(gaussians).__name__}")
    if version not in SPZ_VERSIONS:
        raise ValueError(f"version must be one of {SPZ_VERSIONS} (3: gzip, the widest read; 4: zstd), got {version!r}")
    for name, bits in (("sh1_bits", sh1_bits), ("sh_rest_bits", sh_rest_bits)):
        check_int(bits, f"{name} (bits kept of each 8-bit SH coefficient)", min=1, max=8)
    g = gaussians.detach()
    g.__post_init__()  # parameters may have been changed in place since construction
    n = len(g)
    if version == 3 and n > MAX_POINTS:
        raise ValueError(f"the reference spz reader refuses version 3 files of more than {MAX_POINTS} Gaussians; "
                         f"this set has {n}: write version 4")

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy()

    pos = arr(g.means) * _AXIS_FLIP
    log_scales, logits = (arr(t) for t in g.baked_filter())  # the 3D filter baked in, as in the .ply
    if fractional_bits is None:
        fractional_bits = _fractional_bits(pos, log_scales)
    else:
        fractional_bits = check_int(fractional_bits, "fractional_bits (None: automatic)", min=0,
                                    max=MAX_FRACTIONAL_BITS)
    if np.rint(np.abs(pos).max() * 2.0**fractional_bits) > _FIXED_LIMIT:
        raise ValueError(f"fractional_bits={fractional_bits} cannot hold a coordinate of {np.abs(pos).max():.4g} "
                         f"in 24 bits; use fewer bits or None (automatic)")

    q = arr(g.quats)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    q_xyzw = np.concatenate([q[:, 1:] * _AXIS_FLIP, q[:, :1]], 1)
    degree = g.sh_degree
    shn = arr(g.shN)  # [N, K-1, 3]: coefficient-major, channel inner, as spz stores it
    sh_bytes = b""
    if degree > 0:
        shn = shn * _SH_FLIP[: shn.shape[1], None]
        bits = np.full(shn.shape[1], sh_rest_bits)
        bits[:3] = sh1_bits
        sh_bytes = _quantize_sh(shn, bits).tobytes()
    streams = [
        _pack_positions(pos, fractional_bits).tobytes(),
        _clamped_bytes(127.5 * (1.0 + np.tanh(0.5 * logits)), "opacity").tobytes(),  # 255 sigmoid
        _clamped_bytes(arr(g.sh0[:, 0]) * (COLOR_SCALE * 255.0) + 127.5, "colour (SH DC)").tobytes(),
        _clamped_bytes((log_scales - _LOG_SCALE_MIN) * 16.0, "log scale").tobytes(),
        _pack_smallest_three(q_xyzw).tobytes(),
        sh_bytes,
    ]
    if antialiased is None:
        antialiased = g.rasterize_mode == "antialiased"
    flags = _FLAG_ANTIALIASED if antialiased else 0
    if version == 3:
        header = _HEADER_V3.pack(MAGIC, 3, n, degree, fractional_bits, flags, 0)
        # Level 6 (the reference writer's): level 9 is twice as slow for 0.1 % less. mtime=0:
        # the same Gaussians give the same bytes.
        return gzip.compress(header + b"".join(streams), compresslevel=6, mtime=0)
    zstd = _zstd().ZstdCompressor(level=12)  # the reference writer's level
    frames = [(zstd.compress(s), len(s)) for s in streams if s]
    header = _HEADER_V4.pack(MAGIC, 4, n, degree, fractional_bits, flags, len(frames), _HEADER_V4.size)
    toc = b"".join(struct.pack("<QQ", len(c), size) for c, size in frames)
    return header + toc + b"".join(c for c, _ in frames)


def save_spz(gaussians, path: str | Path, *, version: int = 3, sh1_bits: int = 5, sh_rest_bits: int = 4,
             fractional_bits: int | None = None, antialiased: bool | None = None) -> None:
    """Write ``gaussians`` as an spz file, atomically (layout and errors: the module docstring).

    Args:
        gaussians: a :class:`~dreamer.splats.gaussians.Gaussians` of SH degree 0-4.
        path: the file to write (conventionally ``*.spz``).
        version: 3 (gzip; the default, read by every spz reader we know but the PlayCanvas
            engine's) or 4 (zstd; needs the ``zstandard`` package).
        sh1_bits, sh_rest_bits: bits kept of each 8-bit SH coefficient of degree 1 and of
            degrees 2-4 (the reference writer's 5 and 4 by default; 8 keeps all, a bigger file).
            Readers need not know them.
        fractional_bits: fixed-point bits of the positions; None chooses them from the
            Gaussians' sizes and the scene's extent (the module docstring).
        antialiased: the header's flag for splats trained with antialiasing (Mip-Splatting's 2D
            filter, gsplat's ``rasterize_mode="antialiased"``), which tells a viewer to draw them
            so; None: set when the Gaussians' ``rasterize_mode`` is ``"antialiased"``.
    """
    from dreamer.io import atomic_path

    data = encode_spz(gaussians, version=version, sh1_bits=sh1_bits, sh_rest_bits=sh_rest_bits,
                      fractional_bits=fractional_bits, antialiased=antialiased)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


# -- decoding ------------------------------------------------------------------------------------
def _parse(data: bytes, where: str) -> tuple[SpzHeader, list[bytes]]:
    """The header and the six attribute byte strings (SH empty at degree 0)."""
    if data[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(data)
        except (OSError, EOFError, ValueError) as e:
            raise ValueError(f"{where}: a damaged gzip stream ({e})") from None
        if len(raw) < _HEADER_V3.size:
            raise ValueError(f"{where}: {len(raw)} bytes after gunzip, shorter than the 16-byte spz header")
        magic, version, n, degree, bits, flags, _ = _HEADER_V3.unpack_from(raw)
        body, offset = raw, _HEADER_V3.size
        if magic != MAGIC:
            raise ValueError(f"{where}: not an spz file (gzip, but magic {magic:#x}, expected {MAGIC:#x} 'NGSP')")
        if version not in (2, 3):
            raise ValueError(f"{where}: spz version {version} in a gzip stream; this reader reads 2 and 3 (gzip) "
                             f"and 4 (zstd)")
    elif data[:4] == struct.pack("<I", MAGIC):
        if len(data) < _HEADER_V4.size:
            raise ValueError(f"{where}: {len(data)} bytes, shorter than the 32-byte spz version 4 header")
        magic, version, n, degree, bits, flags, n_streams, toc_at = _HEADER_V4.unpack_from(data)
        if version != 4:
            raise ValueError(f"{where}: spz version {version} without gzip; this reader reads 2 and 3 (gzip) "
                             f"and 4 (zstd)")
        body = None
    else:
        raise ValueError(f"{where}: not an spz file (neither a gzip stream nor the 'NGSP' magic)")
    header = SpzHeader(version, n, degree, bits, bool(flags & _FLAG_ANTIALIASED), bool(flags & _FLAG_EXTENSIONS))
    if degree not in _SH_DIM:
        raise ValueError(f"{where}: SH degree {degree} in the header; spz allows 0-4")
    if n == 0:
        raise ValueError(f"{where}: the spz holds no Gaussians (0 points)")
    if header.extensions and version < 4:
        # Extension records sit between the header and the data and can change how SH decode.
        raise ValueError(f"{where}: the file carries vendor extensions (flag 0x2), which this reader does not parse")
    sizes = [9 * n, n, 3 * n, 3 * n, (4 if version >= 3 else 3) * n, 3 * _SH_DIM[degree] * n]
    if body is not None:
        need = offset + sum(sizes)
        if len(body) < need:
            raise ValueError(f"{where}: truncated: {len(body)} bytes after gunzip, {need} expected for {n} Gaussians "
                             f"of SH degree {degree}")
        parts, at = [], offset
        for s in sizes:
            parts.append(body[at:at + s])
            at += s
        return header, parts
    # Version 4: extensions (if any) lie before the table and are skipped with it.
    if header.extensions:
        log.warning("%s: skipping the file's vendor extensions; an SH quantization extension would change "
                    "the SH values", where)
    wanted = [s for s in sizes if s]
    if n_streams != len(wanted):
        raise ValueError(f"{where}: {n_streams} streams in the table, {len(wanted)} expected for SH degree {degree}")
    if toc_at < _HEADER_V4.size or toc_at + 16 * n_streams > len(data):
        raise ValueError(f"{where}: table of contents at byte {toc_at} lies outside the file ({len(data)} bytes)")
    dctx = _zstd().ZstdDecompressor()
    parts, at = [], toc_at + 16 * n_streams
    for i, expected in enumerate(wanted):
        csize, usize = struct.unpack_from("<QQ", data, toc_at + 16 * i)
        if usize != expected or at + csize > len(data):
            raise ValueError(f"{where}: stream {i} has {usize} bytes ({expected} expected) or runs past the file end")
        parts.append(dctx.decompress(data[at:at + csize], max_output_size=usize))
        if len(parts[-1]) != usize:
            raise ValueError(f"{where}: stream {i} decompressed to {len(parts[-1])} bytes, {usize} expected")
        at += csize
    if not sizes[-1]:
        parts.append(b"")
    return header, parts


def _unpack_smallest_three(b: np.ndarray) -> np.ndarray:
    """[N*4] bytes -> unit quaternions [N,4] in x y z w order."""
    word = b.view("<u4").astype(np.uint32)
    largest = (word >> 30).astype(np.int64)
    q = np.zeros((len(word), 4))
    for i in (3, 2, 1, 0):  # the last stored component sits in the lowest bits
        keep = largest != i
        mag = (word & 0x1FF).astype(np.float64) * (_SQRT1_2 / 511.0)
        val = np.where((word >> 9) & 1, -mag, mag)
        q[:, i] = np.where(keep, val, 0.0)
        word = np.where(keep, word >> 10, word)
    rest = (q * q).sum(1)
    q[np.arange(len(q)), largest] = np.sqrt(np.maximum(0.0, 1.0 - rest))
    return q


def decode_spz(data: bytes, *, where: str = "spz data", device: torch.device | str | None = None):
    """Gaussians from the bytes of an spz file (see :func:`load_spz`)."""
    from dreamer.splats.gaussians import Gaussians

    header, (pos_b, alpha_b, color_b, scale_b, rot_b, sh_b) = _parse(bytes(data), where)
    n = header.num_points
    u = np.frombuffer(pos_b, np.uint8).reshape(n * 3, 3).astype(np.int64)
    fixed = u[:, 0] | (u[:, 1] << 8) | (u[:, 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = fixed.reshape(n, 3) / 2.0**header.fractional_bits * _AXIS_FLIP
    alpha = np.frombuffer(alpha_b, np.uint8).astype(np.float64) / 255.0
    with np.errstate(divide="ignore"):
        logits = np.clip(np.log(alpha) - np.log1p(-alpha), -_LOGIT_LIMIT, _LOGIT_LIMIT)
    sh0 = (np.frombuffer(color_b, np.uint8).reshape(n, 3) / 255.0 - 0.5) / COLOR_SCALE
    log_scales = np.frombuffer(scale_b, np.uint8).reshape(n, 3) / 16.0 + _LOG_SCALE_MIN
    rb = np.frombuffer(rot_b, np.uint8)
    if header.version >= 3:
        q = _unpack_smallest_three(rb)
    else:  # version 2: x y z bytes, w >= 0 rebuilt
        xyz = rb.reshape(n, 3) / 127.5 - 1.0
        q = np.concatenate([xyz, np.sqrt(np.maximum(0.0, 1.0 - (xyz * xyz).sum(1)))[:, None]], 1)
    quats = np.concatenate([q[:, 3:], q[:, :3] * _AXIS_FLIP], 1)  # back to w x y z, our axes
    k1 = _SH_DIM[header.sh_degree]
    shn = (np.frombuffer(sh_b, np.uint8).reshape(n, k1, 3) - 128.0) / 128.0 * _SH_FLIP[:k1, None]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    g = Gaussians(means=t(means), quats=t(quats), log_scales=t(log_scales), opacity_logits=t(logits),
                  sh0=t(sh0[:, None, :]), shN=t(shn), rasterize_mode="antialiased" if header.antialiased else "classic")
    return g if device is None else g.to(device)


def load_spz(path: str | Path, device: torch.device | str | None = None):
    """Read an spz file of version 2, 3 or 4 into :class:`~dreamer.splats.gaussians.Gaussians`
    (float32, our OpenCV world axes, the inverse of :func:`save_spz` up to its quantization).

    An alpha of exactly 0 or 255 becomes an opacity logit of -30 / +30; the antialiased flag
    gives ``rasterize_mode="antialiased"``. Raises
    FileNotFoundError for a missing file and ValueError for one that is not an spz, is
    truncated, has another version, or carries vendor extensions in a version 2/3 file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return decode_spz(path.read_bytes(), where=str(path), device=device)


def read_spz_header(path: str | Path) -> SpzHeader:
    """The header of an spz file (a version 3 file is gunzipped to read it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read(_HEADER_V4.size)
    if data[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as f:
            raw = f.read(_HEADER_V3.size)
        if len(raw) < _HEADER_V3.size:
            raise ValueError(f"{path}: shorter than the 16-byte spz header after gunzip")
        magic, version, n, degree, bits, flags, _ = _HEADER_V3.unpack(raw)
    elif len(data) >= _HEADER_V4.size:
        magic, version, n, degree, bits, flags, _, _ = _HEADER_V4.unpack_from(data)
    else:
        magic = None
    if magic != MAGIC:
        raise ValueError(f"{path}: not an spz file (no 'NGSP' magic)")
    return SpzHeader(version, n, degree, bits, bool(flags & _FLAG_ANTIALIASED), bool(flags & _FLAG_EXTENSIONS))
