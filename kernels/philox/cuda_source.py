"""The CUDA Philox4x32-10 preamble, rendered from :mod:`.constants` (the numbers live there only).

Every ``.cu`` file under ``kernels/`` is compiled after this text (see ``kernels/cuda_launch.py``),
so all GPU kernels share one round function. The functions are ``__host__ __device__``: the test
suite compiles them into a host library and compares them with the NumPy stream, which is how CI
checks the GPU stream without a GPU. No header is included (NVRTC, which CuPy uses, finds neither
curand nor the C library); ``sqrt``/``log``/``cos`` come from the CUDA math builtins.
"""

from __future__ import annotations

import math

from . import constants as c

_TEMPLATE = """\
// ---- fastreg Philox4x32-10 preamble (RNG_SPEC_VERSION {version}) ----
// Rendered by fastreg._kernels.philox.cuda_source from constants.py; edit the constants there.
#ifndef FASTREG_PHILOX_PREAMBLE
#define FASTREG_PHILOX_PREAMBLE

#ifdef __CUDACC__
#define FR_HD __host__ __device__ __forceinline__
#else
#define FR_HD static inline
#endif

typedef unsigned int fr_u32;
typedef unsigned long long fr_u64;

#define FR_RNG_SPEC_VERSION {version}
#define FR_PHILOX_M0 {m0:#010x}u
#define FR_PHILOX_M1 {m1:#010x}u
#define FR_PHILOX_W0 {w0:#010x}u
#define FR_PHILOX_W1 {w1:#010x}u
#define FR_PHILOX_ROUNDS {rounds}
#define FR_SALT_DROPOUT {salt_dropout}u
#define FR_SALT_DROPCONNECT {salt_dropconnect}u
#define FR_SALT_GAUSSIAN {salt_gaussian}u
// 2**-32 and 2*pi as exact double literals (the same doubles NumPy multiplies by).
#define FR_TWO_POW_M32 {two_pow_m32!r}
#define FR_TWO_PI {two_pi!r}

struct fr_words {{
    fr_u32 w[4];
}};

// One round: (c0,c1,c2,c3) -> (hi(M1*c2)^c1^k0, lo(M1*c2), hi(M0*c0)^c3^k1, lo(M0*c0)).
// The 32x32->64 product compiles to mul.lo/mul.hi on the device and one imul on the host.
FR_HD void fr_philox_round(fr_u32 &c0, fr_u32 &c1, fr_u32 &c2, fr_u32 &c3,
                           fr_u32 k0, fr_u32 k1) {{
    const fr_u64 p0 = (fr_u64)FR_PHILOX_M0 * c0;
    const fr_u64 p1 = (fr_u64)FR_PHILOX_M1 * c2;
    const fr_u32 n0 = (fr_u32)(p1 >> 32) ^ c1 ^ k0;
    const fr_u32 n2 = (fr_u32)(p0 >> 32) ^ c3 ^ k1;
    c1 = (fr_u32)p1;
    c3 = (fr_u32)p0;
    c0 = n0;
    c2 = n2;
}}

// Philox4x32-rounds; the key is bumped by (W0, W1) mod 2**32 before rounds 2..rounds.
FR_HD fr_words fr_philox4x32(fr_u32 c0, fr_u32 c1, fr_u32 c2, fr_u32 c3,
                             fr_u32 k0, fr_u32 k1, int rounds) {{
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int r = 0; r < rounds; ++r) {{
        if (r) {{
            k0 += FR_PHILOX_W0;
            k1 += FR_PHILOX_W1;
        }}
        fr_philox_round(c0, c1, c2, c3, k0, k1);
    }}
    fr_words out;
    out.w[0] = c0;
    out.w[1] = c1;
    out.w[2] = c2;
    out.w[3] = c3;
    return out;
}}

// docs/contract/random-stream.md: the four words of counter (lo32(block), hi32(block), salt,
// offset).
FR_HD fr_words fr_philox_block(fr_u64 block, fr_u32 salt, fr_u32 offset,
                               fr_u32 k0, fr_u32 k1) {{
    return fr_philox4x32((fr_u32)block, (fr_u32)(block >> 32), salt, offset, k0, k1,
                         FR_PHILOX_ROUNDS);
}}

// bits(i): word i & 3 of block i >> 2. For ragged edges; kernels draw whole blocks.
FR_HD fr_u32 fr_bits_at(fr_u64 i, fr_u32 salt, fr_u32 offset, fr_u32 k0, fr_u32 k1) {{
    return fr_philox_block(i >> 2, salt, offset, k0, k1).w[i & 3];
}}

// docs/contract/random-stream.md: kept iff bits >= threshold, compared as 64-bit so threshold
// 2**32 drops all.
FR_HD bool fr_keep(fr_u32 bits, fr_u64 threshold) {{
    return (fr_u64)bits >= threshold;
}}

// docs/contract/random-stream.md: a select, not a multiply, so a dropped NaN or Inf gives exactly
// +0.0.
template <typename C>
FR_HD C fr_select_scale(bool keep, C v, C scale) {{
    return keep ? v * scale : (C)0;
}}

// Box-Muller on two words, in double: u = (w + 0.5) * 2**-32 lies in (0, 1), never 0 or 1.
FR_HD double fr_box_muller(fr_u32 wa, fr_u32 wb) {{
    const double u1 = ((double)wa + 0.5) * FR_TWO_POW_M32;
    const double u2 = ((double)wb + 0.5) * FR_TWO_POW_M32;
    return sqrt(-2.0 * log(u1)) * cos(FR_TWO_PI * u2);
}}

// Gaussian draw of element i: block i >> 1 under salt 2, words (2h, 2h+1) with h = i & 1.
FR_HD double fr_normal_at(fr_u64 i, fr_u32 offset, fr_u32 k0, fr_u32 k1) {{
    const fr_words w = fr_philox_block(i >> 1, FR_SALT_GAUSSIAN, offset, k0, k1);
    const int h = (int)(i & 1) * 2;
    return fr_box_muller(w.w[h], w.w[h + 1]);
}}

#endif  // FASTREG_PHILOX_PREAMBLE
// ---- end of the Philox preamble ----
"""


def philox_preamble() -> str:
    """The Philox device/host functions as CUDA C++ text, with every number from constants.py."""
    return _TEMPLATE.format(
        version=c.RNG_SPEC_VERSION,
        m0=c.M0,
        m1=c.M1,
        w0=c.W0,
        w1=c.W1,
        rounds=c.ROUNDS,
        salt_dropout=c.SALT_DROPOUT,
        salt_dropconnect=c.SALT_DROPCONNECT,
        salt_gaussian=c.SALT_GAUSSIAN,
        two_pow_m32=c.TWO_POW_M32,
        two_pi=2.0 * math.pi,
    )
