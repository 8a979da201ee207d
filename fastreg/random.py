"""The random stream: Philox4x32-10, raw bits, and the host-side key/threshold/scale
(docs/contract/random-stream.md).

Element ``i`` of a logical mask (its row-major flat index) draws
``bits(i) = philox4x32((lo32(i>>2), hi32(i>>2), salt, offset), key)[i & 3]`` with
``key = (seed & 0xFFFFFFFF, seed >> 32)``. An element is kept iff ``bits(i) >= threshold`` with
``threshold = min(floor(p * 2**32), 2**32 - 1)``, except that ``p == 1`` drops everything.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _backends
from ._kernels.philox.constants import (
    RNG_SPEC_VERSION,
    SALT_AUGMENT,
    SALT_DROPCONNECT,
    SALT_DROPOUT,
    SALT_GAUSSIAN,
)
from ._validate import _describe, _integer, check_offset, check_seed, check_shape

__all__ = [
    "RNG_SPEC_VERSION",
    "SALT_AUGMENT",
    "SALT_DROPCONNECT",
    "SALT_DROPOUT",
    "SALT_GAUSSIAN",
    "derive_key",
    "dropout_scale",
    "keep_threshold",
    "kernel_threshold",
    "philox4x32",
    "random_bits",
]

#: What kernels compare ``bits`` (a uint32 held in 64 bits) with when ``p == 1``: no bits reach it,
#: so "drop all" needs no special case in any kernel.
DROP_ALL = 2**32


def derive_key(seed: Any) -> tuple[int, int]:
    """The Philox key ``(k0, k1) = (seed & 0xFFFFFFFF, seed >> 32)`` of a validated seed."""
    seed = check_seed(seed)
    return seed & 0xFFFFFFFF, seed >> 32


def keep_threshold(p: float) -> int:
    """``min(floor(p * 2**32), 2**32 - 1)``, exact (``p * 2**32`` is exact in float64)."""
    return min(math.floor(p * 2.0**32), 2**32 - 1)


def kernel_threshold(p: float) -> int:
    """The integer kernels compare with: :func:`keep_threshold`, or ``2**32`` (nothing kept)
    when ``p == 1`` (docs/contract/random-stream.md: ``p == 1`` drops all)."""
    return DROP_ALL if p >= 1.0 else keep_threshold(p)


def dropout_scale(p: float, dtype: Any) -> Any:
    """``1/(1-p)`` computed once in float64 and cast once to ``dtype``; 0 when ``p == 1``
    (every element is dropped, so the scale is never applied)."""
    return np.dtype(dtype).type(0.0 if p >= 1.0 else 1.0 / (1.0 - p))


def _as_uint32(words: Any, name: str, width: int) -> np.ndarray:
    array = np.asarray(words)
    if array.dtype.kind not in "ui":
        raise TypeError(f"{name} must hold unsigned 32-bit integers, got dtype {array.dtype}")
    if array.ndim == 0 or array.shape[-1] != width:
        raise ValueError(f"{name} must have shape (..., {width}), got {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 0xFFFFFFFF):
        raise ValueError(f"{name} entries must be in [0, 2**32)")
    return array.astype(np.uint32)


def philox4x32(counter: Any, key: Any, rounds: int = 10, *, backend: str | None = None) -> Any:
    """Philox4x32-``rounds`` (Salmon et al., SC'11) of ``counter`` under ``key``.

    One round maps ``(c0,c1,c2,c3)`` to ``(hi(M1*c2)^c1^k0, lo(M1*c2), hi(M0*c0)^c3^k1,
    lo(M0*c0))`` with ``M0=0xD2511F53``, ``M1=0xCD9E8D57``; the key is bumped by
    ``(0x9E3779B9, 0xBB67AE85)`` mod 2**32 before rounds 2..``rounds``.

    Parameters
    ----------
    counter : array_like of uint32, shape (..., 4)
    key : array_like of uint32, shape (..., 2); broadcast against ``counter``
    rounds : int, default 10

    Returns
    -------
    numpy.ndarray of uint32, shape (broadcast(...), 4)

    Example
    -------
    >>> bits = philox4x32([0, 0, 0, 0], [0, 0])
    >>> [f"{w:08x}" for w in bits]
    ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    """
    counter = _as_uint32(counter, "counter", 4)
    key = _as_uint32(key, "key", 2)
    rounds = _integer(rounds, "rounds")  # NumPy integers too, as every int argument
    if not 0 <= rounds < 2**63:  # the kernels count rounds in an int64
        raise ValueError(f"rounds must be >= 0 and < 2**63, got {_describe(rounds)}")
    name = _backends.resolve(backend)
    if name == "cupy":  # the host form is the same bits; keep this small helper on the host
        name = "numpy"
    shape = np.broadcast_shapes(counter.shape[:-1], key.shape[:-1])
    flat_counter = np.ascontiguousarray(np.broadcast_to(counter, (*shape, 4)).reshape(-1, 4))
    flat_key = np.ascontiguousarray(np.broadcast_to(key, (*shape, 2)).reshape(-1, 2))
    words = _backends.twin("philox", name).philox4x32(flat_counter, flat_key, rounds)
    return np.asarray(words).reshape(*shape, 4)


def random_bits(
    shape: Any, *, seed: int, offset: int = 0, salt: int = 0, backend: str | None = None
) -> Any:
    """``bits(i)`` for every element of a logical array of ``shape``, as uint32
    (docs/contract/random-stream.md).

    ``bits(i) = philox4x32((lo32(i>>2), hi32(i>>2), salt, offset), key(seed))[i & 3]`` with ``i``
    the row-major flat index.

    Parameters
    ----------
    shape : int or tuple of int
    seed : int in [0, 2**64)
    offset : int in [0, 2**32), the call index
    salt : int in [0, 2**32): 0 dropout masks, 1 DropConnect, 2 Gaussian noise, 3 augmentation

    Returns
    -------
    uint32 array of ``shape`` (a CuPy array on the cupy backend)

    Example
    -------
    >>> [f"{w:08x}" for w in random_bits(4, seed=0)]  # block 0 of key (0, 0): Random123's KAT
    ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
    """
    dims = check_shape(shape)
    k0, k1 = derive_key(seed)
    offset = check_offset(offset)
    salt = check_offset(salt, "salt")
    name = _backends.resolve(backend)
    n = math.prod(dims)
    return _backends.twin("philox", name).random_bits(n, k0, k1, salt, offset).reshape(dims)
