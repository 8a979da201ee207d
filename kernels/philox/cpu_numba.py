"""Philox4x32 for Numba: the one device-independent round function every CPU kernel inlines.

Words are carried in uint64 lanes holding 32-bit values: AVX2 has no 32x32->64 multiply on
32-bit lanes, but ``vpmuludq`` multiplies the low halves of 64-bit lanes, four at a time. Inside
the rounds the upper halves are left dirty (the products' low words keep their high halves, the
xors carry them along): every value is masked right before it is multiplied, which ``vpmuludq``
does for free, and once at the end. That saves two ``vpand`` per round. Every literal is a typed
``np.uint64``: a bare Python int would turn ``uint64 + int64`` into float64. No fastmath anywhere
in RNG code.

Measured on the 2-core AVX2 EPYC (Zen 3, 3.2 GHz), one thread: ``fill_words`` 0.64 ns per 32-bit
word (0.88 for the earlier uint64-tile form), 179 instructions per 8 blocks at ~2.8 per cycle;
the vector-ALU bound of this formulation (8 ops per round per 4 blocks, 4 pipes) would be
~0.4. The rest is the multiply-shift-xor latency chain: a third independent stream runs out
of ymm registers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from fastreg._runtime import parallel_for

from .constants import M0, M1, MASK32, TWO_POW_M32, W0, W1

#: The twin interface, as in ref_numpy; the inline helpers above it are for other kernels.
__all__ = ["philox4x32", "random_bits"]

_M0 = np.uint64(M0)
_M1 = np.uint64(M1)
_W0 = np.uint64(W0)
_W1 = np.uint64(W1)
_MASK = np.uint64(MASK32)
_S32 = np.uint64(32)
_TWO32 = np.uint64(1 << 32)
_HALF = np.float64(0.5)
_TWO_POW_M32 = np.float64(TWO_POW_M32)
_TWO_PI = np.float64(2.0 * np.pi)

#: Philox blocks per parallel task of ``random_bits`` (64k words = 256 KiB, fits L2).
CHUNK = 1 << 14


@njit(inline="always")
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox4x32 rounds; all arguments and results are uint64 holding 32-bit words."""
    for _ in range(10):
        # Only the low halves of c0 and c2 are ever multiplied; c1 and c3 keep the products'
        # high halves as garbage that the final masks remove.
        p0 = _M0 * (c0 & _MASK)
        p1 = _M1 * (c2 & _MASK)
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1, (p0 >> _S32) ^ c3 ^ k1, p0
        # The bump after round 10 is never used; keeping it makes the loop body branch-free.
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0 & _MASK, c1 & _MASK, c2 & _MASK, c3 & _MASK


@njit(inline="always")
def philox_block(block, salt, offset, k0, k1):
    """The four words of counter ``(lo32(block), hi32(block), salt, offset)``; uint64 in and out."""
    return philox4x32_10(block & _MASK, block >> _S32, salt, offset, k0, k1)


@njit(inline="always")
def _put_pair(pairs, j, lo, hi, salt, offset, k0, k1):
    w0, w1, w2, w3 = philox4x32_10(lo, hi, salt, offset, k0, k1)
    # Two words per uint64, low word first: on a little-endian machine the uint32 view of
    # ``pairs`` is the element order, and LLVM packs with one shift and one blend per pair.
    pairs[2 * j] = w0 | (w1 << _S32)
    pairs[2 * j + 1] = w2 | (w3 << _S32)


@njit(cache=True)
def _fill_segment(pairs, lo, hi, count, salt, offset, k0, k1):
    # ``hi`` is fixed for the whole segment, so LLVM hoists most of round 1 and part of round 2
    # out of the loop (18 vector multiplies per 4 blocks instead of 20). Two independent streams
    # per iteration hide the multiply latency: 0.63 vs 0.83 ns/word with one stream. The second
    # stream's counters come from the hoisted ``lo2``: written as ``lo + (j + half)`` LLVM
    # rebuilt them from scalars every iteration, at the head of the dependency chain (0.80).
    half = count >> 1
    lo2 = lo + np.uint64(half)
    for j in range(half):
        _put_pair(pairs, j, lo + np.uint64(j), hi, salt, offset, k0, k1)
        _put_pair(pairs, j + half, lo2 + np.uint64(j), hi, salt, offset, k0, k1)
    if count & 1:
        _put_pair(pairs, count - 1, lo + np.uint64(count - 1), hi, salt, offset, k0, k1)


