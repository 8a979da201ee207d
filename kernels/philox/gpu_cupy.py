"""Philox4x32 on the GPU (CuPy): the CUDA twin of ``ref_numpy``/``cpu_numba``.

The kernels are ``kernels/philox/philox.cu`` over the Philox preamble rendered from
``constants.py``; every array is a CuPy array and nothing crosses to the host.
"""

from __future__ import annotations

import cupy

from .. import cuda_launch as cl

__all__ = ["philox4x32", "random_bits"]


def philox4x32(counter, key, rounds):
    """Philox4x32-``rounds`` of ``counter`` (n, 4) under ``key`` (n, 2); uint32 CuPy arrays."""
    counter = cupy.ascontiguousarray(counter, dtype=cupy.uint32)
    key = cupy.ascontiguousarray(key, dtype=cupy.uint32)
    n = counter.shape[0]
    out = cupy.empty((n, 4), dtype=cupy.uint32)
    kernel = cl.kernel("philox", "philox_rounds", suffix="u32")
    cl.launch(kernel, n, (counter, key, out, cl.u64(n), cupy.int32(rounds)))
    return out


def random_bits(n: int, k0: int, k1: int, salt: int, offset: int, start: int = 0):
    """``bits(i)`` for flat indices ``i`` in ``[start, start + n)``
    (docs/contract/random-stream.md), as uint32."""
    out = cupy.empty(n, dtype=cupy.uint32)
    if n:
        blocks = ((start + n - 1) >> 2) - (start >> 2) + 1
        kernel = cl.kernel("philox", "philox_bits", suffix="u32")
        args = (out, cl.u64(start), cl.u64(n), cl.u32(k0), cl.u32(k1), cl.u32(salt), cl.u32(offset))
        cl.launch(kernel, blocks, args)
    return out
