"""DropConnect CPU twin in Numba: per-example masks regenerated tile by tile, never stored.

Same names and signatures as ``ref_numpy``. Example ``e``'s weight ``(k, n)`` is kept iff
``bits(e*K*N + k*N + n) >= threshold`` (salt 1). For a fixed ``(e, k)`` the ``n`` range is
contiguous in the flat index, so a tile of columns is one run of whole Philox blocks (plus at most
one ragged block at each end when ``N`` is not a multiple of 4), drawn by ``fill_words`` into an
L1-resident uint32 buffer and consumed at once through a view that starts at the tile's first
element (a view, not ``bits[lead + j]``: a possibly negative index defeats vectorization). Memory
beyond inputs and outputs is O(tile) per thread. 32-bit words also make the apply loop 2x
cheaper than 4-lane uint64 ones (0.11 vs 0.26 ns per element, measured side by side); so
``p == 1`` (threshold 2**32, which no uint32 reaches) is answered before the kernels run.

Philox dominates: B*K*N words per pass, one pass forward and one backward. On the 2-core box
(128x1024->1024 f32, one thread) the forward runs at ~0.8 ns and the backward at ~0.9 ns per
element, against 0.68 ns per word for ``fill_words`` alone in 1024-word calls.

Work is split over output tiles (fastreg's runtime, ``parallel_for``): the forward over
(example block, column tile), the backward over rows ``k`` of ``W`` (row ``k`` owns both
``dW[k, :]`` and ``dx[:, k]``, so one pass over the bits serves both gradients). Each output
element is summed by one task in a fixed order, so results do not depend on the thread count.
Each range of tiles runs in a serial ``nogil`` compiled function; the tile bodies stay separate
functions (inlined into one loop nest, the same loops ran 15-25% slower: 1 thread, forward 138
vs 118 ms at 128x1024->1024 f32).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fastreg._runtime import parallel_for

from ..philox.cpu_numba import fill_words

_U = np.uint64
_MASK32 = 0xFFFFFFFF
#: Columns per tile (a multiple of 4). Long runs amortize the per-call cost of ``fill_words``:
#: NT=1024/EB=4 ran 10-20% faster than NT=256/EB=8 (side by side, 128x1024->1024 f32); the
#: forward accumulator (EB x NT) and the bits (4 KiB) still fit in L1 (32 KiB per core) for float32.
NT = 1024
#: Examples per forward tile: each ``W[k, tile]`` read is reused by this many examples.
EB = 4


@njit(inline="always")
def _row_bits(bits, e, k, n0, nt, K, N, salt, offset, k0, k1):
    """The words of elements ``(e, k, n0:n0 + nt)``: a view into ``bits`` after filling it with
    the whole Philox blocks that cover them."""
    start = (e * K + k) * N + n0
    lead = start & 3
    fill_words(bits, start >> 2, (lead + nt + 3) >> 2, salt, offset, k0, k1)
    return bits[lead : lead + nt]


@njit(cache=True)
def _forward_tile(x, W, b, has_bias, y, k0, k1, salt, offset, threshold, scale, e0, e1, n0, nt):
    """``y[e0:e1, n0:n0 + nt]``: the examples of one tile share each ``W[k, tile]`` row read."""
    K = x.shape[1]
    N = W.shape[1]
    zero = y.dtype.type(0)
    acc = np.zeros((EB, NT), dtype=y.dtype)
    bits = np.empty(NT + 8, dtype=np.uint32)
    for k in range(K):
        w = W[k, n0 : n0 + nt]
        for e in range(e0, e1):
            kb = _row_bits(bits, e, k, n0, nt, K, N, salt, offset, k0, k1)
            xe = x[e, k]
            row = acc[e - e0]
            for j in range(nt):
                wj = w[j]  # loaded unconditionally: a blend, not a masked load
                row[j] += xe * (wj if kb[j] >= threshold else zero)
    for e in range(e0, e1):
        for j in range(nt):
            v = acc[e - e0, j] * scale
            y[e, n0 + j] = v + b[n0 + j] if has_bias else v


@njit(nogil=True, cache=True)
def _example_forward(x, W, b, has_bias, y, k0, k1, salt, offset, threshold, scale, t0, t1):
    """Output tiles ``[t0, t1)`` (example block, column tile) of the per-example forward."""
    B = x.shape[0]
    N = W.shape[1]
    n_nt = (N + NT - 1) // NT
    for tile in range(t0, t1):
        e0 = (tile // n_nt) * EB
        n0 = (tile % n_nt) * NT
        e1 = min(B, e0 + EB)
        nt = min(N, n0 + NT) - n0
        _forward_tile(x, W, b, has_bias, y, k0, k1, salt, offset, threshold, scale, e0, e1, n0, nt)


@njit(cache=True, fastmath={"reassoc"})
def _select_axpy_dot(kb, threshold, g, w, gw, xe):
    """Where ``kb[j] >= threshold`` (kept): ``gw[j] += xe * g[j]``, and return the sum of
    ``g[j] * w[j]`` over the kept ``j``, in one pass over the tile. Products are selected, not
    multiplied by a zeroed factor: a dropped NaN/Inf weight or input contributes nothing (as in
    the numpy twin), where ``0 * nan`` would poison the sum.

    ``reassoc`` (this function only, never in RNG code) lets LLVM split the sum into vector
    partial sums: 0.33 ns per element without it, ~0.05 with it. The order is then fixed by the
    compiled vector width: the same on one machine for every thread count, and within float
    rounding of the serial sum elsewhere."""
    zero = g.dtype.type(0)
    total = zero
    for j in range(g.size):
        keep = kb[j] >= threshold
        # Products first, then a select: a product inside the conditional expression becomes a
        # branch that LLVM leaves scalar (5.1 against 0.21 ns per element).
        gx = xe * g[j]
        gwj = g[j] * w[j]
        gw[j] = gw[j] + (gx if keep else zero)
        total = total + (gwj if keep else zero)
    return total


@njit(cache=True)
def _backward_row(dy, x, W, dx, dW, k0, k1, salt, offset, threshold, scale, k):
    """Row ``k``: ``dW[k, :]`` and ``dx[:, k]``, from one pass over the bits of ``(:, k, :)``."""
    B, K = x.shape
    N = W.shape[1]
    zero = W.dtype.type(0)
    bits = np.empty(NT + 8, dtype=np.uint32)
    gw = dW[k]
    gw[:] = zero
    for e in range(B):
        total = zero
        for n0 in range(0, N, NT):
            nt = min(N, n0 + NT) - n0
            kb = _row_bits(bits, e, k, n0, nt, K, N, salt, offset, k0, k1)
            total += _select_axpy_dot(
                kb, threshold, dy[e, n0 : n0 + nt], W[k, n0 : n0 + nt], gw[n0 : n0 + nt], x[e, k]
            )
        dx[e, k] = total * scale
    for n in range(N):
        gw[n] *= scale


@njit(nogil=True, cache=True)
def _example_backward(dy, x, W, dx, dW, k0, k1, salt, offset, threshold, scale, r0, r1):
    """Rows ``[r0, r1)`` of ``W``: their ``dW`` rows and ``dx`` columns."""
    for k in range(r0, r1):
        _backward_row(dy, x, W, dx, dW, k0, k1, salt, offset, threshold, scale, k)


def _stream(k0, k1, salt, offset, threshold):
    return _U(k0), _U(k1), _U(salt), _U(offset), np.uint32(threshold)


def example_forward(x, W, b, k0, k1, salt, offset, threshold, scale):
    """``y[e] = x[e] @ (W * M_e * scale) + b``; ``x`` (B, K), ``W`` (K, N), ``b`` (N,) or None.

    Computed as ``scale * sum_k x[e, k] * select(keep, W[k, n], 0)`` (+ ``b[n]``)."""
    B, N = x.shape[0], W.shape[1]
    if threshold > _MASK32:  # p == 1: every weight dropped
        y = np.zeros((B, N), dtype=x.dtype)
        return y + b if b is not None else y
    y = np.empty((B, N), dtype=x.dtype)
    bias = b if b is not None else np.zeros(0, dtype=x.dtype)
    stream = _stream(k0, k1, salt, offset, threshold)
    tiles = -(-B // EB) * -(-N // NT)
    parallel_for(_example_forward, tiles, x, W, bias, b is not None, y, *stream,
                 x.dtype.type(scale), work=B * x.shape[1] * N)
    return y


def example_backward(dy, x, W, k0, k1, salt, offset, threshold, scale):
    """``dx[e] = (W * M_e * scale) @ dy[e]``, ``dW = sum_e outer(x[e], dy[e]) * M_e * scale``."""
    if threshold > _MASK32:  # p == 1: every weight dropped
        return np.zeros_like(x), np.zeros_like(W)
    dx = np.empty_like(x)
    dW = np.empty_like(W)
    stream = _stream(k0, k1, salt, offset, threshold)
    parallel_for(_example_backward, x.shape[1], dy, x, W, dx, dW, *stream, x.dtype.type(scale),
                 work=x.shape[0] * x.size)
    return dx, dW


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(nogil=True, cache=True)
def _relu_gaussian_mean(mean, std, out, i0, i1):
    for i in range(i0, i1):
        mu = np.float64(mean[i])
        sigma = np.float64(std[i])
        if sigma > 0.0:
            z = mu / sigma
            out[i] = mu * 0.5 * math.erfc(-z * _SQRT_HALF) + sigma * _INV_SQRT_2PI * math.exp(
                -0.5 * z * z
            )
        else:
            out[i] = max(mu, 0.0)


def relu_gaussian_mean(mean, std):
    """``E[relu(u)]`` for ``u ~ N(mean, std**2)``: ``mean*Phi(mean/std) + std*phi(mean/std)``,
    and ``relu(mean)`` where ``std == 0``; evaluated in float64 and cast once."""
    out = np.empty(mean.shape, dtype=mean.dtype)
    flat = out.reshape(-1)
    parallel_for(_relu_gaussian_mean, flat.size, np.ascontiguousarray(mean).reshape(-1),
                 np.ascontiguousarray(std).reshape(-1), flat, work=8 * flat.size)
    return out


__all__ = ["example_backward", "example_forward", "relu_gaussian_mean"]
