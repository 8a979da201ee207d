"""Dropout-family reference twin in plain NumPy: reads like docs/contract/random-stream.md and
ops.md, supports any float.

All functions take C-contiguous 1-D arrays whose position is the logical flat index ``i``, and
host-derived scalars (``k0, k1`` the key, ``threshold`` from ``fastreg.random.kernel_threshold``).
"""

from __future__ import annotations

import numpy as np

from ..philox.constants import SALT_GAUSSIAN
from ..philox.ref_numpy import normals, random_bits

__all__ = ["dropout_apply", "dropout_apply_pair", "gaussian_apply", "keep_mask"]


def keep_mask(n: int, k0: int, k1: int, salt: int, offset: int, threshold: int) -> np.ndarray:
    """``bits(i) >= threshold`` for ``i`` in ``0..n-1``, as bool (True = kept)."""
    return random_bits(n, k0, k1, salt, offset).astype(np.uint64) >= np.uint64(threshold)


def dropout_apply(x, out, k0, k1, salt, offset, threshold, scale) -> None:
    """``out[i] = x[i] * scale`` if ``bits(i) >= threshold`` else ``+0.0`` (a select)."""
    keep = keep_mask(x.size, k0, k1, salt, offset, threshold)
    out[...] = np.where(keep, x * scale, x.dtype.type(0))


def dropout_apply_pair(x, out, g, k0, k1, salt, offset, threshold, scale) -> None:
    """``dropout_apply(x, out)`` and ``dropout_apply(g, g)`` under one mask: ``out[i] = x[i] *
    scale`` and ``g[i] = g[i] * scale`` where ``bits(i) >= threshold``, ``+0.0`` elsewhere (the
    per-batch DropConnect backward masks ``W`` and its gradient together). ``g`` overlaps
    neither ``x`` nor ``out``."""
    keep = keep_mask(x.size, k0, k1, salt, offset, threshold)
    zero = x.dtype.type(0)
    out[...] = np.where(keep, x * scale, zero)
    g[...] = np.where(keep, g * scale, zero)


def gaussian_apply(x, out, k0, k1, offset, additive, multiplicative) -> None:
    """``out[i] = x[i] + additive * n(i)`` if ``multiplicative == 0``, else
    ``x[i] * (1 + multiplicative * n(i))``: the two formulas as written, so infinities stay
    infinite (no ``0 * inf``). ``n`` standard normal (Box-Muller, salt 2), float64, cast once."""
    noise = normals(x.size, k0, k1, SALT_GAUSSIAN, offset)
    wide = x.astype(np.float64)
    if multiplicative == 0.0:
        out[...] = (wide + additive * noise).astype(x.dtype)
    else:
        out[...] = (wide * (1.0 + multiplicative * noise)).astype(x.dtype)
