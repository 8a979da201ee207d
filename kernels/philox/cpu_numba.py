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

    The vectorized tile filler: compiled on its own (not inlined into a parfor), so LLVM
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
# cost ~25 ns per normal. These branch-free ports of fdlibm's e_log.c and FreeBSD's k_cos.c /
# k_sin.c (both < 1 ulp) vectorize with AVX2 in a caller compiled with error_model="numpy" (the
# default "python" model adds a zero-division branch that blocks vectorization): ~6 ns per
# normal on one core. They differ from glibc by at most 1 ulp on the inputs Box-Muller uses.
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: fdlibm's integer tests on the high word of the mantissa, as bounds on m in [1, 2).
_SQRT2_CUT = 1.0 + 0x6A09C / 2.0**20
_FORM_LO = 1.0 + 0x6147A / 2.0**20
_FORM_HI = 1.0 + 0x6B851 / 2.0**20
_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.int64(0x3FF0000000000000)
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10
_INVPIO2 = 6.36619772367581382433e-01
#: pi/2 as 33 bits plus a tail (Cody-Waite): k * _PIO2_1 is exact for the k <= 4 we meet.
_PIO2_1 = 1.57079632673412561417e00
_PIO2_1T = 6.07710050650619224932e-11


@njit(inline="always")
def log_unit(u):
    """``ln(u)`` for a normal float64 ``u`` in ``(0, 1]``: fdlibm's e_log.c, branch-free."""
    bits = np.float64(u).view(np.int64)
    e = np.float64(np.int32((bits >> 52) - 1023))
    m = np.int64((bits & _MANTISSA) | _ONE_BITS).view(np.float64)
    # fdlibm picks between two equal forms for accuracy; both are computed and one selected
    form = (m >= _FORM_LO) and (m <= _FORM_HI)
    big = m >= _SQRT2_CUT  # reduce to [sqrt(2)/2, sqrt(2))
    m = m * 0.5 if big else m
    e = e + 1.0 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
    hfsq = 0.5 * f * f
    a = e * _LN2_HI - ((hfsq - (s * (hfsq + r) + e * _LN2_LO)) - f)
    b = e * _LN2_HI - ((s * (f - r) - e * _LN2_LO) - f)
    return a if form else b


@njit(inline="always")
def cos_reduced(x):
    """``cos(x)`` for ``0 <= x < 8``: one Cody-Waite step by pi/2, then the k_cos/k_sin kernels
    on ``|r| <= pi/4`` with the reduction's tail, and a branch-free quadrant select."""
    k = np.floor(x * _INVPIO2 + 0.5)
    y0 = x - k * _PIO2_1
    r = y0 - k * _PIO2_1T
    tail = (y0 - r) - k * _PIO2_1T
    z = r * r
    w = z * z
    rc = z * (_C1 + z * (_C2 + z * _C3)) + w * w * (_C4 + z * (_C5 + z * _C6))
    hz = 0.5 * z
    wc = 1.0 - hz
    c = wc + (((1.0 - wc) - hz) + (z * rc - r * tail))
    rs = _S2 + z * (_S3 + z * _S4) + z * w * (_S5 + z * _S6)
    v = z * r
    s = r - ((z * (0.5 * tail - v * rs) - tail) - v * _S1)
    q = k - 4.0 * np.floor(k * 0.25)
    value = s if (q == 1.0 or q == 3.0) else c
    return -value if (q == 1.0 or q == 2.0) else value


@njit(inline="always")
def box_muller(wa, wb):
    """One standard normal from two 32-bit words (SPEC §3, Gaussian draws), in float64:
    ``sqrt(-2 ln u1) * cos(2 pi u2)``. Vectorizes only under ``error_model="numpy"``."""
    u1 = (np.float64(wa) + _HALF) * _TWO_POW_M32
    u2 = (np.float64(wb) + _HALF) * _TWO_POW_M32
    return math.sqrt(-2.0 * log_unit(u1)) * cos_reduced(_TWO_PI * u2)


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
    """``bits(i)`` for flat indices ``i`` in ``[start, start + n)`` (SPEC §3.3), as uint32."""
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