@njit(cache=True)
def fill_words(words, first_block, count, salt, offset, k0, k1):
    """Words of ``count`` consecutive blocks from ``first_block`` into the uint32 array ``words``
    (C-contiguous, at least ``4*count`` long): ``words[t] = bits(4*first_block + t)``.

    The vectorized tile filler: compiled on its own (not inlined into its caller's loop), so LLVM
    vectorizes it whatever loop calls it. ``salt``, ``offset``, ``k0`` and ``k1`` are uint64.
    """
    pairs = words[: 4 * count].view(np.uint64)
    done = 0
    while done < count:
        block = np.uint64(first_block) + np.uint64(done)
        lo = block & _MASK
        # Split where the block index's high word changes, so each segment has a fixed hi.
        step = min(count - done, np.int64(_TWO32 - lo))
        _fill_segment(
            pairs[2 * done : 2 * (done + step)], lo, block >> _S32, step, salt, offset, k0, k1
        )
        done += step


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


# Box-Muller without libm: Numba has no vector log/cos (no SVML here), and the scalar libm calls
# cost ~25 ns per normal. These branch-free functions vectorize with AVX2 (4 doubles per ymm) in
# a caller compiled with error_model="numpy" (the default "python" model adds a zero-division
# branch that blocks vectorization). Operation count is what sets the speed once vectorized
# (~0.09 ns per operation per element on one loaded core), so each is written for few
# operations: fdlibm's log in its one general form (40 operations), and cos as one odd
# polynomial after an exact reduction (25 operations, against 45 for a k_cos/k_sin pair with a
# quadrant select). Both stay within ~1 ulp of the exact value (tests/test_philox_numba.py
# checks against mpmath), so the backends agree to a few ulp (docs/contract/random-stream.md).
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: fdlibm's test on the high word of the mantissa, as a bound on m in [1, 2): above it, m is
#: halved so that the reduced mantissa lies in [sqrt(2)/2, sqrt(2)).
_SQRT2_CUT = 1.0 + 0x6A09C / 2.0**20
_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.int64(0x3FF0000000000000)
#: sin(s) = s + s*z*h(z), z = s*s, |s| <= pi/2: h is mpmath's Chebyshev fit (chebyfit, degree
#: 7 on [0, (pi/2)**2], 40 digits) of (sin(sqrt(z))/sqrt(z) - 1)/z, rounded to float64; relative
#: error of the rounded polynomial below 0.2 ulp.
_H0 = -0.16666666666666666
_H1 = 0.008333333333333316
_H2 = -0.00019841269841254974
_H3 = 2.7557319219163234e-06
_H4 = -2.5052107616996182e-08
_H5 = 1.6058977312464087e-10
_H6 = -7.643970296798572e-13
_H7 = 2.7314447669863995e-15
#: pi/2 and 3*pi/2 as float64 heads plus tails (mpmath, 50 digits): each sum holds ~107 bits.
_PIO2_HI = 1.5707963267948966
_PIO2_LO = 6.123233995736766e-17
_P3O2_HI = 4.71238898038469
_P3O2_LO = 1.8369701987210297e-16
_PI = 3.141592653589793


@njit(inline="always")
def log_unit(u):
    """``ln(u)`` for a normal float64 ``u`` in ``(0, 1]``: fdlibm's e_log.c, branch-free, in
    its hfsq form ``k*ln2 + f - (f*f/2 - s*(f*f/2 + R(s*s)))`` for every mantissa (fdlibm
    switches to a cheaper form near 1; this one is as accurate there)."""
    bits = np.float64(u).view(np.int64)
    e = np.float64(np.int32((bits >> 52) - 1023))
    m = np.int64((bits & _MANTISSA) | _ONE_BITS).view(np.float64)
    big = m >= _SQRT2_CUT  # reduce to [sqrt(2)/2, sqrt(2))
    m = m * 0.5 if big else m
    e = e + 1.0 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
    hfsq = 0.5 * f * f
    return e * _LN2_HI - ((hfsq - (s * (hfsq + r) + e * _LN2_LO)) - f)


