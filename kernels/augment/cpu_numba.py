"""Augmentation CPU twin in Numba: one pass over the batch per op, per-sample tables from the host.

Same names and signatures as ``ref_numpy``. A work unit is one output row ``(n, i)`` of every
plane of a sample: each unit reads the rows its table names and writes only its own row, so the
result never depends on how units are split between threads.

Flip, translate and cutout move bits: the twin views every dtype as the unsigned integer of its
width (float16 and bfloat16 are moved as uint16; NaN payloads survive), and a row is a fill, one
contiguous copy (or a reversed one for a mirrored sample) and a fill, then the cutout columns.
The bilinear blend computes in float32 (float64 for float64 data); 16-bit data is widened to
float32 first and rounded once at the end (both exact steps apart from that final rounding).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .params import compute_dtype

try:  # fastreg's own threading runtime (issue 14); until it lands, the units run serially
    from ..._runtime import parallel_for
except ImportError:  # pragma: no cover - depends on the merge order

    def parallel_for(body, nunits, *args, work):
        body(*args, 0, nunits)


__all__ = ["affine", "move"]

_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _flat_bits(a: np.ndarray) -> np.ndarray:
    """``a`` (C-contiguous) as a flat array of the unsigned words of its width."""
    return a.reshape(-1).view(_BITS[a.dtype.itemsize])


def _shape(a: np.ndarray) -> np.ndarray:
    """``(N, P, H, W, C)`` as an int64 array (one argument for every body)."""
    return np.array(a.shape, dtype=np.int64)


def _fill_bits(fill, dtype) -> np.generic:
    return np.array(fill, dtype=dtype).view(_BITS[np.dtype(dtype).itemsize])[()]


# Bodies index flat arrays with uint64 offsets: Numba adds a negative-index wraparound branch to
# every signed index, and a slice per row costs a view (and its reference count) per run; both
# made the first version of this pass 12x the copy time (1.85 ms against 0.15 for a 256x32x32x3
# float32 batch on one core), the flat form runs at the copy's speed.
_U = np.uint64
_ONE = np.uint64(1)


@njit(inline="always")
def _set_run(a, start, count, fill):
    for t in range(count):
        a[start + t] = fill


@njit(inline="always")
def _copy_run(dst, d0, src, s0, count):
    for t in range(count):
        dst[d0 + t] = src[s0 + t]


@njit(inline="always")
def _copy_mirrored(dst, d0, src, s0, npix, channels):
    # dst pixel j <- src pixel npix - 1 - j, channels kept in order
    for j in range(npix):
        s = s0 + (npix - _ONE - j) * channels
        d = d0 + j * channels
        for c in range(channels):
            dst[d + c] = src[s + c]


@njit(nogil=True, cache=True)
def _move_body(x, out, shape, table, fill, u0, u1):
    planes, h, w, channels = shape[1], shape[2], shape[3], shape[4]
    k = w * channels
    for u in range(u0, u1):
        n = u // h
        i = u - n * h
        vflip, hflip, dy, dx = table[n, 0], table[n, 1], table[n, 2], table[n, 3]
        source = i - dy
        # output columns [j0, j1) read source columns [j0 - dx, j1 - dx), or their images
        # under j -> W-1-j for a mirrored sample: one contiguous run either way
        j0, j1 = 0, 0
        if 0 <= source < h:
            j0 = min(max(0, dx), w)
            j1 = max(min(w, w + dx), j0)
        if vflip:
            source = h - 1 - source
        s0 = (w - j1 + dx) if hflip else (j0 - dx)
        cut = table[n, 4] <= i < table[n, 5]
        c0, c1 = table[n, 6] * channels, table[n, 7] * channels
        for p in range(planes):
            row = _U(((n * planes + p) * h + i) * k)
            _set_run(out, row, _U(j0 * channels), fill)
            _set_run(out, row + _U(j1 * channels), _U((w - j1) * channels), fill)
            if j1 > j0:
                src = _U(((n * planes + p) * h + source) * k + s0 * channels)
                dst = row + _U(j0 * channels)
                if hflip:
                    _copy_mirrored(out, dst, x, src, _U(j1 - j0), _U(channels))
                else:
                    _copy_run(out, dst, x, src, _U((j1 - j0) * channels))
            if cut:
                _set_run(out, row + _U(c0), _U(c1 - c0), fill)


def move(x: np.ndarray, out: np.ndarray, table: np.ndarray, fill) -> None:
    """``out = cutout(translate(flip(x)))`` with the per-sample ``table`` (MOVE_COLUMNS:
    vflip, hflip, dy, dx, row0, row1, col0, col1)."""
    n, _, h, _, _ = x.shape
    if x.size == 0:
        return
    args = (_flat_bits(x), _flat_bits(out), _shape(x), table, _fill_bits(fill, x.dtype))
    parallel_for(_move_body, n * h, *args, work=x.size)


@njit(inline="always")
def _source_point(table, n, i, j):
    # q evaluated in float64 in the SPEC's order; no fastmath, so LLVM neither fuses nor
    # reassociates.
    fi, fj = np.float64(i), np.float64(j)
    qy = table[n, 0] * fi + table[n, 1] * fj + table[n, 2]
    qx = table[n, 3] * fi + table[n, 4] * fj + table[n, 5]
    return qy, qx


@njit(nogil=True, cache=True)
def _nearest_body(x, out, shape, table, fill, u0, u1):
    planes, h, w, channels = shape[1], shape[2], shape[3], shape[4]
    plane = h * w * channels
    for u in range(u0, u1):
        n = u // h
        i = u - n * h
        for j in range(w):
            qy, qx = _source_point(table, n, i, j)
            yf, xf = np.floor(qy + 0.5), np.floor(qx + 0.5)
            inside = 0.0 <= yf <= h - 1 and 0.0 <= xf <= w - 1
            src = (int(yf) * w + int(xf)) * channels if inside else 0
            for p in range(planes):
                base = (n * planes + p) * plane
                dst = _U(base + (i * w + j) * channels)
                if inside:
                    _copy_run(out, dst, x, _U(base + src), _U(channels))
                else:
                    _set_run(out, dst, _U(channels), fill)


@njit(nogil=True, cache=True)
def _bilinear_body(x, out, shape, table, fillv, round_u8, u0, u1):
    # fillv: the fill as a 1-element array of the compute type; the scratch arrays below take
    # that type, so every weight is cast once on store and every blend is in the compute type.
    planes, h, w, channels = shape[1], shape[2], shape[3], shape[4]
    plane = h * w * channels
    ct = fillv.dtype
    wy = np.empty(2, ct)
    wx = np.empty(2, ct)
    v = np.empty(4, ct)
    offsets = np.zeros(4, np.int64)
    state = np.zeros(4, np.int64)  # 0: weight 0 (not read), 1: inside, 2: outside (fill)
    one = np.ones(1, ct)
    for u in range(u0, u1):
        n = u // h
        i = u - n * h
        for j in range(w):
            qy, qx = _source_point(table, n, i, j)
            y0f, x0f = np.floor(qy), np.floor(qx)
            wy[1] = qy - y0f
            wx[1] = qx - x0f
            wy[0] = one[0] - wy[1]
            wx[0] = one[0] - wx[1]
            for a in range(2):
                for b in range(2):
                    yy, xx = y0f + a, x0f + b
                    if wy[a] == 0 or wx[b] == 0:
                        state[2 * a + b] = 0
                    elif 0.0 <= yy <= h - 1 and 0.0 <= xx <= w - 1:
                        state[2 * a + b] = 1
                        offsets[2 * a + b] = (int(yy) * w + int(xx)) * channels
                    else:
                        state[2 * a + b] = 2
            for p in range(planes):
                base = (n * planes + p) * plane
                dst = base + (i * w + j) * channels
                for c in range(channels):
                    for t in range(4):
                        if state[t] == 1:
                            v[t] = x[_U(base + offsets[t] + c)]
                        elif state[t] == 2:
                            v[t] = fillv[0]
                        else:
                            v[t] = 0
                    top = wx[0] * v[0] + wx[1] * v[1]
                    bottom = wx[0] * v[2] + wx[1] * v[3]
                    blend = wy[0] * top + wy[1] * bottom
                    if round_u8:
                        out[_U(dst + c)] = min(max(np.rint(blend), 0.0), 255.0)
                    else:
                        out[_U(dst + c)] = blend


def affine(x: np.ndarray, out: np.ndarray, table: np.ndarray, fill, nearest: bool) -> None:
    """``out[n, i, j]`` sampled at ``q`` (AFFINE_COLUMNS: A00, A01, b0, A10, A11, b1), as in
    ``ref_numpy.affine``: nearest moves bits, bilinear blends in the compute type."""
    n, _, h, _, _ = x.shape
    if x.size == 0:
        return
    if nearest:
        args = (_flat_bits(x), _flat_bits(out), _shape(x), table, _fill_bits(fill, x.dtype))
        parallel_for(_nearest_body, n * h, *args, work=x.size)
        return
    ctype = compute_dtype(x.dtype)
    fillv = np.array([fill], dtype=ctype)
    # 16-bit storage: widen (exact), blend in float32, round once (NumPy/ml_dtypes cast: RNE).
    wide = x.dtype.itemsize == 2
    source = x.astype(ctype) if wide else x
    target = np.empty(x.shape, ctype) if wide else out
    args = (source.reshape(-1), target.reshape(-1), _shape(x), table, fillv, x.dtype == np.uint8)
    parallel_for(_bilinear_body, n * h, *args, work=4 * x.size)
    if wide:
        out[...] = target.astype(x.dtype)
