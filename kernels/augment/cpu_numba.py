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
from numba import njit, types
from numba.extending import overload

from fastreg._runtime import parallel_for

from .params import compute_dtype

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


# Loop counters stay int64 (a range over uint64 did not vectorize: 4x slower mirrored rows);
# only the offsets are uint64.
@njit(inline="always")
def _set_run(a, start, count, fill):
    for t in range(count):
        a[start + _U(t)] = fill


@njit(inline="always")
def _copy_run(dst, d0, src, s0, count):
    for t in range(count):
        dst[d0 + _U(t)] = src[s0 + _U(t)]


@njit(inline="always")
def _copy_mirrored(dst, d0, src, s0, count, channels):
    # A mirrored run of pixels of any channel count: reverse the elements (a loop LLVM
    # vectorizes), then put each pixel's channels back in order. A gather through a
    # permutation, or a pixel loop over a run-time channel count, stayed scalar: 4-7x the copy
    # time for C = 3 against ~2x for this form (rough, on the loaded 2-core VM).
    last = s0 + _U(count - 1)
    for t in range(count):
        dst[d0 + _U(t)] = src[last - _U(t)]
    if channels > 1:
        for p in range(0, count, channels):
            for c in range(channels // 2):
                a, b = d0 + _U(p + c), d0 + _U(p + channels - 1 - c)
                dst[a], dst[b] = dst[b], dst[a]


def _mirrored_pixels_of(channels):
    """A mirrored run of pixels of ``channels`` (a literal) channels: a pixel loop whose channel
    loop unrolls, 2-3x faster than :func:`_copy_mirrored` for C = 3 (0.22-0.26 against
    0.44-0.84 ms for a 256x32x32x3 batch of mirrored rows on one core)."""

    @njit(inline="always")
    def copy(dst, d0, src, s0, count):
        last = s0 + _U(count - channels)
        for t in range(count // channels):
            for c in range(channels):
                dst[d0 + _U(t * channels + c)] = src[last - _U(t * channels) + _U(c)]

    return copy


_mirrored_3, _mirrored_4 = _mirrored_pixels_of(3), _mirrored_pixels_of(4)


@njit(inline="always")
def _copy_mirrored_run(dst, d0, src, s0, count, channels):
    if channels == 3:  # RGB, channels_last
        _mirrored_3(dst, d0, src, s0, count)
    elif channels == 4:
        _mirrored_4(dst, d0, src, s0, count)
    else:  # 1 (channels_first, grey) reverses elements, a vectorized loop
        _copy_mirrored(dst, d0, src, s0, count, channels)


@njit(inline="always")
def _move_rows(args, u0, u1, planes, channels):
    x, out, shape, table, fill = args
    h, w = shape[2], shape[3]
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
            _set_run(out, row, j0 * channels, fill)
            _set_run(out, row + _U(j1 * channels), (w - j1) * channels, fill)
            if j1 > j0:
                src = _U(((n * planes + p) * h + source) * k + s0 * channels)
                dst = row + _U(j0 * channels)
                count = (j1 - j0) * channels
                if hflip:
                    _copy_mirrored_run(out, dst, x, src, count, channels)
                else:
                    _copy_run(out, dst, x, src, count)
            if cut:
                _set_run(out, row + _U(c0), c1 - c0, fill)


@njit(inline="always")
def _by_channels(rows, args, planes, channels, u0, u1, one_plane):
    """``rows(args, u0, u1, planes, channels)`` with the channel count a compile-time constant
    for the common layouts (channels_last RGB/RGBA, 3 or 4 channels; channels_first and grey,
    1), and with ``one_plane`` (a literal) the plane count 1 as well for 3 or 4 channels (their
    only plane), so that LLVM unrolls the per-pixel channel loops and drops the branches on the
    counts from the row loop. Measured ~2x faster than one body with run-time counts (move,
    256x32x32x3 float32, mixed flips and shifts, one core: 0.21 ms against 0.42; the branches
    kept the copies scalar). The constant plane count speeds move and nearest up further but
    made the bilinear blend 2.7x slower (measured, not explained), so it is asked for."""
    single = one_plane and planes == 1
    if channels == 3 and single:
        rows(args, u0, u1, 1, 3)
    elif channels == 3:
        rows(args, u0, u1, planes, 3)
    elif channels == 1:
        rows(args, u0, u1, planes, 1)
    elif channels == 4 and single:
        rows(args, u0, u1, 1, 4)
    elif channels == 4:
        rows(args, u0, u1, planes, 4)
    else:
        rows(args, u0, u1, planes, channels)


@njit(nogil=True, cache=True)
def _move_body(x, out, shape, table, fill, u0, u1):
    _by_channels(_move_rows, (x, out, shape, table, fill), shape[1], shape[4], u0, u1, True)


def move(x: np.ndarray, out: np.ndarray, table: np.ndarray, fill) -> None:
    """``out = cutout(translate(flip(x)))`` with the per-sample ``table`` (MOVE_COLUMNS:
    vflip, hflip, dy, dx, row0, row1, col0, col1)."""
    n, _, h, _, _ = x.shape
    if x.size == 0:
        return
    args = (_flat_bits(x), _flat_bits(out), _shape(x), table, _fill_bits(fill, x.dtype))
    # ~1.5 ns a value on one core (row bookkeeping, fills, mirrored pixels): work in ns
    parallel_for(_move_body, n * h, *args, work=2 * x.size)


@njit(inline="always")
def _source_point(a, i, j):
    # q evaluated in float64 in the SPEC's order; no fastmath, so LLVM neither fuses nor
    # reassociates. ``a`` is the sample's row of the table, loaded once per output row
    # (loading it per pixel made the pass 2x slower).
    fi, fj = np.float64(i), np.float64(j)
    qy = a[0] * fi + a[1] * fj + a[2]
    qx = a[3] * fi + a[4] * fj + a[5]
    return qy, qx


@njit(inline="always")
def _table_row(table, n):
    return (table[n, 0], table[n, 1], table[n, 2], table[n, 3], table[n, 4], table[n, 5])


@njit(inline="always")
def _nearest_rows(args, u0, u1, planes, channels):
    x, out, shape, table, fill = args
    h, w = shape[2], shape[3]
    plane = h * w * channels
    for u in range(u0, u1):
        n = u // h
        i = u - n * h
        a = _table_row(table, n)
        for j in range(w):
            qy, qx = _source_point(a, i, j)
            yf, xf = np.floor(qy + 0.5), np.floor(qx + 0.5)
            dst = (i * w + j) * channels
            if 0.0 <= yf <= h - 1 and 0.0 <= xf <= w - 1:
                src = (int(yf) * w + int(xf)) * channels
                for p in range(planes):
                    base = (n * planes + p) * plane
                    for c in range(channels):
                        out[_U(base + dst + c)] = x[_U(base + src + c)]
            else:
                for p in range(planes):
                    base = (n * planes + p) * plane
                    for c in range(channels):
                        out[_U(base + dst + c)] = fill


@njit(nogil=True, cache=True)
def _nearest_body(x, out, shape, table, fill, u0, u1):
    _by_channels(_nearest_rows, (x, out, shape, table, fill), shape[1], shape[4], u0, u1,
                 True)


def _cast_like(value, like):
    """``value`` converted (rounded once) to the type of ``like``; Numba-only, see below."""
    raise NotImplementedError


@overload(_cast_like)
def _cast_like_impl(value, like):
    # The compute type is a compile-time fact of each specialization: float32 or float64.
    if like == types.float32:
        return lambda value, like: np.float32(value)
    return lambda value, like: np.float64(value)


@njit(inline="always")
def _neighbour(x, index, state, fill, like):
    # state 1: inside (read), 2: outside (fill), 0: weight 0 (counts as 0). The load is made
    # whatever the state (``index`` is then the plane's first pixel, see _offset), so that the
    # choice is a select, not a branch: edge pixels mix the states unpredictably (branching,
    # an edge pixel cost ~65 cycles, 3x its cost now).
    value = _cast_like(x[index], like)
    return value if state == 1 else (fill if state == 2 else _cast_like(0.0, like))


@njit(inline="always")
def _state(y, x, h, w, used):
    # & rather than `and`: no short-circuit branches (see _neighbour)
    inside = (0.0 <= y) & (y <= h - 1) & (0.0 <= x) & (x <= w - 1)
    return (1 if inside else 2) if used else 0


@njit(inline="always")
def _offset(y, x, w, channels, state):
    return (int(y) * w + int(x)) * channels if state == 1 else 0


@njit(inline="always")
def _bilinear_rows(args, u0, u1, planes, channels):
    # fill is a scalar of the compute type (float32, or float64 for float64 data): every
    # weight is cast to it once and every blend is computed in it.
    #
    # Two passes per output row. The first computes every pixel's source point, weights, and
    # for each of its four neighbours the state (_state) and offset (_offset): a loop without
    # branches or image loads. The second blends: a pixel whose four
    # neighbours are all read (nearly all pixels) from plain loads, the others with selects
    # between a load, the fill and 0 (_neighbour), never branches, since edge pixels mix the
    # states unpredictably. One pass doing both, branching per neighbour, stayed scalar: 2.1 ms
    # against 1.4 for a 256x32x32x3 float32 batch (rotation 15, zoom 0.1, shift 0.1) on one
    # core of the Zen 4 VM, the same bits. (Neighbour states computed in the second pass
    # instead: 1.7 ms; without edge pixels at all the pass would take 1.1.)
    x, out, shape, table, fill, round_u8 = args
    h, w = shape[2], shape[3]
    plane = h * w * channels
    one = _cast_like(1.0, fill)
    wy = np.full(w, one)
    wx = np.full(w, one)
    states = np.empty((4, w), np.int64)
    offsets = np.empty((4, w), np.int64)
    every = np.empty(w, np.bool_)
    for u in range(u0, u1):
        n = u // h
        i = u - n * h
        a = _table_row(table, n)
        for j in range(w):
            qy, qx = _source_point(a, i, j)
            y0, x0 = np.floor(qy), np.floor(qx)
            wy1, wx1 = _cast_like(qy - y0, fill), _cast_like(qx - x0, fill)
            wy0, wx0 = one - wy1, one - wx1
            wy[j], wx[j] = wy1, wx1
            s00 = _state(y0, x0, h, w, (wy0 != 0) & (wx0 != 0))
            s01 = _state(y0, x0 + 1.0, h, w, (wy0 != 0) & (wx1 != 0))
            s10 = _state(y0 + 1.0, x0, h, w, (wy1 != 0) & (wx0 != 0))
            s11 = _state(y0 + 1.0, x0 + 1.0, h, w, (wy1 != 0) & (wx1 != 0))
            states[0, j], states[1, j], states[2, j], states[3, j] = s00, s01, s10, s11
            offsets[0, j] = _offset(y0, x0, w, channels, s00)
            offsets[1, j] = _offset(y0, x0 + 1.0, w, channels, s01)
            offsets[2, j] = _offset(y0 + 1.0, x0, w, channels, s10)
            offsets[3, j] = _offset(y0 + 1.0, x0 + 1.0, w, channels, s11)
            every[j] = (s00 == 1) & (s01 == 1) & (s10 == 1) & (s11 == 1)
        for j in range(w):
            dst = (i * w + j) * channels
            wy1, wx1 = wy[j], wx[j]
            wy0, wx0 = one - wy1, one - wx1
            o00 = offsets[0, j]
            if every[j]:  # all four read: the others sit one column and one row further
                o10 = o00 + w * channels
                for p in range(planes):
                    base = (n * planes + p) * plane
                    for c in range(channels):
                        b = base + c
                        top = (wx0 * _cast_like(x[_U(b + o00)], one)
                               + wx1 * _cast_like(x[_U(b + o00 + channels)], one))
                        bottom = (wx0 * _cast_like(x[_U(b + o10)], one)
                                  + wx1 * _cast_like(x[_U(b + o10 + channels)], one))
                        _store(out, _U(base + dst + c), wy0 * top + wy1 * bottom, round_u8)
                continue
            s00, s01, s10, s11 = states[0, j], states[1, j], states[2, j], states[3, j]
            o01, o10, o11 = offsets[1, j], offsets[2, j], offsets[3, j]
            for p in range(planes):
                base = (n * planes + p) * plane
                for c in range(channels):
                    b = base + c
                    v00 = _neighbour(x, _U(b + o00), s00, fill, one)
                    v01 = _neighbour(x, _U(b + o01), s01, fill, one)
                    v10 = _neighbour(x, _U(b + o10), s10, fill, one)
                    v11 = _neighbour(x, _U(b + o11), s11, fill, one)
                    top = wx0 * v00 + wx1 * v01
                    bottom = wx0 * v10 + wx1 * v11
                    _store(out, _U(base + dst + c), wy0 * top + wy1 * bottom, round_u8)


@njit(nogil=True, cache=True)
def _bilinear_body(x, out, shape, table, fill, round_u8, u0, u1):
    _by_channels(_bilinear_rows, (x, out, shape, table, fill, round_u8), shape[1], shape[4],
                 u0, u1, False)


@njit(inline="always")
def _store(out, index, blend, round_u8):
    if round_u8:  # uint8: round to nearest even, clamp, then the (exact) conversion
        out[index] = min(max(np.rint(blend), 0.0), 255.0)
    else:
        out[index] = blend


def affine(x: np.ndarray, out: np.ndarray, table: np.ndarray, fill, nearest: bool) -> None:
    """``out[n, i, j]`` sampled at ``q`` (AFFINE_COLUMNS: A00, A01, b0, A10, A11, b1), as in
    ``ref_numpy.affine``: nearest moves bits, bilinear blends in the compute type."""
    n, _, h, _, _ = x.shape
    if x.size == 0:
        return
    if nearest:
        args = (_flat_bits(x), _flat_bits(out), _shape(x), table, _fill_bits(fill, x.dtype))
        parallel_for(_nearest_body, n * h, *args, work=2 * x.size)
        return
    ctype = compute_dtype(x.dtype)
    fillc = ctype.type(fill)
    # 16-bit storage: widen (exact), blend in float32, round once (NumPy/ml_dtypes cast: RNE).
    wide = x.dtype.itemsize == 2
    source = x.astype(ctype) if wide else x
    target = np.empty(x.shape, ctype) if wide else out
    args = (source.reshape(-1), target.reshape(-1), _shape(x), table, fillc, x.dtype == np.uint8)
    parallel_for(_bilinear_body, n * h, *args, work=4 * x.size)
    if wide:
        out[...] = target.astype(x.dtype)
