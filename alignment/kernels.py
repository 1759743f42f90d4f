"""The few grid kernels of the alignment that have a faster CPU implementation than torch's.

Everything in :mod:`alignment` works on torch tensors on the inputs' device. Three kernels are
each one call into compiled code on a CPU, where torch's equivalents are several times slower
(a selection of the median: ``np.partition`` is O(n), ``torch.median`` is 4x slower at 200k
values; the exact Euclidean distance transform and the labelling of connected regions, which
torch does not have). On the CPU they read the tensor's memory in place (no copy, no device
transfer); on any other device, or with :data:`CPU_KERNELS` False, they run in torch, with the
same results (tests/test_alignment_torch.py checks the two against each other):

* :func:`median`: the true median (mean of the two middle values for an even count);
* :func:`distance_to`: the exact Euclidean distance of every pixel to the nearest True pixel
  of a mask (scipy's ``distance_transform_edt`` of the complement);
* :func:`regions_touching`: the pixels of a mask's 4-connected regions that contain a seed;
* :func:`sparse_direct_solve`: a sparse SPD system of up to :data:`SPARSE_DIRECT_MAX` unknowns
  factorised directly, on the CPU only (None elsewhere: the caller iterates in torch): a band
  Cholesky factor (LAPACK) when its unknowns can be ordered with a narrow band (a strip of hole
  pixels), else a sparse LU (SuperLU), each on one BLAS thread (:func:`one_blas_thread`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools

import numpy as np
import scipy.linalg as sl
import scipy.ndimage as ndi
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from scipy.sparse.csgraph import reverse_cuthill_mckee
import torch
from torch import Tensor

__all__ = ["CPU_KERNELS", "median", "distance_to", "regions_touching", "sparse_direct_solve", "one_blas_thread"]

CPU_KERNELS = True
"""Use numpy/scipy for CPU tensors (False: torch everywhere, as on a GPU)."""

# Sparse systems up to this many unknowns are factorised directly on the CPU (SuperLU: about
# 2 ms for a few thousand grid unknowns, where a torch multigrid-CG pays its many small ops).
SPARSE_DIRECT_MAX = 20_000
# A system whose unknowns can be ordered so that no coupling spans more than this many places is
# factorised as a band (cost n * band^2, no fill-in bookkeeping): measured on 2D grid systems,
# one thread, it beats SuperLU up to a band of about 64-96 (96 x 46 pixels: 9.5 ms against 19 ms;
# 96 x 96: 59 ms against 33 ms).
_BAND_MAX = 64
# Rows of the distance transform's second pass done at once (bounds its [rows, H, W] temporary).
_EDT_ROWS = 16


@functools.lru_cache(maxsize=1)
def _openblas_thread_setters() -> tuple:
    """``openblas_set_num_threads_local`` of every OpenBLAS loaded in this process (scipy's and
    numpy's wheels each bring one), found in ``/proc/self/maps``; empty where there is none (another
    BLAS, an OpenBLAS older than 0.3.27, not Linux)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.rsplit("/", 1)[-1].lower()})
    except OSError:
        return ()
    setters = []
    for path in paths:
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        setters.append(fn)
    return tuple(setters)


@contextlib.contextmanager
def one_blas_thread():
    """Run the body's LAPACK/BLAS calls (scipy's, numpy's OpenBLAS) on the calling thread alone.

    The direct solves here are small: OpenBLAS would hand their level-3 blocks to its worker
    threads, which then busy-wait for the next call; measured on a loaded 2-core machine, a band
    Cholesky of 4,400 unknowns (band 48) took 598 ms of CPU (1.3 s wall) with OpenBLAS's default
    threads and 6 ms on one. The setting is per thread (OpenBLAS >= 0.3.27) and restored after."""
    setters = _openblas_thread_setters()
    previous = [fn(1) for fn in setters]
    try:
        yield
    finally:
        for fn, n in zip(setters, previous):
            fn(n)


def _on_cpu(x: Tensor) -> bool:
    return CPU_KERNELS and x.device.type == "cpu"


def median(x: Tensor, *, overwrite: bool = False) -> float:
    """The true median of the values of ``x`` (any shape, at least one value) as a float.
    ``overwrite``: ``x`` is a temporary that may be reordered in place (saves a copy on the CPU)."""
    n = x.numel()
    if _on_cpu(x):
        a = x.detach().reshape(-1).numpy()
        hi = n // 2
        if overwrite:
            a.partition(hi)
            part = a
        else:
            part = np.partition(a, hi)
        upper = float(part[hi])
        return upper if n % 2 else 0.5 * (float(part[:hi].max()) + upper)
    flat = x.detach().reshape(-1)
    lower = flat.median()  # torch's median is the lower middle value
    if n % 2:
        return float(lower)
    above = flat > lower
    # The upper middle value is the lower one again when enough values equal it.
    if int(n - above.sum()) > n // 2:
        return float(lower)
    return 0.5 * (float(lower) + float(flat[above].min()))


def lower_median(x: Tensor) -> float:
    """torch's median of ``x`` (any shape, at least one value), the lower of the two middle values,
    as a float: the same value (an order statistic), on the CPU by a partial sort in numpy (6x
    faster than torch's at 260k values). NaN if a value is NaN or there is none, as torch's.
    bfloat16, which numpy has no type for, stays in torch."""
    if not _on_cpu(x) or x.numel() == 0 or x.dtype == torch.bfloat16:
        return float(x.detach().median())
    a = x.detach().reshape(-1).numpy()
    k = (a.size - 1) // 2
    part = np.partition(a, k)
    return float("nan") if np.isnan(part[k:]).any() else float(part[k])


