"""The per-sample parameters of SPEC §4.5, derived once on the host in float64 for every backend.

Sample ``n`` draws the eight words ``a_k(n) = bits(8*s + k)``, ``k = 0..7``, of the salt-3 stream
(``s = sample_ids[n]``, or ``n``), that is the two Philox blocks ``2*s`` and ``2*s + 1``, and
``u_k = (a_k + 0.5) * 2**-32`` in float64. The twins never draw: they take the tables built here
(:func:`move_table` for flip/translate/cutout, :func:`affine_table` for ``random_affine``), so
every backend moves or samples exactly the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..philox.constants import MASK32, SALT_AUGMENT, TWO_POW_M32

__all__ = [
    "AFFINE_COLUMNS",
    "MOVE_COLUMNS",
    "affine_table",
    "compute_dtype",
    "move_table",
    "sample_words",
    "uniforms",
]

#: Columns of the int64 move table, one row per sample (the CUDA kernels index them by number).
MOVE_COLUMNS = ("vflip", "hflip", "dy", "dx", "row0", "row1", "col0", "col1")
#: Columns of the float64 affine table: ``q = (A00*i + A01*j + b0, A10*i + A11*j + b1)``.
AFFINE_COLUMNS = ("A00", "A01", "b0", "A10", "A11", "b1")

_HALF_RANGE = 2**31


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The type bilinear blends compute in: float64 for float64, float32 for float32, the
    16-bit storage types and uint8 (SPEC §4: 16-bit types compute in float32)."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def sample_words(
    ids: np.ndarray | None,
    n: int,
    key: tuple[int, int],
    offset: int,
    philox: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
) -> np.ndarray:
    """``a_k(n)`` as a uint32 ``(n, 8)`` table; ``ids`` a host integer array or None (ids
    ``0..n-1``); ``philox(counter (m, 4), key (m, 2), rounds)`` a Philox twin's function."""
    # bits(8s + k) is word k & 3 of block (8s + k) >> 2 = 2s + (k >> 2). Few NumPy calls on
    # these tiny arrays: each costs microseconds, as much as the 2n Philox blocks themselves.
    counter = np.empty((n, 2, 4), dtype=np.uint32)
    if ids is None and n <= 2**31:  # ids 0..n-1: every first block 2s fits in the low word
        counter[:, 0, 0] = np.arange(0, 2 * n, 2, dtype=np.uint32)
        counter[:, :, 1] = 0
    else:
        s = np.arange(n, dtype=np.uint64) if ids is None else ids.astype(np.uint64)
        first = 2 * s  # below 2**62: no wraparound
        counter[:, 0, 0] = first & np.uint64(MASK32)
        counter[:, :, 1] = (first >> np.uint64(32))[:, None]
    counter[:, 1, 0] = counter[:, 0, 0] + np.uint32(1)  # 2s is even: no carry into the high word
    counter[:, :, 2] = SALT_AUGMENT
    counter[:, :, 3] = offset
    counter = counter.reshape(2 * n, 4)
    keys = np.empty((2 * n, 2), dtype=np.uint32)
    keys[:] = key
    return np.asarray(philox(counter, keys, 10)).reshape(n, 8)


def uniforms(words: np.ndarray) -> np.ndarray:
    """``u_k = (a_k + 0.5) * 2**-32`` in float64: in ``(0, 1)``, never 0 or 1."""
    return (words.astype(np.float64) + 0.5) * TWO_POW_M32


