"""Dropout-family GPU twin (CuPy): Philox drawn inside CUDA kernels, no mask stored.

Same names and signatures as ``ref_numpy``; the kernels are ``kernels/dropout/dropout.cu``. A
work item is one Philox block (four consecutive flat indices), walked by a grid-stride loop, so
the bits never depend on the launch configuration; a thread loads and stores its four elements as
one vector where the arrays are aligned. float16 and bfloat16 compute in float32 (the scale is the
16-bit value of ``1/(1-p)`` widened, which rounds exactly like NumPy's 16-bit product).
"""

from __future__ import annotations

import cupy

from .. import cuda_launch as cl

__all__ = ["dropout_apply", "dropout_apply_pair", "gaussian_apply", "keep_mask"]


def keep_mask(n: int, k0: int, k1: int, salt: int, offset: int, threshold: int):
    """``bits(i) >= threshold`` for ``i`` in ``0..n-1``, as bool (True = kept)."""
    out = cupy.empty(n, dtype=cupy.bool_)
    kernel = cl.kernel("dropout", "dropout_mask", suffix="bool")
    args = (out, cl.u64(n), cl.u32(k0), cl.u32(k1), cl.u32(salt), cl.u32(offset), cl.u64(threshold))
    cl.launch(kernel, (n + 3) >> 2, args)
    return out


def dropout_apply(x, out, k0, k1, salt, offset, threshold, scale) -> None:
    """``out[i] = x[i] * scale`` if ``bits(i) >= threshold`` else ``+0.0`` (a select)."""
    cl.check_contiguous(x=x, out=out)
    n = x.size
    kernel = cl.kernel("dropout", "dropout_apply", x.dtype)
    args = (x, out, cl.u64(n), cl.u32(k0), cl.u32(k1), cl.u32(salt), cl.u32(offset),
            cl.u64(threshold), cl.scalar(x.dtype, scale))
    cl.launch(kernel, (n + 3) >> 2, args)


def dropout_apply_pair(x, out, g, k0, k1, salt, offset, threshold, scale) -> None:
    """``dropout_apply(x, out)`` and ``dropout_apply(g, g)`` under one mask, one Philox block per
    four elements for both: ``out[i] = x[i] * scale`` and ``g[i] = g[i] * scale`` where
    ``bits(i) >= threshold``, ``+0.0`` elsewhere. ``g`` overlaps neither ``x`` nor ``out``."""
    cl.check_contiguous(x=x, out=out, g=g)
    n = x.size
    kernel = cl.kernel("dropout", "dropout_applypair", x.dtype)
    args = (x, out, g, cl.u64(n), cl.u32(k0), cl.u32(k1), cl.u32(salt), cl.u32(offset),
            cl.u64(threshold), cl.scalar(x.dtype, scale))
    cl.launch(kernel, (n + 3) >> 2, args)


def gaussian_apply(x, out, k0, k1, offset, additive, multiplicative) -> None:
    """``out[i] = x[i] + additive * n(i)`` if ``multiplicative == 0``, else
    ``x[i] * (1 + multiplicative * n(i))``: the two formulas as written, so infinities stay
    infinite (no ``0 * inf``). ``n`` standard normal (Box-Muller, salt 2), float64, cast once."""
    cl.check_contiguous(x=x, out=out)
    n = x.size
    kernel = cl.kernel("dropout", "gaussian_apply", x.dtype)
    args = (x, out, cl.u64(n), cl.u32(k0), cl.u32(k1), cl.u32(offset),
            cupy.float64(additive), cupy.float64(multiplicative))
    cl.launch(kernel, (n + 3) >> 2, args)  # four elements (two pair blocks) per work item
