"""Dropout-family CPU twin in Numba: Philox drawn inside the kernel, no mask stored.

Same names and signatures as ``ref_numpy``. Each range of work owns whole tiles of Philox blocks
(4 elements each), so results never depend on the thread count or the split.

Two phases per tile, each a serial Numba function that LLVM vectorizes on its own: fill a uint32
tile of words that stays in L1 (:func:`fill_words`, AVX2 ``vpmuludq`` on 4 blocks per vector),
then one contiguous select loop over slices of the tile (8 float32 lanes per instruction). One
fused loop (Philox, then four selects per block) does not vectorize and ran at ~8 ns per element
on one core; a select loop indexing ``x[base + t]`` keeps Numba's negative-index wraparound and
stays scalar (4.7 ns against 0.36 over slices). Philox is ~90% of the time: ~0.6-0.8 ns per
element on one core, the select ~0.06.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastreg._runtime import parallel_for

from ..philox.constants import MASK32, SALT_GAUSSIAN
from ..philox.cpu_numba import box_muller, fill_words

_U = np.uint64
#: Philox blocks per tile: 8192 words (32 KiB). Measured dropout 4M f32 on 2 threads: 0.51 ns
#: per element with 512-block tiles, 0.49 with 1024, 0.48 with 2048 (fewer calls per element;
#: the words stay in L1/L2 between the fill and the select).
TILE = 2048
#: Less work than this (elements; a normal counts 8) runs on the calling thread: handing a job
#: to fastreg's pool costs ~20-40 us on the 2-core VM (waking a blocked worker), as much as
#: ~50k elements of work on one core (measured crossover: dropout 64k float32).
SERIAL_WORK = 1 << 16


def _tile_count(elements_per_block, n):
    blocks = (n + elements_per_block - 1) // elements_per_block
    return (blocks + TILE - 1) // TILE


@njit(inline="always")
def _fill_tile(words, tile, per_block, n, salt, offset, k0, k1):
    """Fill ``words`` with the Philox blocks of tile ``tile`` of an ``n``-element pass that uses
    ``per_block`` elements per block; return the tile's first element and element count."""
    nblocks = (n + per_block - 1) // per_block
    first = tile * TILE
    count = min(nblocks, first + TILE) - first
    fill_words(words, first, count, salt, offset, k0, k1)
    base = per_block * first
    return base, min(per_block * count, n - base)


@njit(cache=True)
def _select(x, out, bits, threshold, scale):
    zero = x.dtype.type(0)
    for t in range(x.size):
        v = x[t] * scale
        # A select, not a multiply: dropped NaN/Inf inputs give exactly +0.0.
        out[t] = v if bits[t] >= threshold else zero


@njit(cache=True)
def _select_in_place(a, bits, threshold, scale):
    # One array: with x and out the same memory, LLVM's runtime overlap check sends _select to
    # its scalar loop (6.5 vs 0.5 ms for 1M float32); this form has nothing to alias.
    zero = a.dtype.type(0)
    for t in range(a.size):
        v = a[t] * scale
        a[t] = v if bits[t] >= threshold else zero


@njit(cache=True)
def _compare(out, bits, threshold):
    for t in range(out.size):
        out[t] = bits[t] >= threshold


# Each pass is a serial nogil function over a range of tiles [t0, t1), run by fastreg's runtime
# on ranges of tiles (fastreg/_runtime.py), or over all tiles on the calling thread.


@njit(nogil=True, cache=True)
def _keep_mask_tiles(out, k0, k1, salt, offset, threshold, t0, t1):
    bits = np.empty(4 * TILE, dtype=np.uint32)
    for tile in range(t0, t1):
        base, m = _fill_tile(bits, tile, 4, out.size, salt, offset, k0, k1)
        _compare(out[base : base + m], bits[:m], threshold)



@njit(nogil=True, cache=True)
def _apply_tiles(x, out, g, in_place, k0, k1, salt, offset, threshold, scale, t0, t1):
    # g (empty when unused) is masked in place with the same words: one Philox pass for both.
    bits = np.empty(4 * TILE, dtype=np.uint32)
    for tile in range(t0, t1):
        base, m = _fill_tile(bits, tile, 4, x.size, salt, offset, k0, k1)
        # Slices, not base + t indexing: their indices are provably non-negative, so Numba's
        # wraparound branch folds away and the loop vectorizes (0.36 vs 4.7 ns/element).
        if in_place:
            _select_in_place(out[base : base + m], bits[:m], threshold, scale)
        else:
            _select(x[base : base + m], out[base : base + m], bits[:m], threshold, scale)
        if g.size:
            _select_in_place(g[base : base + m], bits[:m], threshold, scale)



