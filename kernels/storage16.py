"""Numba conversions between the 16-bit storage types and float32, on their uint16 bits.

Numba types neither ``numpy.float16`` nor ``ml_dtypes.bfloat16`` arrays, so kernels read and
write their ``uint16`` views and convert with the integer arithmetic below, written as LLVM IR on
32-bit lanes: branch-free (selects), so the loops that call them vectorize. Every function is
exact against NumPy's and ml_dtypes' casts, checked on all 2**16 inputs of the widenings and all
2**32 of the roundings (tests/test_dtypes16.py keeps every tie class and a random million):
round to nearest even, overflow to inf, NaN stays NaN (quieted; the sign is kept).

float16 uses LLVM's ``half`` conversions (one F16C instruction) when the target has F16C; without
it LLVM would call compiler-rt's ``__truncsfhf2``, which Numba does not link (a segfault with
``NUMBA_CPU_NAME=generic``), so the integer forms (``*_portable``) are compiled instead.

Numba's disk cache keys a kernel on its own file only: after editing this module, touch the
modules whose kernels inline these functions (``dropout/cpu_numba.py``) or clear the cache.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = [
    "bf16_to_f32",
    "bits_view",
    "f16_to_f32",
    "f32_to_bf16",
    "f16_to_f32_portable",
    "f32_to_f16",
    "f32_to_f16_portable",
    "f64_to_f32_odd",
]

_U = np.uint32
_I16, _I32, _F32 = ir.IntType(16), ir.IntType(32), ir.FloatType()

# The conversions are written in LLVM IR on i32 lanes: the same arithmetic in Numba source is
# typed in 64 bits (Numba widens uint32 + uint32 to uint64), which halves the vector width and
# adds truncations (a bfloat16 dropout select: 0.84 against 0.30 ns/element for float32).
# Magnitudes (sign bit cleared) are compared signed and NaN is found by a float compare: AVX2
# has no unsigned vector compare, LLVM emulates one with two more instructions.


def _c(value: int) -> ir.Constant:
    return ir.Constant(_I32, value)


def _select_chain(builder, cases, default):
    """``cases`` is ``[(condition, value), ...]``: the first true condition's value (selects)."""
    result = default
    for condition, value in reversed(cases):
        result = builder.select(condition, value, result)
    return result


@intrinsic
def _f32_bits(typingctx, value):
    """The bits of a float32 as uint32 (a bitcast: no instruction)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _I32)

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, bits):
    """The float32 whose bits are the uint32 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _F32)

    return types.float32(types.uint32), codegen