@njit(inline="always")
def cos_unit(theta):
    """``cos(theta)`` for ``0 <= theta <= 2*pi``, as ``sin(s)``: ``s = pi/2 - theta`` up to pi,
    ``s = theta - 3*pi/2`` beyond, so ``|s| <= pi/2`` and one odd polynomial serves (no
    quadrants). Each head subtraction is exact where it matters (Sterbenz: ``theta`` in
    ``[pi/4, pi]``, resp. ``[3*pi/4, 3*pi]``), the tail enters last, and ``s`` keeps its relative
    accuracy near cos's zeros; below ``pi/4``, ``|cos'| < 0.71`` and the rounding costs < 1 ulp."""
    low = theta <= _PI
    head = (_PIO2_HI - theta) if low else (theta - _P3O2_HI)
    s = head + (_PIO2_LO if low else -_P3O2_LO)
    z = s * s
    z2 = z * z
    # Estrin's scheme after the leading term: a dependency chain of 5 multiply-adds instead of
    # Horner's 7 (the loop is latency-bound: llvm-mca 87 cycles per 8 normals against a
    # throughput bound of 40); the leading term outside keeps the error at Horner's 1.8 ulp.
    tail = ((_H1 + z * _H2) + z2 * (_H3 + z * _H4)) + (z2 * z2) * ((_H5 + z * _H6) + z2 * _H7)
    return s + (s * z) * (_H0 + z * tail)


@njit(inline="always")
def box_muller(wa, wb):
    """One standard normal from two 32-bit words (docs/contract/random-stream.md, Gaussian draws),
    in float64:
    ``sqrt(-2 ln u1) * cos(2 pi u2)``. Vectorizes only under ``error_model="numpy"``."""
    u1 = (np.float64(wa) + _HALF) * _TWO_POW_M32
    u2 = (np.float64(wb) + _HALF) * _TWO_POW_M32
    return math.sqrt(-2.0 * log_unit(u1)) * cos_unit(_TWO_PI * u2)


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


@njit(nogil=True, cache=True)
def _random_bits_blocks(out, first, lead, nfull, chunk, salt, offset, k0, k1, c0, c1):
    """Chunks ``[c0, c1)`` of ``chunk`` whole blocks, blocks ``first + ...`` into ``out``."""
    for task in range(c0, c1):
        b0 = task * chunk
        count = min(nfull, b0 + chunk) - b0
        base = lead + 4 * b0
        fill_words(out[base : base + 4 * count], first + b0, count, salt, offset, k0, k1)


@njit(cache=True)
def _random_bits_ends(out, start, lead, nfull, k0, k1, salt, offset):
    # The at most 3 + 3 words of the ragged ends, drawn one by one.
    n = out.size
    for i in range(lead):
        e = start + i
        out[i] = bits_of(np.uint64(e >> 2), e & 3, salt, offset, k0, k1)
    for i in range(lead + 4 * nfull, n):
        e = start + i
        out[i] = bits_of(np.uint64(e >> 2), e & 3, salt, offset, k0, k1)


def random_bits(n: int, k0: int, k1: int, salt: int, offset: int, start: int = 0) -> np.ndarray:
    """``bits(i)`` for flat indices ``i`` in ``[start, start + n)``
    (docs/contract/random-stream.md), as uint32."""
    out = np.empty(n, dtype=np.uint32)
    # Whole blocks inside [start, start + n) go through fill_words, in chunks of blocks.
    first = (start + 3) >> 2
    lead = min(4 * first - start, n)
    nfull = max((start + n) // 4 - first, 0)
    chunk = max(512, min(CHUNK, nfull // 8))
    k0, k1, salt, offset = (np.uint64(v) for v in (k0, k1, salt, offset))
    parallel_for(_random_bits_blocks, -(-nfull // chunk), out, np.int64(first), lead, nfull,
                 chunk, salt, offset, k0, k1, work=n)
    _random_bits_ends(out, np.int64(start), lead, nfull, k0, k1, salt, offset)
    return out