# error_model="numpy": Box-Muller's division cannot be by zero, and the "python" model's check
# would keep the loop scalar. No FMA contraction (fastmath "contract": ~10% fewer cycles per
# llvm-mca on Zen 3): it fuses 2*pi*u2 into cos_unit's first subtraction, which moves cos's
# argument off fl(2*pi*u2), the one the numpy and CUDA twins take, by up to 1e-6 relative
# near cos's zeros.
@njit(cache=True, error_model="numpy")
def _gaussian_tile(x, out, words, additive, multiplicative):
    for t in range(x.size):
        v = np.float64(x[t])
        n = box_muller(words[2 * t], words[2 * t + 1])
        # Both forms, then a select (three operations): with the products inside the conditional
        # expression the loop branches, measured 26% slower.
        added = v + additive * n
        scaled = v * (1.0 + multiplicative * n)
        out[t] = added if multiplicative == 0.0 else scaled


@njit(nogil=True, cache=True)
def _gaussian_tiles(x, out, k0, k1, offset, additive, multiplicative, t0, t1):
    # Element i uses words 2*(i & 1) and 2*(i & 1) + 1 of block i >> 1: a tile of TILE blocks
    # serves 2*TILE elements, reading its words in pairs.
    salt = _U(SALT_GAUSSIAN)
    words = np.empty(4 * TILE, dtype=np.uint32)
    for tile in range(t0, t1):
        base, m = _fill_tile(words, tile, 2, x.size, salt, offset, k0, k1)
        _gaussian_tile(x[base : base + m], out[base : base + m], words, additive, multiplicative)


def _run(tiles, work, ntiles, *args) -> None:
    """``tiles(*args, t0, t1)`` over ranges of the ``ntiles`` tiles, on the calling thread
    for less than SERIAL_WORK units of work."""
    parallel_for(tiles, ntiles, *args, work=work, serial_work=SERIAL_WORK)


def keep_mask(n: int, k0: int, k1: int, salt: int, offset: int, threshold: int) -> np.ndarray:
    """``bits(i) >= threshold`` for ``i`` in ``0..n-1``, as bool (True = kept)."""
    if threshold > MASK32:  # p == 1: no 32-bit word reaches 2**32
        return np.zeros(n, dtype=np.bool_)
    out = np.empty(n, dtype=np.bool_)
    args = (out, _U(k0), _U(k1), _U(salt), _U(offset), np.uint32(threshold))
    _run(_keep_mask_tiles, n, _tile_count(4, n), *args)
    return out


def _apply(x, out, g, k0, k1, salt, offset, threshold, scale) -> None:
    if threshold > MASK32:  # p == 1: everything dropped, +0.0 even for NaN inputs
        out[...] = 0
        g[...] = 0
        return
    # uint32 threshold: the select compares 8 words per AVX2 instruction instead of 4.
    # x and out are one buffer or disjoint (the API reads partial overlaps from a copy), so
    # NumPy's bounds check answers "in place?" (0.3 us against 2.7 for comparing .ctypes.data).
    in_place = np.may_share_memory(x, out)
    args = (x, out, g, in_place, _U(k0), _U(k1), _U(salt), _U(offset), np.uint32(threshold), scale)
    _run(_apply_tiles, x.size + g.size, _tile_count(4, x.size), *args)


def dropout_apply(x, out, k0, k1, salt, offset, threshold, scale) -> None:
    """``out[i] = x[i] * scale`` if ``bits(i) >= threshold`` else ``+0.0`` (a select)."""
    _apply(x, out, out[:0], k0, k1, salt, offset, threshold, scale)


def dropout_apply_pair(x, out, g, k0, k1, salt, offset, threshold, scale) -> None:
    """``dropout_apply(x, out)`` and ``dropout_apply(g, g)`` under one mask, in one pass over
    the words: ``out[i] = x[i] * scale`` and ``g[i] = g[i] * scale`` where ``bits(i) >=
    threshold``, ``+0.0`` elsewhere. ``g`` overlaps neither ``x`` nor ``out``."""
    _apply(x, out, g, k0, k1, salt, offset, threshold, scale)


def gaussian_apply(x, out, k0, k1, offset, additive, multiplicative) -> None:
    """``out[i] = x[i] + additive * n(i)`` if ``multiplicative == 0``, else
    ``x[i] * (1 + multiplicative * n(i))``: SPEC's two formulas as written, so infinities stay
    infinite (no ``0 * inf``). ``n`` standard normal (Box-Muller, salt 2), float64, cast once."""
    args = (x, out, _U(k0), _U(k1), _U(offset), float(additive), float(multiplicative))
    # A normal costs ~8x a dropout select: the same launch cost pays off 8x sooner.
    _run(_gaussian_tiles, 8 * x.size, _tile_count(2, x.size), *args)


__all__ = ["dropout_apply", "dropout_apply_pair", "gaussian_apply", "keep_mask"]
