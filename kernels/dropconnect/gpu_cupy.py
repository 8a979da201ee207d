"""DropConnect GPU twin (CuPy): per-example masks regenerated tile by tile in CUDA kernels.

Same names and signatures as ``ref_numpy``; the kernels are ``kernels/dropconnect/dropconnect.cu``
(its header explains the tiling). Example ``e``'s weight ``(k, n)`` is kept iff
``bits(e*K*N + k*N + n) >= threshold`` (salt 1); forward, ``dx`` and ``dW`` each regenerate the
bits of the tiles they visit, so no ``(B, K, N)`` array is ever allocated. Each output element is
summed by one thread in a fixed order: results do not depend on the launch configuration.
float16 computes in float32. The per-batch op needs nothing here (``fastreg.dropconnect`` masks
``W`` with the dropout kernel and multiplies with cuBLAS).
"""

from __future__ import annotations

import cupy
import numpy as np

from .. import cuda_launch as cl

__all__ = ["example_backward", "example_forward", "relu_gaussian_mean"]

_TILE = cl.constants("dropconnect")
TE, TK, TN = _TILE["FR_DC_TE"], _TILE["FR_DC_TK"], _TILE["FR_DC_TN"]
#: dW work items worth having before the batch is split into segments (about two waves of
#: blocks on a 132-SM H100). The split depends on the shapes only, never on the device, so the
#: summation order (and the bits of dW) is the same everywhere; the workspace holds at most
#: SPLIT_TARGET * TK * TN partial sums whatever B, K, N are.
SPLIT_TARGET = 256


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _stream(k0, k1, salt, offset, threshold) -> tuple:
    return cl.u32(k0), cl.u32(k1), cl.u32(salt), cl.u32(offset), cl.u64(threshold)


def dw_segments(B: int, K: int, N: int) -> tuple[int, int]:
    """``(segments, examples per segment)`` of the dW kernel: the batch is cut into whole example
    blocks when the ``(K, N)`` tiles alone are fewer than :data:`SPLIT_TARGET`."""
    tiles = _cdiv(K, TK) * _cdiv(N, TN)
    blocks = max(1, _cdiv(B, TE))
    wanted = max(1, min(blocks, SPLIT_TARGET // max(1, tiles)))
    seg_len = _cdiv(blocks, wanted) * TE
    return max(1, _cdiv(B, seg_len)), seg_len


def example_forward(x, W, b, k0, k1, salt, offset, threshold, scale):
    """``y[e] = x[e] @ (W * M_e * scale) + b``; ``x`` (B, K), ``W`` (K, N), ``b`` (N,) or None.

    Computed as ``scale * sum_k x[e, k] * select(keep, W[k, n], 0)`` (+ ``b[n]``), k ascending."""
    x, W = cupy.ascontiguousarray(x), cupy.ascontiguousarray(W)
    (B, K), N = x.shape, W.shape[1]
    y = cupy.empty((B, N), dtype=x.dtype)
    bias = y if b is None else cupy.ascontiguousarray(b)  # never read without a bias
    args = (x, W, bias, y, cl.u64(B), cl.u64(K), cl.u64(N), np.int32(b is not None),
            *_stream(k0, k1, salt, offset, threshold), cl.scalar(x.dtype, scale))
    kernel = cl.kernel("dropconnect", "dropconnect_forward", x.dtype)
    cl.launch_blocks(kernel, _cdiv(B, TE) * _cdiv(N, TN), args)
    return y


def example_backward(dy, x, W, k0, k1, salt, offset, threshold, scale):
    """``dx[e] = (W * M_e * scale) @ dy[e]``, ``dW = sum_e outer(x[e], dy[e]) * M_e * scale``."""
    dy, x, W = (cupy.ascontiguousarray(a) for a in (dy, x, W))
    (B, K), N = x.shape, W.shape[1]
    dtype = x.dtype
    stream = _stream(k0, k1, salt, offset, threshold)
    scale = cl.scalar(dtype, scale)
    dx = cupy.empty((B, K), dtype=dtype)
    args = (dy, W, dx, cl.u64(B), cl.u64(K), cl.u64(N), *stream, scale)
    cl.launch_blocks(cl.kernel("dropconnect", "dropconnect_dx", dtype), _cdiv(B, TE) * _cdiv(K, TK),
                     args)
    dW = cupy.empty((K, N), dtype=dtype)
    segments, seg_len = dw_segments(B, K, N)
    compute = cl.float_type(dtype).compute
    partial = cupy.empty((segments if segments > 1 else 0, K, N), dtype=compute)
    args = (dy, x, dW, partial, cl.u64(B), cl.u64(K), cl.u64(N), cl.u64(segments),
            cl.u64(seg_len), *stream, scale)
    tiles = _cdiv(K, TK) * _cdiv(N, TN)
    cl.launch_blocks(cl.kernel("dropconnect", "dropconnect_dw", dtype), segments * tiles, args)
    if segments > 1:
        args = (partial, dW, cl.u64(K * N), cl.u64(segments), scale)
        cl.launch(cl.kernel("dropconnect", "dropconnect_dwsum", dtype), K * N, args)
    return dx, dW


def relu_gaussian_mean(mean, std):
    """``E[relu(u)]`` for ``u ~ N(mean, std**2)``: ``mean*Phi(mean/std) + std*phi(mean/std)``,
    and ``relu(mean)`` where ``std == 0``; evaluated in float64 and cast once (float16 through
    float32)."""
    mean, std = cupy.ascontiguousarray(mean), cupy.ascontiguousarray(std)
    out = cupy.empty(mean.shape, dtype=mean.dtype)
    kernel = cl.kernel("dropconnect", "dropconnect_relumean", mean.dtype)
    cl.launch(kernel, mean.size, (mean, std, out, cl.u64(mean.size)))
    return out
