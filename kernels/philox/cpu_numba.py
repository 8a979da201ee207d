"""Philox4x32 for Numba: the one device-independent round function every CPU kernel inlines.

Words are carried in uint64 holding 32-bit values: Numba types ``uint32 op uint32`` as 64-bit
anyway, and with explicit masks LLVM proves the upper halves zero and vectorizes the 32x32->64
products with AVX2 ``vpmuludq``. Every literal is a typed ``np.uint64``: a bare Python int would
turn ``uint64 + int64`` into float64. No fastmath anywhere in RNG code.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .constants import M0, M1, MASK32, TWO_POW_M32, W0, W1

#: The twin interface, as in ref_numpy; the inline helpers above it are for other kernels.
__all__ = ["philox4x32", "random_bits"]

_M0 = np.uint64(M0)
_M1 = np.uint64(M1)
_W0 = np.uint64(W0)
_W1 = np.uint64(W1)
_MASK = np.uint64(MASK32)
_S32 = np.uint64(32)
_HALF = np.float64(0.5)
_TWO_POW_M32 = np.float64(TWO_POW_M32)
_TWO_PI = np.float64(2.0 * np.pi)

#: Elements per parallel chunk: big enough to amortize the thread hand-off, small enough that
#: 2 cores split a 64k-element array evenly.
CHUNK = 1 << 14


@njit(inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox4x32 rounds; all arguments and results are uint64 holding 32-bit words."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (
            (p1 >> _S32) ^ c1 ^ k0,
            p1 & _MASK,
            (p0 >> _S32) ^ c3 ^ k1,
            p0 & _MASK,
        )
        # The bump after round 10 is never used; keeping it makes the loop body branch-free.
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@njit(inline="always")
def philox_block(block, salt, offset, k0, k1):
    """The four words of counter ``(lo32(block), hi32(block), salt, offset)``; uint64 in and out."""
    return philox4x32_10(block & _MASK, block >> _S32, salt, offset, k0, k1)


@njit(inline="always")
def fill_bits(bits, first_block, count, salt, offset, k0, k1):
    """Words of ``count`` consecutive blocks from ``first_block`` into ``bits`` (uint64), laid
    out as the elements they belong to: ``bits[t] = bits(4*first_block + t)``. The hot loop of
    every masking kernel: fill a tile that stays in L1, then apply it in a second loop."""
    for jj in range(count):
        w0, w1, w2, w3 = philox_block(np.uint64(first_block + jj), salt, offset, k0, k1)
        bits[4 * jj] = w0
        bits[4 * jj + 1] = w1
        bits[4 * jj + 2] = w2
        bits[4 * jj + 3] = w3


@njit(inline="always")
def bits_of(block, lane, salt, offset, k0, k1):
    """Word ``lane`` (0..3) of a block; used only for ragged edges, never in a hot loop."""
    w0, w1, w2, w3 = philox_block(block, salt, offset, k0, k1)
    if lane == 0:
        return w0
    if lane == 1:
        return w1
    if lane == 2:
        return w2
    return w3


@njit(inline="always")
def box_muller(wa, wb):
    """One standard normal from two 32-bit words (SPEC §3, Gaussian draws), in float64."""
    u1 = (np.float64(wa) + _HALF) * _TWO_POW_M32
    u2 = (np.float64(wb) + _HALF) * _TWO_POW_M32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)


@njit(cache=True)
def philox4x32(counter, key, rounds):
    """Philox4x32-``rounds`` of ``counter`` (n, 4) under ``key`` (n, 2); uint32 arrays."""
    n = counter.shape[0]
    out = np.empty((n, 4), dtype=np.uint32)
    for i in range(n):
        c0 = np.uint64(counter[i, 0])
        c1 = np.uint64(counter[i, 1])
        c2 = np.uint64(counter[i, 2])
        c3 = np.uint64(counter[i, 3])
        k0 = np.uint64(key[i, 0])
        k1 = np.uint64(key[i, 1])
        for _ in range(rounds):
            p0 = _M0 * c0
            p1 = _M1 * c2
            c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        out[i, 0] = c0
        out[i, 1] = c1
        out[i, 2] = c2
        out[i, 3] = c3
    return out


@njit(parallel=True, cache=True)
def _random_bits(out, k0, k1, salt, offset):
    n = out.size
    nfull = n >> 2
    for chunk in prange((nfull + CHUNK - 1) // CHUNK):
        for j in range(chunk * CHUNK, min(nfull, (chunk + 1) * CHUNK)):
            w0, w1, w2, w3 = philox_block(np.uint64(j), salt, offset, k0, k1)
            out[4 * j] = w0
            out[4 * j + 1] = w1
            out[4 * j + 2] = w2
            out[4 * j + 3] = w3
    for i in range(4 * nfull, n):
        out[i] = bits_of(np.uint64(nfull), i & 3, salt, offset, k0, k1)


def random_bits(n: int, k0: int, k1: int, salt: int, offset: int) -> np.ndarray:
    """``bits(i)`` for flat indices ``0..n-1`` (SPEC §3.3), as uint32."""
    out = np.empty(n, dtype=np.uint32)
    _random_bits(out, np.uint64(k0), np.uint64(k1), np.uint64(salt), np.uint64(offset))
    return out
