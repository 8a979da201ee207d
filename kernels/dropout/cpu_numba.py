"""Dropout-family CPU twin in Numba: Philox drawn inside the kernel, no mask stored.

Same names and signatures as ``ref_numpy``. Each parallel task owns a run of whole Philox blocks
(4 elements each), so results never depend on the thread count or the task split.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..philox.constants import SALT_GAUSSIAN
from ..philox.cpu_numba import box_muller, fill_bits, philox_block

_U = np.uint64
#: Philox blocks per inner tile: the bits of one tile (4*TILE uint32) stay in L1.
TILE = 512
#: Tiles per parallel task, so a task is ~128k elements and threads hand off rarely.
TILES_PER_TASK = 64


@njit(parallel=True, cache=True)
def _keep_mask(out, k0, k1, salt, offset, threshold):
    n = out.size
    nblocks = (n + 3) >> 2
    ntiles = (nblocks + TILE - 1) // TILE
    for task in prange((ntiles + TILES_PER_TASK - 1) // TILES_PER_TASK):
        bits = np.empty(4 * TILE, dtype=np.uint64)
        for tile in range(task * TILES_PER_TASK, min(ntiles, (task + 1) * TILES_PER_TASK)):
            first = tile * TILE
            count = min(nblocks, first + TILE) - first
            fill_bits(bits, first, count, salt, offset, k0, k1)
            base = 4 * first
            for t in range(min(4 * count, n - base)):
                out[base + t] = bits[t] >= threshold


def keep_mask(n: int, k0: int, k1: int, salt: int, offset: int, threshold: int) -> np.ndarray:
    """``bits(i) >= threshold`` for ``i`` in ``0..n-1``, as bool (True = kept)."""
    out = np.empty(n, dtype=np.bool_)
    _keep_mask(out, _U(k0), _U(k1), _U(salt), _U(offset), _U(threshold))
    return out


@njit(parallel=True, cache=True)
def _dropout_apply(x, out, k0, k1, salt, offset, threshold, scale):
    n = x.size
    zero = x.dtype.type(0)
    nblocks = (n + 3) >> 2
    ntiles = (nblocks + TILE - 1) // TILE
    for task in prange((ntiles + TILES_PER_TASK - 1) // TILES_PER_TASK):
        bits = np.empty(4 * TILE, dtype=np.uint64)
        for tile in range(task * TILES_PER_TASK, min(ntiles, (task + 1) * TILES_PER_TASK)):
            first = tile * TILE
            count = min(nblocks, first + TILE) - first
            fill_bits(bits, first, count, salt, offset, k0, k1)
            base = 4 * first
            for t in range(min(4 * count, n - base)):
                # A select, not a multiply: dropped NaN/Inf inputs give exactly +0.0.
                out[base + t] = x[base + t] * scale if bits[t] >= threshold else zero


def dropout_apply(x, out, k0, k1, salt, offset, threshold, scale) -> None:
    """``out[i] = x[i] * scale`` if ``bits(i) >= threshold`` else ``+0.0`` (a select)."""
    _dropout_apply(x, out, _U(k0), _U(k1), _U(salt), _U(offset), _U(threshold), scale)


@njit(parallel=True, cache=True)
def _gaussian_apply(x, out, k0, k1, offset, additive, multiplicative):
    n = x.size
    npairs = (n + 1) >> 1
    salt = _U(SALT_GAUSSIAN)
    per_task = 4 * TILE
    for task in prange((npairs + per_task - 1) // per_task):
        for j in range(task * per_task, min(npairs, (task + 1) * per_task)):
            w0, w1, w2, w3 = philox_block(_U(j), salt, offset, k0, k1)
            i = 2 * j
            v = np.float64(x[i])
            out[i] = v + (additive + multiplicative * v) * box_muller(w0, w1)
            if i + 1 < n:
                v = np.float64(x[i + 1])
                out[i + 1] = v + (additive + multiplicative * v) * box_muller(w2, w3)


def gaussian_apply(x, out, k0, k1, offset, additive, multiplicative) -> None:
    """``out[i] = x[i] + (additive + multiplicative * x[i]) * n(i)``, ``n`` standard normal
    (Box-Muller, salt 2), evaluated in float64 and cast once."""
    _gaussian_apply(x, out, _U(k0), _U(k1), _U(offset), float(additive), float(multiplicative))


__all__ = ["dropout_apply", "gaussian_apply", "keep_mask"]
