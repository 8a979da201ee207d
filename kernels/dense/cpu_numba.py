"""Fused dense CPU twin: BLAS GEMM through NumPy, then one Numba epilogue with Philox inside.

Same names and signatures as ``ref_numpy``. Element ``(r, c)`` of the ``(M, N)`` output draws
``bits(r*N + c)``; every parallel task owns whole Philox tiles of that flat index (or whole rows,
in backward), so results never depend on the thread count, the task split or the row block.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fastreg._runtime import parallel_for

from ..philox.cpu_numba import fill_words
from . import ACTIVATIONS

#: The twin interface (the same in every backend's dense twin).
__all__ = ["dense_backward", "dense_forward"]

_U = np.uint64
_MASK32 = 0xFFFFFFFF
#: Philox blocks per tile: the words of a tile (4*TILE uint32, 8 KiB) stay in L1.
TILE = 512
#: Outputs smaller than this run their pass on the calling thread: single-threaded the pass
#: costs ~1.6 ns/element (MNIST's 128x500 layer: 0.10 ms), while handing a job to fastreg's pool
#: costs ~20-40 us (waking a blocked worker; Numba's OpenMP launch, measured when this was set,
#: cost ~32 us, and up to 7 ms right after a BLAS call that used both cores).
SERIAL_ELEMENTS = 1 << 17
#: Backward: at most this many row chunks, each with a float64 partial bias gradient of N entries;
#: a fixed split (not one per thread) keeps ``db`` independent of the thread count.
MAX_CHUNKS = 32
#: Backward: fewest elements per row chunk, so a chunk amortizes its hand-off.
MIN_CHUNK_ELEMENTS = 1 << 14

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# Activations take (v, zero, one) so that float32 stays float32 without typed literals.
@njit(inline="always")
def _identity(v, zero, one):
    return v


@njit(inline="always")
def _relu(v, zero, one):
    return zero if v <= zero else v  # NaN passes through, like torch.relu


@njit(inline="always")
def _tanh(v, zero, one):
    return np.tanh(v)


@njit(inline="always")
def _sigmoid(v, zero, one):
    return one / (one + np.exp(-v))


@njit(inline="always")
def _gelu(v, zero, one):
    w = np.float64(v)
    return 0.5 * w * (1.0 + math.erf(w * _SQRT_HALF))


# Derivatives take (a, z, zero, one) with a = act(z): all but gelu read only a.
@njit(inline="always")
def _d_identity(a, z, zero, one):
    return one


@njit(inline="always")
def _d_relu(a, z, zero, one):
    return one if a > zero else zero


@njit(inline="always")
def _d_tanh(a, z, zero, one):
    return one - a * a


@njit(inline="always")
def _d_sigmoid(a, z, zero, one):
    return a * (one - a)


@njit(inline="always")
def _d_gelu(a, z, zero, one):
    w = np.float64(z)
    return 0.5 * (1.0 + math.erf(w * _SQRT_HALF)) + w * np.exp(-0.5 * w * w) * _INV_SQRT_2PI


def _forward_span_of(act):
    """The activation-and-select loop specialized to ``act`` (a closure, so no function pointer
    is passed at run time and the callers stay cacheable). Bias and ``z`` are separate loops:
    one branch-free loop per job over slice views (``range(view.size)``) is what LLVM vectorizes:
    written as one loop with invariant ``if``s and ``a[lo + k]`` indexing it stayed scalar and
    mispredicted on the random select, 7-9 ns/element instead of under 1."""

    @njit
    def span(yv, bv, dropping, threshold, scale, zero, one):
        if dropping:
            for k in range(yv.size):
                # A select, not a multiply: dropped NaN/Inf give exactly +0.0.
                yv[k] = act(yv[k], zero, one) * scale if bv[k] >= threshold else zero
        else:
            # scale is 1 here (p == 0), but a run-time 1: ``yv[k] = relu(yv[k])`` stores back
            # the loaded value on one arm, LLVM turns that into a conditional store and the
            # loop stays scalar (0.47 vs 0.08 ns/element); the exact multiply keeps a select.
            for k in range(yv.size):
                yv[k] = act(yv[k], zero, one) * scale

    return span


_fwd_identity, _fwd_relu, _fwd_tanh, _fwd_sigmoid, _fwd_gelu = (
    _forward_span_of(act) for act in (_identity, _relu, _tanh, _sigmoid, _gelu)
)


@njit
def _epilogue_tile(tile, first, last, yf, zf, b, has_bias, want_z, code, s, n, k0, k1, salt,
                   offset, threshold, scale):
    """Philox tile ``tile`` (blocks ``first + tile*TILE`` on) of the epilogue, all jobs in L1."""
    zero = yf.dtype.type(0)
    one = yf.dtype.type(1)
    dropping = threshold != np.uint32(0)
    bits = np.empty(4 * TILE, dtype=np.uint32)
    fb = first + tile * TILE
    count = min(last + 1, fb + TILE) - fb
    if dropping:
        fill_words(bits, fb, count, salt, offset, k0, k1)
    lo = max(s, 4 * fb)
    hi = min(s + yf.size, 4 * (fb + count))
    if has_bias:
        i = lo
        while i < hi:  # row by row, so the column index is a loop counter
            c0 = i % n
            stop = min(hi, i + n - c0)
            row = yf[i - s : stop - s]
            cols = b[c0 : c0 + stop - i]
            for c in range(row.size):
                row[c] += cols[c]
            i = stop
    if want_z:
        zf[lo - s : hi - s] = yf[lo - s : hi - s]
    args = (yf[lo - s : hi - s], bits[lo - 4 * fb : hi - 4 * fb], dropping, threshold, scale,
            zero, one)
    if code == 0:
        _fwd_identity(*args)
    elif code == 1:
        _fwd_relu(*args)
    elif code == 2:
        _fwd_tanh(*args)
    elif code == 3:
        _fwd_sigmoid(*args)
    else:
        _fwd_gelu(*args)


@njit(nogil=True, cache=True)
def _epilogue_tiles(yf, zf, b, has_bias, want_z, code, s, n, k0, k1, salt, offset, threshold,
                    scale, first, last, t0, t1):
    """The epilogue over tiles ``[t0, t1)`` of ``yf`` (flat, its first element has flat index
    ``s``; its Philox blocks are ``first..last``)."""
    for tile in range(t0, t1):
        _epilogue_tile(tile, first, last, yf, zf, b, has_bias, want_z, code, s, n, k0, k1, salt,
                       offset, threshold, scale)


def dense_forward(x, W, b, y, z, activation, k0, k1, salt, offset, threshold, scale) -> None:
    """``y = where(keep, act(x @ W + b) * scale, +0.0)``; ``z = x @ W + b`` when ``z`` is given.

    ``x`` (M, K), ``W`` (K, N), ``b`` (N,) or None; ``y`` and ``z`` (M, N) C-contiguous outputs.
    """
    m, n = y.shape
    # One GEMM over the whole batch, then one epilogue. Row blocks (GEMM of a block, epilogue
    # while it is hot) measured no faster on the 2-core box, whose 32 MiB L3 holds a
    # 4096x1024 float32 output: single-threaded, 1.06x the bare GEMM unblocked against 1.07x,
    # 1.10x, 1.22x with 2**20, 2**18, 2**16-element blocks; with 2 threads under load every
    # hand-off between the BLAS and Numba thread pools cost milliseconds (blocks: 6-27x slower).
    np.matmul(x, W, out=y)
    dense_epilogue(y, z, b, activation, k0, k1, salt, offset, threshold, scale)


def dense_epilogue(y, z, b, activation, k0, k1, salt, offset, threshold, scale) -> None:
    """In place on ``y`` (M, N), C-contiguous, holding ``x @ W``: ``z = y + b`` when ``z`` is
    given, then ``y = where(keep, act(y + b) * scale, +0.0)``. The epilogue of
    :func:`dense_forward` on its own, for callers that do the GEMM themselves (``fastreg.torch``
    runs it in PyTorch's thread pool)."""
    m, n = y.shape
    if m == 0 or n == 0:
        return
    drop_all = threshold > _MASK32  # p == 1: no 32-bit word reaches 2**32
    zf = z.reshape(-1) if z is not None else y[0, :0]
    first, last = 0, (m * n - 1) >> 2
    # uint32 words and threshold: the select compares 8 words per AVX2 instruction, and
    # fill_words draws them 25% faster than 64-bit tiles (0.64 against 0.88 ns per word).
    parallel_for(_epilogue_tiles, (last - first + TILE) // TILE, y.reshape(-1), zf,
                 b if b is not None else y[0, :0], b is not None, z is not None,
                 ACTIVATIONS.index(activation), 0, n,
                 _U(k0), _U(k1), _U(salt), _U(offset), np.uint32(0 if drop_all else threshold),
                 scale, first, last, work=m * n, serial_work=SERIAL_ELEMENTS)
    if drop_all:
        y.fill(0)


def _backward_span_of(deriv):
    """The gradient-of-pre-activation loop specialized to ``deriv`` (see
    :func:`_forward_span_of`): ``dz[j] = dy[j]*scale*deriv`` if kept else ``+0.0``."""

    @njit
    def span(dyv, yv, zv, dzv, bv, dropping, threshold, scale, inverse, zero, one):
        if dropping:
            for k in range(dzv.size):
                g = dyv[k] * scale * deriv(yv[k] * inverse, zv[k], zero, one)
                dzv[k] = g if bv[k] >= threshold else zero
        else:
            for k in range(dzv.size):
                dzv[k] = dyv[k] * scale * deriv(yv[k] * inverse, zv[k], zero, one)

    return span


_bwd_identity, _bwd_relu, _bwd_tanh, _bwd_sigmoid, _bwd_gelu = (
    _backward_span_of(deriv) for deriv in (_d_identity, _d_relu, _d_tanh, _d_sigmoid, _d_gelu)
)


@njit
def _grad_chunk(chunk, dyf, yf, zf, dzf, partial, code, n, rows, k0, k1, salt, offset,
                threshold, scale):
    """Rows ``[chunk*rows, (chunk+1)*rows)``: their ``dz``, and its column sums into
    ``partial[chunk]`` (float64)."""
    m = dyf.size // n
    zero = dyf.dtype.type(0)
    one = dyf.dtype.type(1)
    inverse = dyf.dtype.type(1 / scale) if scale != zero else zero
    dropping = threshold != np.uint32(0)
    acc = partial[chunk]
    s = chunk * rows * n
    e = min(m, (chunk + 1) * rows) * n
    bits = np.empty(4 * TILE, dtype=np.uint32)
    fb = s >> 2
    last = (e - 1) >> 2
    while fb <= last:
        count = min(last + 1, fb + TILE) - fb
        if dropping:
            fill_words(bits, fb, count, salt, offset, k0, k1)
        lo = max(s, 4 * fb)
        hi = min(e, 4 * (fb + count))
        args = (dyf[lo:hi], yf[lo:hi], zf[lo:hi], dzf[lo:hi], bits[lo - 4 * fb : hi - 4 * fb],
                dropping, threshold, scale, inverse, zero, one)
        if code == 0:
            _bwd_identity(*args)
        elif code == 1:
            _bwd_relu(*args)
        elif code == 2:
            _bwd_tanh(*args)
        elif code == 3:
            _bwd_sigmoid(*args)
        else:
            _bwd_gelu(*args)
        i = lo
        while i < hi:  # the bias gradient, row by row while dz is in L1
            c0 = i % n
            stop = min(hi, i + n - c0)
            row = dzf[i:stop]
            cols = acc[c0 : c0 + stop - i]
            for c in range(row.size):
                cols[c] += row[c]
            i = stop
        fb += count


@njit(nogil=True, cache=True)
def _grad_preact(dyf, yf, zf, dzf, partial, code, n, rows, k0, k1, salt, offset, threshold,
                 scale, c0, c1):
    """``dz`` and the column sums of ``dz`` per chunk of rows, for chunks ``[c0, c1)``: the
    chunks are fixed by the shape, so the summed ``db`` never depends on the thread count."""
    for chunk in range(c0, c1):
        _grad_chunk(chunk, dyf, yf, zf, dzf, partial, code, n, rows, k0, k1, salt, offset,
                    threshold, scale)


def dense_backward(dy, x, W, y, z, activation, k0, k1, salt, offset, threshold, scale):
    """``(dx, dW, db)`` of :func:`dense_forward`: ``dz = where(keep, dy*scale*act', 0)``,
    ``dx = dz @ W.T``, ``dW = x.T @ dz``, ``db = dz.sum(0)``. ``act'`` comes from
    ``y / scale`` (kept elements hold ``act(z)*scale``) or, for gelu, from ``z``.

    Allocates ``dz`` (M, N) and a float64 ``(<= MAX_CHUNKS, N)`` partial sum, nothing else of
    the output's size besides the returned gradients."""
    dz, db = dense_preact_grad(dy, y, z, activation, k0, k1, salt, offset, threshold, scale)
    return dz @ W.T, x.T @ dz, db


def dense_preact_grad(dy, y, z, activation, k0, k1, salt, offset, threshold, scale):
    """``(dz, db)`` of :func:`dense_backward`: ``dz = where(keep, dy*scale*act', 0)`` (a new
    C-contiguous (M, N) array) and ``db = dz.sum(0)`` (summed in float64 in a fixed chunk
    order), without the GEMMs, for callers that do those themselves."""
    m, n = dy.shape
    dz = np.empty_like(dy, order="C")
    if threshold > _MASK32:  # p == 1: every element was dropped, so every gradient is zero
        dz.fill(0)
    if m == 0 or n == 0 or threshold > _MASK32:
        return dz, np.zeros(n, dtype=dy.dtype)
    rows = max(-(-m // MAX_CHUNKS), -(-MIN_CHUNK_ELEMENTS // n))
    partial = np.zeros((-(-m // rows), n), dtype=np.float64)
    dyf = np.ascontiguousarray(dy).reshape(-1)
    yf = np.ascontiguousarray(y).reshape(-1)
    zf = np.ascontiguousarray(z).reshape(-1) if z is not None else yf  # unread unless gelu
    parallel_for(_grad_preact, partial.shape[0], dyf, yf, zf, dz.reshape(-1), partial,
                 ACTIVATIONS.index(activation), n, rows, _U(k0), _U(k1), _U(salt), _U(offset),
                 np.uint32(threshold), scale, work=m * n, serial_work=SERIAL_ELEMENTS)
    return dz, partial.sum(axis=0).astype(dy.dtype)
