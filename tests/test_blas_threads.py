"""The direct solves of alignment.kernels run their LAPACK calls on one OpenBLAS thread."""

import numpy as np
import pytest
import torch

import alignment.kernels as kernels


def test_one_blas_thread_sets_one_thread_and_restores_the_count():
    setters = kernels._openblas_thread_setters()
    if not setters:
        pytest.skip("no OpenBLAS with a per-thread setting is loaded (another BLAS build)")
    previous = [fn(3) for fn in setters]  # a known count to come back to
    try:
        with kernels.one_blas_thread():
            inside = [fn(1) for fn in setters]  # each returns the count it replaces
        after = [fn(3) for fn in setters]
    finally:
        for fn, n in zip(setters, previous):
            fn(n)
    assert inside == [1] * len(setters)
    assert after == [3] * len(setters)


def test_the_band_solve_on_one_thread_solves_the_system():
    # A screened 5-point Laplacian on a 40 x 12 strip: a band of 12 (the band Cholesky path).
    H, W = 40, 12
    idx = torch.arange(H * W).reshape(H, W)
    rows = torch.cat([idx[:, :-1].reshape(-1), idx[:, 1:].reshape(-1), idx[:-1].reshape(-1), idx[1:].reshape(-1)])
    cols = torch.cat([idx[:, 1:].reshape(-1), idx[:, :-1].reshape(-1), idx[1:].reshape(-1), idx[:-1].reshape(-1)])
    vals = -torch.ones(len(rows), dtype=torch.float64)
    diag = torch.full((H * W,), 4.1, dtype=torch.float64)
    b = torch.from_numpy(np.random.default_rng(0).standard_normal(H * W))
    x = kernels.sparse_direct_solve(rows, cols, vals, diag, b)
    A = torch.diag(diag)
    A[rows, cols] = vals
    assert torch.allclose(A @ x, b, rtol=0, atol=1e-12)