def move_table(
    words: np.ndarray,
    height: int,
    width: int,
    *,
    horizontal: bool,
    vertical: bool,
    max_shift: tuple[int, int],
    cutout: tuple[int, int],
) -> np.ndarray:
    """The int64 ``(n, 8)`` table of :data:`MOVE_COLUMNS` for flip, then translate, then cutout.

    ``vflip = vertical and a_1 >= 2**31``, ``hflip = horizontal and a_0 >= 2**31``;
    ``dy = floor(u_2 * (2*my + 1)) - my``, ``dx = floor(u_3 * (2*mx + 1)) - mx``; the cutout
    rows ``[cy - sh//2, cy - sh//2 + sh)`` with ``cy = floor(u_4 * H)`` and columns likewise with
    ``cx = floor(u_5 * W)``, clipped to the image (empty when ``sh`` or ``sw`` is 0: no cutout).
    """
    # Built column by column on (8, n) arrays and transposed at the end: NumPy's operations on
    # strided (n, k) views of these tiny tables cost ~10 us each, on contiguous rows ~1-2 us.
    words = np.ascontiguousarray(words.T)
    u = uniforms(words)
    (my, mx), (sh, sw) = max_shift, cutout
    # A size of 2*extent + 1 or more covers the whole axis wherever the centre is: any larger one
    # is the same rectangle, and the clipped size keeps the int64 arithmetic below exact.
    sh, sw = min(sh, 2 * height + 1), min(sw, 2 * width + 1)
    columns = np.zeros((8, words.shape[1]), dtype=np.int64)
    if vertical:
        columns[0] = words[1] >= _HALF_RANGE
    if horizontal:
        columns[1] = words[0] >= _HALF_RANGE
    columns[2] = _shifts(u[2], my, height)
    columns[3] = _shifts(u[3], mx, width)
    if sh and sw:
        for first, size, extent, centre in ((4, sh, height, u[4]), (6, sw, width, u[5])):
            start = np.floor(centre * extent).astype(np.int64)
            start -= size // 2
            low, high = columns[first], columns[first + 1]
            np.minimum(np.maximum(start, 0), extent, out=low)
            start += size
            np.minimum(np.maximum(start, low), extent, out=high)
    return columns.T.copy()


#: Below this ``max_shift``, ``floor(u * (2*m + 1)) < 2**63``: the int64 arithmetic is exact.
_INT64_SHIFTS = 2**62


def _shifts(u: np.ndarray, m: int, extent: int) -> np.ndarray:
    """``floor(u * (2*m + 1)) - m`` per sample as int64 (``2*m + 1`` rounded to float64, the
    floor an exact integer). Past int64 (``m >= 2**62``) the difference is taken in Python ints
    and clipped to ``[-extent, extent]``: every shift of at least the image's extent moves no
    pixel into it, so the clipped table gives the same image."""
    if m < _INT64_SHIFTS:
        shifts = np.floor(u * (2 * m + 1)).astype(np.int64)  # exact integers: the cast is exact
        shifts -= m
        return shifts
    span = float(2 * m + 1)  # validated by the ops: finite
    return np.array([max(-extent, min(extent, int(f) - m)) for f in np.floor(u * span).tolist()],
                    dtype=np.int64)


def affine_table(
    words: np.ndarray, height: int, width: int, *, rotation: float, zoom: float, shift: float
) -> np.ndarray:
    """The float64 ``(n, 6)`` table of :data:`AFFINE_COLUMNS`.

    ``t = rotation * (2*u_6 - 1)`` degrees, ``z = 1 + zoom * (2*u_7 - 1)``,
    ``ty = shift * H * (2*u_2 - 1)``, ``tx = shift * W * (2*u_3 - 1)``; with the centre
    ``c = ((H-1)/2, (W-1)/2)``, ``A = R(-t) / z`` (``R(a) = [[cos a, -sin a], [sin a, cos a]]``
    on (row, column)) and ``b = c - A @ (c + (ty, tx))``, each product and sum rounded in float64
    in the order written.
    """
    u = uniforms(words)
    t = rotation * (2.0 * u[:, 6] - 1.0)
    z = 1.0 + zoom * (2.0 * u[:, 7] - 1.0)
    ty = shift * height * (2.0 * u[:, 2] - 1.0)
    tx = shift * width * (2.0 * u[:, 3] - 1.0)
    radians = -t * (math.pi / 180.0)  # R(-t)
    cos, sin = np.cos(radians), np.sin(radians)
    a00, a01, a10, a11 = cos / z, -sin / z, sin / z, cos / z
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    vy, vx = cy + ty, cx + tx
    table = np.empty((words.shape[0], 6), dtype=np.float64)
    table[:, 0], table[:, 1], table[:, 3], table[:, 4] = a00, a01, a10, a11
    table[:, 2] = cy - (a00 * vy + a01 * vx)
    table[:, 5] = cx - (a10 * vy + a11 * vx)
    return table