@intrinsic
def bf16_to_f32(typingctx, h):
    """The float32 value of bfloat16 bits ``h`` (uint16): its upper half (exact)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.shl(builder.zext(args[0], _I32), _c(16)), _F32)

    return types.float32(types.uint16), codegen


@intrinsic
def f32_to_bf16(typingctx, f):
    """``f`` rounded to bfloat16 (nearest even), as uint16 bits: add ``0x7FFF`` plus the kept
    part's lowest bit and truncate; a carry into the exponent is the right rounding up, to inf
    at the top. NaN would carry into the sign or vanish, so it is selected apart and quieted."""
    def codegen(context, builder, signature, args):
        u = builder.bitcast(args[0], _I32)
        high = builder.lshr(u, _c(16))
        rounded = builder.lshr(
            builder.add(builder.add(u, _c(0x7FFF)), builder.and_(high, _c(1))), _c(16)
        )
        nan = builder.fcmp_unordered("uno", args[0], args[0])
        return builder.trunc(builder.select(nan, builder.or_(high, _c(0x40)), rounded), _I16)

    return types.uint16(types.float32), codegen


def _f16_to_f32_ir(builder, h):
    """The float32 value of float16 bits ``h`` (i16), exact: the exponent rebased by 112;
    inf/NaN exponents to 255; subnormals normalized by a float32 subtraction of 2**-14
    (F. Giesen's method)."""
    h32 = builder.zext(h, _I32)
    o = builder.shl(builder.and_(h32, _c(0x7FFF)), _c(13))
    exponent = builder.and_(o, _c(0x0F800000))
    subnormal = builder.bitcast(
        builder.fsub(builder.bitcast(builder.add(o, _c(113 << 23)), _F32),
                     ir.Constant(_F32, 2.0**-14)),
        _I32,
    )
    r = _select_chain(builder, [
        (builder.icmp_unsigned("==", exponent, _c(0x0F800000)), builder.add(o, _c(224 << 23))),
        (builder.icmp_unsigned("==", exponent, _c(0)), subnormal),
    ], builder.add(o, _c(112 << 23)))
    sign = builder.shl(builder.and_(h32, _c(0x8000)), _c(16))
    return builder.bitcast(builder.or_(r, sign), _F32)


def _f32_to_f16_ir(builder, f):
    """``f`` (float) rounded to float16 (nearest even), as i16 bits: normals by the integer
    rounding of :func:`f32_to_bf16` at bit 13 with the exponent rebased; below 2**-14 by a
    float32 add of 0.5 that rounds the subnormal mantissa into the low bits; from 65520 (bits
    ``143 << 23``) inf; NaN quieted (F. Giesen's method)."""
    u = builder.bitcast(f, _I32)
    sign = builder.and_(builder.lshr(u, _c(16)), _c(0x8000))
    a = builder.and_(u, _c(0x7FFFFFFF))
    nan = builder.fcmp_unordered("uno", f, f)
    top = builder.select(nan, _c(0x7E00), _c(0x7C00))
    subnormal = builder.sub(
        builder.bitcast(builder.fadd(builder.bitcast(a, _F32), ir.Constant(_F32, 0.5)), _I32),
        _c(126 << 23),
    )
    odd = builder.and_(builder.lshr(a, _c(13)), _c(1))
    normal = builder.lshr(
        builder.add(builder.add(builder.sub(a, _c(112 << 23)), _c(0xFFF)), odd), _c(13)
    )
    r = _select_chain(builder, [
        (builder.icmp_signed(">=", a, _c(143 << 23)), top),
        (builder.icmp_signed("<", a, _c(113 << 23)), subnormal),
    ], normal)
    return builder.trunc(builder.or_(r, sign), _I16)


def _has_f16c(context) -> bool:
    """Whether the code is compiled for x86 with F16C (``vcvtph2ps``/``vcvtps2ph``): then
    LLVM's ``half`` conversions are single instructions. The feature string is the one the
    target machine (and Numba's cache key) uses: empty for ``NUMBA_CPU_NAME=generic``."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+f16c" in features.split(",")


@intrinsic
def f16_to_f32_portable(typingctx, h):
    """The float32 value of float16 bits ``h`` (uint16) by integer arithmetic (any CPU)."""
    def codegen(context, builder, signature, args):
        return _f16_to_f32_ir(builder, args[0])

    return types.float32(types.uint16), codegen


@intrinsic
def f32_to_f16_portable(typingctx, f):
    """``f`` rounded to float16 bits (uint16) by integer arithmetic (any CPU)."""
    def codegen(context, builder, signature, args):
        return _f32_to_f16_ir(builder, args[0])

    return types.uint16(types.float32), codegen


@intrinsic
def f16_to_f32(typingctx, h):
    """The float32 value of float16 bits ``h`` (uint16), exact: F16C's ``vcvtph2ps`` where the
    target has it, else :func:`f16_to_f32_portable`'s arithmetic."""
    def codegen(context, builder, signature, args):
        if _has_f16c(context):
            return builder.fpext(builder.bitcast(args[0], ir.HalfType()), _F32)
        return _f16_to_f32_ir(builder, args[0])

    return types.float32(types.uint16), codegen


@intrinsic
def f32_to_f16(typingctx, f):
    """``f`` rounded to float16 bits (uint16), nearest even: F16C's ``vcvtps2ph`` where the
    target has it, else :func:`f32_to_f16_portable`'s arithmetic."""
    def codegen(context, builder, signature, args):
        if _has_f16c(context):
            return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), _I16)
        return _f32_to_f16_ir(builder, args[0])

    return types.uint16(types.float32), codegen


@njit(inline="always")
def f64_to_f32_odd(d):
    """``d`` rounded to float32 *to odd*: the nearest float32 if exact, else the one of the two
    neighbours of ``d`` whose last bit is 1. Rounding that to float16/bfloat16 (24 > 11 + 1
    bits) equals rounding ``d`` once, so float64 results (Gaussian noise) are rounded once.
    NaN stays NaN, overflow gives inf after the second rounding."""
    f = np.float32(d)
    back = np.float64(f)
    bits = _f32_bits(f)
    inexact = back != d and d == d
    # The float32 neighbour on the other side of d: one bit up in magnitude if f fell short.
    other = _U(bits + _U(1)) if abs(back) < abs(d) else _U(bits - _U(1))
    return _bits_f32(other if inexact and (bits & _U(1)) == _U(0) else bits)


def bits_view(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """A float16/bfloat16 array's ``uint16`` view and whether it is bfloat16."""
    return a.view(np.uint16), a.dtype.name == "bfloat16"
