"""Fused dense GPU twin (CuPy): cuBLAS GEMMs and fused CUDA epilogues with Philox inside.

Same names and signatures as ``ref_numpy``; the kernels are ``kernels/dense/dense.cu``. Forward:
``y = x @ W`` by cuBLAS (``cupy.matmul``), then one in-place epilogue pass (bias, activation,
the salt bits of each element's flat index ``r*N + c``, select, scale; ``z`` on request).
Backward: one fused pass writes ``dz`` and per-row-chunk float64 column sums of it, a tiny
kernel adds the chunks in order into ``db``, and cuBLAS gives ``dx = dz @ W.T``, ``dW = x.T @ dz``.
The row chunks come from the shapes only (never the device or the launch), so every result is
independent of the launch configuration. float16 computes in float32.
"""

from __future__ import annotations

import cupy
import numpy as np

from .. import cuda_launch as cl
from . import ACTIVATIONS

__all__ = ["dense_backward", "dense_forward"]

#: Backward work items (row chunk x 4 columns) worth having: ~64k threads fill an H100 several
#: times over, and the float64 partial sums of ``db`` then stay under ~2 MiB whatever M is.
BACKWARD_ITEMS = 1 << 16


def _stream(k0, k1, salt, offset, threshold) -> tuple:
    return cl.u32(k0), cl.u32(k1), cl.u32(salt), cl.u32(offset), cl.u64(threshold)


def backward_chunks(m: int, n: int) -> tuple[int, int]:
    """``(chunks, rows per chunk)`` of the backward pass for an ``(m, n)`` output."""
    quads = max(1, -(-n // 4))
    wanted = max(1, min(m, BACKWARD_ITEMS // quads))
    rows = max(1, -(-m // wanted))
    return -(-m // rows), rows


def dense_forward(x, W, b, y, z, activation, k0, k1, salt, offset, threshold, scale) -> None:
    """``y = where(keep, act(x @ W + b) * scale, +0.0)``; ``z = x @ W + b`` when ``z`` is given.

    ``x`` (M, K), ``W`` (K, N), ``b`` (N,) or None; ``y`` and ``z`` (M, N) C-contiguous outputs.
    """
    cl.check_contiguous(y=y, z=z)
    m, n = y.shape
    if x.shape[1] == 0:
        y.fill(0)  # an empty sum (cuBLAS is not asked for K == 0)
    else:
        cupy.matmul(x, W, out=y)
    if m == 0 or n == 0:
        return
    bias = y if b is None else cupy.ascontiguousarray(b)  # never read without a bias
    args = (y, y if z is None else z, bias, cl.u64(m * n), cl.u64(n), np.int32(b is not None),
            np.int32(z is not None), np.int32(ACTIVATIONS.index(activation)),
            *_stream(k0, k1, salt, offset, threshold), cl.scalar(y.dtype, scale))
    cl.launch(cl.kernel("dense", "dense_forward", y.dtype), (m * n + 3) >> 2, args)


def dense_backward(dy, x, W, y, z, activation, k0, k1, salt, offset, threshold, scale):
    """``(dx, dW, db)`` of :func:`dense_forward`: ``dz = where(keep, dy*scale*act', 0)``,
    ``dx = dz @ W.T``, ``dW = x.T @ dz``, ``db = dz.sum(0)``. ``act'`` comes from
    ``y / scale`` (kept elements hold ``act(z)*scale``) or, for gelu, from ``z``."""
    m, n = dy.shape
    dtype = dy.dtype
    dz = cupy.empty((m, n), dtype=dtype)
    db = cupy.zeros(n, dtype=dtype)
    if m and n:
        dy, y = cupy.ascontiguousarray(dy), cupy.ascontiguousarray(y)
        z = y if z is None else cupy.ascontiguousarray(z)  # read for gelu only
        chunks, rows = backward_chunks(m, n)
        partial = cupy.empty((chunks, n), dtype=np.float64)
        inverse = dtype.type(1 / scale if scale else 0)  # p == 1: nothing kept, nothing divided
        args = (dy, y, z, dz, partial, cl.u64(m), cl.u64(n), cl.u64(rows),
                np.int32(ACTIVATIONS.index(activation)), *_stream(k0, k1, salt, offset, threshold),
                cl.scalar(dtype, scale), cl.scalar(dtype, inverse))
        cl.launch(cl.kernel("dense", "dense_backward", dtype), chunks * (-(-n // 4)), args)
        cl.launch(cl.kernel("dense", "dense_db", dtype), n,
                  (partial, db, cl.u64(n), cl.u64(chunks)))
    dx = cupy.matmul(dz, W.T) if n else cupy.zeros((m, W.shape[0]), dtype=dtype)
    dW = cupy.matmul(x.T, dz) if m else cupy.zeros(W.shape, dtype=dtype)
    return cupy.ascontiguousarray(dx), cupy.ascontiguousarray(dW), db
