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


def _as_bits(a: np.ndarray) -> np.ndarray:
    """``a`` (C-contiguous, (N, P, H, W, C)) as unsigned words of its width, (N, P, H, W*C)."""
    n, p, h, w, c = a.shape
    return a.view(_BITS[a.dtype.itemsize]).reshape(n, p, h, w * c)


def _fill_bits(fill, dtype) -> np.generic:
    return np.array(fill, dtype=dtype).view(_BITS[np.dtype(dtype).itemsize])[()]


@njit(nogil=True, cache=True)
def _set(row, fill):
    for t in range(row.size):
        row[t] = fill


@njit(nogil=True, cache=True)
def _copy(dst, src):
    # Slices indexed from 0: provably non-negative indices, so no wraparound branch.
    for t in range(dst.size):
        dst[t] = src[t]


@njit(nogil=True, cache=True)
def _copy_mirrored(dst, src, channels):
    # dst pixel j <- src pixel (npix - 1 - j), channels kept in order
    npix = dst.size // channels
    for j in range(npix):
        s = (npix - 1 - j) * channels
        for c in range(channels):
            dst[j * channels + c] = src[s + c]


@njit(nogil=True, cache=True)
def _move_body(x, out, table, fill, channels, u0, u1):
    _, planes, h, k = x.shape
    w = k // channels
    for u in range(u0, u1):
        n = u // h
        i = u - n * h
        vflip, hflip, dy, dx = table[n, 0], table[n, 1], table[n, 2], table[n, 3]
        source = i - dy
        # output columns [j0, j1) read source columns [j0 - dx, j1 - dx) (mirrored: their
        # images under j -> W-1-j, which is again one contiguous run)
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
            row = out[n, p, i]
            _set(row[: j0 * channels], fill)
            _set(row[j1 * channels :], fill)
            if j1 > j0:
                src = x[n, p, source, s0 * channels : (s0 + j1 - j0) * channels]
                dst = row[j0 * channels : j1 * channels]
                if hflip:
                    _copy_mirrored(dst, src, channels)
                else:
                    _copy(dst, src)
            if cut:
                _set(row[c0:c1], fill)


def move(x: np.ndarray, out: np.ndarray, table: np.ndarray, fill) -> None:
    """``out = cutout(translate(flip(x)))`` with the per-sample ``table`` (MOVE_COLUMNS:
    vflip, hflip, dy, dx, row0, row1, col0, col1)."""
    n, _, h, _, c = x.shape
    if x.size == 0:
        return
    args = (_as_bits(x), _as_bits(out), table, _fill_bits(fill, x.dtype), c)
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
def _nearest_body(x, out, table, fill, channels, u0, u1):
    _, planes, h, k = x.shape
    w = k // channels
    for u in range(u0, u1):
        n = u // h
        i = u - n * h
        for j in range(w):
            qy, qx = _source_point(table, n, i, j)
            yf, xf = np.floor(qy + 0.5), np.floor(qx + 0.5)
            inside = 0.0 <= yf <= h - 1 and 0.0 <= xf <= w - 1
            for p in range(planes):
                dst = out[n, p, i, j * channels : (j + 1) * channels]
                if inside:
                    s = int(xf) * channels
                    _copy(dst, x[n, p, int(yf), s : s + channels])
                else:
                    _set(dst, fill)


@njit(nogil=True, cache=True)
def _bilinear_body(x, out, table, fillv, round_u8, channels, u0, u1):
    # fillv: the fill as a 1-element array of the compute type; the scratch arrays below take
    # that type, so every weight is cast once on store and every blend is in the compute type.
    _, planes, h, k = x.shape
    w = k // channels
    ct = fillv.dtype
    wy = np.empty(2, ct)
    wx = np.empty(2, ct)
    v = np.empty(4, ct)
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
            for p in range(planes):
                for c in range(channels):
                    for a in range(2):
                        for b in range(2):
                            yy, xx = y0f + a, x0f + b
                            if wy[a] == 0 or wx[b] == 0:  # weight 0: not read
                                v[2 * a + b] = 0
                            elif 0.0 <= yy <= h - 1 and 0.0 <= xx <= w - 1:
                                v[2 * a + b] = x[n, p, int(yy), int(xx) * channels + c]
                            else:
                                v[2 * a + b] = fillv[0]
                    top = wx[0] * v[0] + wx[1] * v[1]
                    bottom = wx[0] * v[2] + wx[1] * v[3]
                    blend = wy[0] * top + wy[1] * bottom
                    if round_u8:
                        out[n, p, i, j * channels + c] = min(max(np.rint(blend), 0.0), 255.0)
                    else:
                        out[n, p, i, j * channels + c] = blend


def _rows(a: np.ndarray) -> np.ndarray:
    n, p, h, w, c = a.shape
    return a.reshape(n, p, h, w * c)


def affine(x: np.ndarray, out: np.ndarray, table: np.ndarray, fill, nearest: bool) -> None:
    """``out[n, i, j]`` sampled at ``q`` (AFFINE_COLUMNS: A00, A01, b0, A10, A11, b1), as in
    ``ref_numpy.affine``: nearest moves bits, bilinear blends in the compute type."""
    n, _, h, _, c = x.shape
    if x.size == 0:
        return
    if nearest:
        args = (_as_bits(x), _as_bits(out), table, _fill_bits(fill, x.dtype), c)
        parallel_for(_nearest_body, n * h, *args, work=x.size)
        return
    ctype = compute_dtype(x.dtype)
    fillv = np.array([fill], dtype=ctype)
    # 16-bit storage: widen (exact), blend in float32, round once (NumPy/ml_dtypes cast: RNE).
    wide = x.dtype.itemsize == 2
    source = x.astype(ctype) if wide else x
    target = np.empty(x.shape, ctype) if wide else out
    args = (_rows(source), _rows(target), table, fillv, x.dtype == np.uint8, c)
    parallel_for(_bilinear_body, n * h, *args, work=4 * x.size)
    if wide:
        out[...] = target.astype(x.dtype)
