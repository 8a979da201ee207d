"""Philox4x32 in plain NumPy: the reference twin, written to read like the paper."""

from __future__ import annotations

import numpy as np

from .constants import M0, M1, MASK32, TWO_POW_M32, W0, W1

#: The twin interface (the same in cpu_numba and gpu_cupy); ``normals`` and ``start`` are
#: reference-only helpers for the other families' NumPy twins.
__all__ = ["philox4x32", "random_bits"]


def _mulhilo(a: int, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full 64-bit product of the 32-bit multiplier ``a`` and words ``b``, split in (hi, lo)."""
    product = np.uint64(a) * b.astype(np.uint64)
    return (product >> np.uint64(32)).astype(np.uint32), (product & np.uint64(MASK32)).astype(
        np.uint32
    )


def _add32(a: np.ndarray, b: int) -> np.ndarray:
    """``(a + b) mod 2**32`` without NumPy's scalar-overflow warning."""
    return ((a.astype(np.uint64) + np.uint64(b)) & np.uint64(MASK32)).astype(np.uint32)


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Philox4x32-``rounds`` of uint32 ``counter`` ``(..., 4)`` under ``key`` ``(..., 2)``.

    One round: ``(c0, c1, c2, c3) -> (hi(M1*c2)^c1^k0, lo(M1*c2), hi(M0*c0)^c3^k1, lo(M0*c0))``;
    the key is bumped by ``(W0, W1)`` mod 2**32 between rounds.
    """
    counter = np.asarray(counter, dtype=np.uint32)
    key = np.asarray(key, dtype=np.uint32)
    shape = np.broadcast_shapes(counter.shape[:-1], key.shape[:-1])
    counter = np.broadcast_to(counter, (*shape, 4))
    key = np.broadcast_to(key, (*shape, 2))
    c0, c1, c2, c3 = (counter[..., j].astype(np.uint32) for j in range(4))
    k0, k1 = (key[..., j].astype(np.uint32) for j in range(2))
    for r in range(rounds):
        if r:
            k0 = _add32(k0, W0)
            k1 = _add32(k1, W1)
        hi0, lo0 = _mulhilo(M0, c0)
        hi1, lo1 = _mulhilo(M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3], axis=-1)


def _counters(blocks: np.ndarray, salt: int, offset: int) -> np.ndarray:
    """Counters ``(lo32(j), hi32(j), salt, offset)`` for block indices ``j`` (uint64)."""
    counter = np.empty((blocks.size, 4), dtype=np.uint32)
    counter[:, 0] = (blocks & np.uint64(MASK32)).astype(np.uint32)
    counter[:, 1] = (blocks >> np.uint64(32)).astype(np.uint32)
    counter[:, 2] = salt
    counter[:, 3] = offset
    return counter


def random_bits(n: int, k0: int, k1: int, salt: int, offset: int, start: int = 0) -> np.ndarray:
    """``bits(i)`` for flat indices ``i`` in ``[start, start + n)``
    (docs/contract/random-stream.md), as uint32."""
    if n == 0:
        return np.empty(0, dtype=np.uint32)
    first, last = start >> 2, (start + n - 1) >> 2
    blocks = np.arange(first, last + 1, dtype=np.uint64)
    words = philox4x32(_counters(blocks, salt, offset), np.array([k0, k1], dtype=np.uint32))
    lead = start - (first << 2)
    return words.reshape(-1)[lead : lead + n]


def normals(n: int, k0: int, k1: int, salt: int, offset: int) -> np.ndarray:
    """Standard normal draws for flat indices ``0..n-1`` by Box-Muller, in float64
    (docs/contract/random-stream.md)."""
    if n == 0:
        return np.empty(0, dtype=np.float64)
    blocks = np.arange((n + 1) >> 1, dtype=np.uint64)
    words = philox4x32(_counters(blocks, salt, offset), np.array([k0, k1], dtype=np.uint32))
    pairs = words.reshape(-1, 2, 2)  # (block, h, {u1 word, u2 word})
    u1 = (pairs[..., 0].astype(np.float64) + 0.5) * TWO_POW_M32
    u2 = (pairs[..., 1].astype(np.float64) + 0.5) * TWO_POW_M32
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(-1)[:n]