def distance_to(mask: Tensor) -> Tensor:
    """Euclidean distance [H,W] (float64, on ``mask``'s device) from each pixel centre to the
    nearest True pixel of ``mask`` [H,W] bool (0 on it). ``mask`` must have a True pixel.

    On the CPU scipy's transform runs on the bounding box of the False pixels grown by a pixel
    only, with the same result: every pixel outside that box is True, and the nearest True pixel
    of a pixel inside, clamped onto the box, is a True pixel of the box no farther from it."""
    if _on_cpu(mask):
        far = ~mask.numpy()
        rows, cols = np.flatnonzero(far.any(1)), np.flatnonzero(far.any(0))
        out = np.zeros(far.shape)
        if rows.size:
            box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
            out[box] = ndi.distance_transform_edt(far[box])
        return torch.from_numpy(out)
    H, W = mask.shape
    big = float(H + W)  # farther than any pixel
    # Pass 1, along rows: distance to the nearest True pixel of the same row.
    x = torch.arange(W, device=mask.device, dtype=torch.float64).expand(H, W)
    left = torch.where(mask, x, -big).cummax(1).values
    right = -torch.where(mask, -x, -3 * big).flip(1).cummax(1).values.flip(1)
    g2 = torch.minimum(x - left, right - x).square()
    # Pass 2, along columns: d^2(y, x) = min over y' of g^2(y', x) + (y - y')^2 (exact in float64).
    y = torch.arange(H, device=mask.device, dtype=torch.float64)
    d2 = torch.empty(H, W, dtype=torch.float64, device=mask.device)
    for start in range(0, H, _EDT_ROWS):
        rows = y[start:start + _EDT_ROWS]
        d2[start:start + _EDT_ROWS] = (g2[None] + (rows[:, None] - y[None]).square()[..., None]).amin(1)
    return d2.sqrt()


def regions_touching(mask: Tensor, seeds: Tensor) -> Tensor:
    """bool [H,W]: the pixels of ``mask``'s 4-connected regions that hold a pixel of ``seeds``
    (bool [H,W], inside ``mask``)."""
    if _on_cpu(mask):
        labels, _ = ndi.label(mask.numpy())
        lab = torch.from_numpy(labels)
        touching = torch.unique(lab[seeds])
        touching = touching[touching > 0]
        return torch.isin(lab, touching) & mask
    H, W = mask.shape
    ys, xs = torch.nonzero(mask, as_tuple=True)
    n = len(ys)
    out = torch.zeros_like(mask)
    if n == 0:
        return out
    index = torch.full((H, W), -1, dtype=torch.long, device=mask.device)
    index[ys, xs] = torch.arange(n, device=mask.device)
    a = torch.cat([index[:, :-1][mask[:, :-1] & mask[:, 1:]], index[:-1, :][mask[:-1, :] & mask[1:, :]]])
    b = torch.cat([index[:, 1:][mask[:, :-1] & mask[:, 1:]], index[1:, :][mask[:-1, :] & mask[1:, :]]])
    # Label propagation by hooking roots onto the smaller neighbouring root, then pointer jumping.
    parent = torch.arange(n, device=mask.device)
    while True:
        pa, pb = parent[a], parent[b]
        hooked = parent.scatter_reduce(0, torch.maximum(pa, pb), torch.minimum(pa, pb), reduce="amin")
        while True:
            jumped = hooked[hooked]
            if torch.equal(jumped, hooked):
                break
            hooked = jumped
        if torch.equal(hooked, parent):
            break
        parent = hooked
    reached = torch.zeros(n, dtype=torch.bool, device=mask.device)
    reached[parent[index[seeds & mask]]] = True
    out[ys, xs] = reached[parent]
    return out


def sparse_direct_solve(rows: Tensor, cols: Tensor, vals: Tensor, diag: Tensor, b: Tensor) -> Tensor | None:
    """x with A x = b, A the [n,n] symmetric matrix of off-diagonal entries (rows, cols, vals;
    both triangles) and diagonal ``diag``, by a direct factorisation; None when ``b`` is not a
    CPU tensor (or with :data:`CPU_KERNELS` False) or n exceeds :data:`SPARSE_DIRECT_MAX`.

    The unknowns are taken in the given order or in reverse Cuthill-McKee order, whichever has
    the narrower band; a band of at most :data:`_BAND_MAX` is factorised by a band Cholesky
    (a matrix that is not positive definite falls back to the LU), a wider one by SuperLU."""
    n = len(b)
    if not _on_cpu(b) or n > SPARSE_DIRECT_MAX:
        return None
    at = np.arange(n)
    r, c, v, d = rows.numpy(), cols.numpy(), vals.numpy(), diag.numpy()
    A = sp.csc_matrix((np.concatenate([v, d]), (np.concatenate([r, at]), np.concatenate([c, at]))), shape=(n, n))
    if len(r):
        band = int(np.abs(r - c).max())
        order = reverse_cuthill_mckee(A, symmetric_mode=True)
        place = np.empty(n, dtype=np.int64)
        place[order] = at
        if int(np.abs(place[r] - place[c]).max()) >= band:
            order, place = at, at
        else:
            r, c = place[r], place[c]
            band = int(np.abs(r - c).max())
        if band <= _BAND_MAX:
            upper = np.zeros((band + 1, n))  # LAPACK's upper band storage: upper[band + i - j, j] = A[i, j]
            upper[band, place] = d
            keep = r < c
            np.add.at(upper, (band + r[keep] - c[keep], c[keep]), v[keep])
            try:
                with one_blas_thread():
                    x = sl.solveh_banded(upper, b.numpy()[order], check_finite=False)
            except np.linalg.LinAlgError:
                pass
            else:
                return torch.from_numpy(x[place])
    with one_blas_thread():
        return torch.from_numpy(sla.splu(A, permc_spec="MMD_AT_PLUS_A").solve(b.numpy()))
