"""What every ``gpu_cupy.py`` twin shares: the CUDA source assembly, the dtype tables, module
loading through ``cupy.RawModule``, and the launch configuration.

A family's kernels live in ``kernels/<family>/<family>.cu``; the text compiled is
``philox_preamble() + dtype_preamble() + <family>.cu`` with :data:`OPTIONS`, both at run time
(CuPy/NVRTC) and in the nvcc test of CI (:func:`source` is the one place that builds it). Kernels
are named ``fastreg_<op>_<stage>_<suffix>``; float16 and bfloat16 data compute in float32 and
round once (to nearest even) on the way back.

Every kernel walks its work items (Philox blocks, rows, ...) with a grid-stride loop, and each work
item's result depends only on its index, so any block size or grid gives the same bits; tests vary
both with :func:`launch_config`. Importing this module does not import CuPy.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .philox.cuda_source import philox_preamble

KERNEL_DIR = Path(__file__).resolve().parent

#: Compiler options for NVRTC (CuPy) and nvcc alike. No FMA contraction: the elementwise formulas
#: then round like NumPy's, so GPU and CPU values agree bit for bit wherever no transcendental is
#: involved; the kernels are memory-bound, so the lost FMAs cost nothing measurable.
OPTIONS = ("--std=c++14", "--fmad=false")


class FloatType(NamedTuple):
    suffix: str  # kernel-name suffix
    ctype: str  # element type in CUDA
    compute: type  # NumPy type of the scalars a kernel takes (16-bit types compute in float32)


#: Every element type the kernels are instantiated for, by dtype name (the CUDA side is rendered
#: from it, see FR_FOR_EACH_FLOAT), whether or not this process can make arrays of it.
FLOAT_TYPES: dict[str, FloatType] = {
    "float16": FloatType("f16", "fr_half", np.float32),
    "bfloat16": FloatType("bf16", "fr_bf16", np.float32),
    "float32": FloatType("f32", "float", np.float32),
    "float64": FloatType("f64", "double", np.float64),
}


def _bfloat16() -> np.dtype | None:
    """NumPy's bfloat16 (``ml_dtypes.bfloat16``, what CuPy's bfloat16 arrays carry), or None."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


#: The one dtype table of the GPU twins: the dtypes an array can have here, to their kernels.
FLOATS: dict[np.dtype, FloatType] = {
    dtype: FLOAT_TYPES[dtype.name]
    for dtype in (np.dtype(np.float16), _bfloat16(), np.dtype(np.float32), np.dtype(np.float64))
    if dtype is not None
}

_DTYPE_PREAMBLE = """\
// ---- fastreg dtype preamble (rendered by fastreg._kernels.cuda_launch) ----
#ifndef FASTREG_DTYPE_PREAMBLE
#define FASTREG_DTYPE_PREAMBLE

// 16-bit floats as their bit patterns: no cuda_fp16.h/cuda_bf16.h needed (NVRTC may not find
// them). All arithmetic is done in float32, rounded to the storage type once, to nearest even.
struct fr_half {
    unsigned short bits;
};
struct fr_bf16 {
    unsigned short bits;
};

template <typename T> struct fr_compute { typedef T type; };
template <> struct fr_compute<fr_half> { typedef float type; };
template <> struct fr_compute<fr_bf16> { typedef float type; };

FR_HD float fr_load(const float *p, fr_u64 i) { return p[i]; }
FR_HD double fr_load(const double *p, fr_u64 i) { return p[i]; }
FR_HD void fr_store(float *p, fr_u64 i, float v) { p[i] = v; }
FR_HD void fr_store(double *p, fr_u64 i, double v) { p[i] = v; }

// float32 <-> its bits: the device's register moves; memcpy on the host (the test suite's harness
// and its emulator, which defines FR_HOST_EMULATION).
#if defined(__CUDA_ARCH__) && !defined(FR_HOST_EMULATION)
FR_HD fr_u32 fr_float_bits(float v) { return __float_as_uint(v); }
FR_HD float fr_bits_float(fr_u32 bits) { return __uint_as_float(bits); }
#else
FR_HD fr_u32 fr_float_bits(float v) {
    fr_u32 bits;
    __builtin_memcpy(&bits, &v, sizeof bits);
    return bits;
}
FR_HD float fr_bits_float(fr_u32 bits) {
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}
#endif

// float16: on the device the PTX cvt instructions; on the host the same IEEE conversions in
// integer code, rounding to nearest even like cvt.rn and NumPy.
#if defined(__CUDA_ARCH__) && !defined(FR_HOST_EMULATION)
FR_HD float fr_half_to_float(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
FR_HD unsigned short fr_float_to_half(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}
#else
FR_HD float fr_half_to_float(unsigned short h) {
    const fr_u32 sign = (fr_u32)(h & 0x8000u) << 16;
    fr_u32 exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu, bits;
    if (exponent == 0x1Fu) {  // Inf, NaN (payload kept)
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {  // subnormal: mantissa * 2**-24, normalized
        exponent = 113u;
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            --exponent;
        }
        bits = sign | (exponent << 23) | ((mantissa & 0x3FFu) << 13);
    }
    return fr_bits_float(bits);
}
FR_HD unsigned short fr_float_to_half(float v) {
    const fr_u32 bits = fr_float_bits(v);
    const fr_u32 sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7FFFFFFFu;
    if (magnitude > 0x7F800000u) {  // NaN: keep the top payload bits, never turn into Inf
        const fr_u32 payload = (magnitude >> 13) & 0x3FFu;
        return (unsigned short)(sign | 0x7C00u | (payload ? payload : 1u));
    }
    if (magnitude >= 0x477FF000u) return (unsigned short)(sign | 0x7C00u);  // >= 65520: Inf
    fr_u32 result, remainder, half;
    if (magnitude >= 0x38800000u) {  // a normal float16
        result = (magnitude >> 13) - (112u << 10);
        remainder = magnitude & 0x1FFFu;
        half = 0x1000u;
    } else if (magnitude >= 0x33000000u) {  // a subnormal float16 (or a tie to zero)
        const fr_u32 shift = 126u - (magnitude >> 23);
        const fr_u32 significand = (magnitude & 0x7FFFFFu) | 0x800000u;
        result = significand >> shift;
        remainder = significand & ((1u << shift) - 1u);
        half = 1u << (shift - 1u);
    } else {
        return (unsigned short)sign;
    }
    if (remainder > half || (remainder == half && (result & 1u))) ++result;
    return (unsigned short)(sign | result);
}
#endif
FR_HD float fr_load(const fr_half *p, fr_u64 i) { return fr_half_to_float(p[i].bits); }
FR_HD void fr_store(fr_half *p, fr_u64 i, float v) { p[i].bits = fr_float_to_half(v); }

// bfloat16 is the top half of a float32, so widening is exact (a shift) and narrowing rounds the
// low 16 bits away, to nearest even; the exponent is float32's, so there are no bfloat16-only
// subnormals or overflows (values past the largest bfloat16 round to Inf). NaN becomes the quiet
// NaN sign|0x7FC0, as ml_dtypes and PyTorch give. The same integer code on device and host, so
// the host tests check the device's instructions.
FR_HD float fr_bf16_to_float(unsigned short h) { return fr_bits_float((fr_u32)h << 16); }
FR_HD unsigned short fr_float_to_bf16(float v) {
    const fr_u32 bits = fr_float_bits(v);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u)  // NaN
        return (unsigned short)(((bits >> 16) & 0x8000u) | 0x7FC0u);
    return (unsigned short)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}
FR_HD float fr_load(const fr_bf16 *p, fr_u64 i) { return fr_bf16_to_float(p[i].bits); }
FR_HD void fr_store(fr_bf16 *p, fr_u64 i, float v) { p[i].bits = fr_float_to_bf16(v); }

// Four consecutive elements (one Philox block's worth) moved as one access: 16 bytes for float32
// (ld/st.global.v4), 8 for the 16-bit types, two 16-byte halves for float64. Only where the
// array's address is a multiple of the quad's alignment (fr_quad_aligned, tested once per array,
// so a warp never diverges on it); other arrays and the ragged tail go element by element.
// FR_CHECK_ALIGNED lets the host emulator report a misaligned vector access (a fault on a GPU).
#ifndef FR_CHECK_ALIGNED
#define FR_CHECK_ALIGNED(pointer, alignment) ((void)0)
#endif
template <typename T>
struct alignas(4 * sizeof(T) < 16 ? 4 * sizeof(T) : 16) fr_quad {
    T v[4];
};
template <typename T>
FR_HD bool fr_quad_aligned(const T *p) {
    return (fr_u64)p % alignof(fr_quad<T>) == 0;
}
// The quad starting at element `base` (a multiple of 4) of an aligned array.
template <typename T>
FR_HD fr_quad<T> fr_load_quad(const T *p, fr_u64 base) {
    FR_CHECK_ALIGNED(p + base, alignof(fr_quad<T>));
    return *reinterpret_cast<const fr_quad<T> *>(p + base);
}
template <typename T>
FR_HD void fr_store_quad(T *p, fr_u64 base, const fr_quad<T> &q) {
    FR_CHECK_ALIGNED(p + base, alignof(fr_quad<T>));
    *reinterpret_cast<fr_quad<T> *>(p + base) = q;
}
// Four keep flags (bytes) as one 4-byte access.
struct alignas(4) fr_bytes4 {
    unsigned char v[4];
};
FR_HD bool fr_bytes4_aligned(const unsigned char *p) { return (fr_u64)p % 4 == 0; }
FR_HD fr_bytes4 fr_load_bytes4(const unsigned char *p, fr_u64 base) {
    FR_CHECK_ALIGNED(p + base, 4);
    return *reinterpret_cast<const fr_bytes4 *>(p + base);
}
FR_HD void fr_store_bytes4(unsigned char *p, fr_u64 base, const fr_bytes4 &q) {
    FR_CHECK_ALIGNED(p + base, 4);
    *reinterpret_cast<fr_bytes4 *>(p + base) = q;
}

#ifdef __CUDACC__
// Grid-stride loop over work items: results never depend on the launch configuration.
#define FR_GRID_STRIDE(var, count)                                                  \\
    for (fr_u64 var = (fr_u64)blockIdx.x * blockDim.x + threadIdx.x; var < (count); \\
         var += (fr_u64)gridDim.x * blockDim.x)
#endif

// One phase of a cooperative (shared-memory) kernel: f(thread, threads) with every thread of the
// block, then a barrier. On the host (the test harness) the same phase runs for each of `threads`
// emulated threads in turn, which is exact because phases only meet at the barrier; so the host
// library runs a tiled kernel's own code. Call it with block-uniform control flow only.
template <class F>
FR_HD void fr_block_run(int threads, F f) {
#ifdef __CUDA_ARCH__
    (void)threads;
    f((int)threadIdx.x, (int)blockDim.x);
    __syncthreads();
#else
    for (int t = 0; t < threads; ++t) f(t, threads);
#endif
}

FR_HD fr_u64 fr_cdiv(fr_u64 a, fr_u64 b) { return (a + b - 1) / b; }
FR_HD int fr_span(fr_u64 total, fr_u64 lo, int tile) {
    return total - lo < (fr_u64)tile ? (int)(total - lo) : tile;
}

// X(suffix, element type) for every float dtype a GPU kernel is instantiated for.
#define FR_FOR_EACH_FLOAT(X) {for_each}

#endif  // FASTREG_DTYPE_PREAMBLE
// ---- end of the dtype preamble ----
"""


def dtype_preamble() -> str:
    """Element types, 16-bit float and vector load/store and the per-dtype instantiation macro,
    as CUDA text."""
    for_each = " ".join(f"X({t.suffix}, {t.ctype})" for t in FLOAT_TYPES.values())
    return _DTYPE_PREAMBLE.replace("{for_each}", for_each)


def cu_path(family: str) -> Path:
    """``kernels/<family>/<family>.cu``."""
    return KERNEL_DIR / family / f"{family}.cu"


def source(family: str) -> str:
    """The full CUDA text compiled for ``family``: both preambles, then its ``.cu`` file."""
    return philox_preamble() + dtype_preamble() + cu_path(family).read_text()


_DEFINE = re.compile(r"^#define (FR_\w+) (\d+)\s*$", re.MULTILINE)


@functools.cache
def constants(family: str) -> dict[str, int]:
    """The integer ``#define FR_...`` lines of ``<family>.cu`` (tile sizes): the ``.cu`` file is
    their only home, and the twin sizes its grids from them."""
    text = cu_path(family).read_text()
    return {name: int(value) for name, value in _DEFINE.findall(text)}


def float_type(dtype: Any) -> FloatType:
    """The :data:`FLOATS` row of ``dtype`` (validated upstream, so a miss is a bug)."""
    return FLOATS[np.dtype(dtype)]


def scalar(dtype: Any, value: Any) -> Any:
    """``value`` as the C scalar type the kernels of ``dtype`` take (float for 16-bit types)."""
    return float_type(dtype).compute(value)


@functools.cache
def _module(family: str) -> Any:
    import cupy

    return cupy.RawModule(code=source(family), options=OPTIONS)


def kernel(family: str, op_stage: str, dtype: Any = None, suffix: str | None = None) -> Any:
    """The compiled kernel ``fastreg_<op_stage>_<suffix>`` of ``family``; the suffix is the
    dtype's (f16/bf16/f32/f64) unless given (``"bool"``, ``"u32"`` for the dtype-free kernels)."""
    if suffix is None:
        suffix = float_type(dtype).suffix
    return _module(family).get_function(f"fastreg_{op_stage}_{suffix}")


class LaunchConfig(NamedTuple):
    block_size: int = 256
    max_blocks: int | None = None  # None: 32 blocks per multiprocessor


_launch: contextvars.ContextVar[LaunchConfig | None] = contextvars.ContextVar(
    "fastreg_cuda_launch", default=None
)
#: Resident blocks per multiprocessor worth launching before the grid-stride loop takes over.
_BLOCKS_PER_SM = 32


@contextlib.contextmanager
def launch_config(block_size: int = 256, max_blocks: int | None = None) -> Iterator[LaunchConfig]:
    """Launch every kernel inside the block with ``block_size`` threads per block and at most
    ``max_blocks`` blocks (tests use it to prove results independent of the configuration)."""
    if not 1 <= block_size <= 1024:
        raise ValueError(f"block_size must be in [1, 1024], got {block_size}")
    if max_blocks is not None and max_blocks < 1:
        raise ValueError(f"max_blocks must be >= 1 or None, got {max_blocks}")
    token = _launch.set(LaunchConfig(block_size, max_blocks))
    try:
        yield LaunchConfig(block_size, max_blocks)
    finally:
        _launch.reset(token)


@functools.cache
def _multiprocessors(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


def grid(work_items: int) -> tuple[int, int]:
    """``(blocks, threads per block)`` for ``work_items`` grid-stride items."""
    import cupy

    config = _launch.get() or LaunchConfig()
    cap = config.max_blocks
    if cap is None:
        cap = _BLOCKS_PER_SM * _multiprocessors(cupy.cuda.Device().id)
    blocks = max(1, min(-(-work_items // config.block_size), cap))
    return blocks, config.block_size


def launch(kernel_function: Any, work_items: int, args: tuple) -> None:
    """Run ``kernel_function`` over ``work_items`` grid-stride items (nothing when zero)."""
    if work_items <= 0:
        return
    blocks, threads = grid(work_items)
    kernel_function((blocks,), (threads,), args)


def launch_blocks(kernel_function: Any, work_items: int, args: tuple) -> None:
    """Run ``kernel_function`` with one CUDA block per work item (block-stride over items
    beyond the cap): for kernels whose block cooperates on an item (a chunk, a group)."""
    if work_items <= 0:
        return
    config = _launch.get() or LaunchConfig()
    blocks = min(work_items, grid(work_items * config.block_size)[0])
    kernel_function((blocks,), (config.block_size,), args)


def pointer(array: Any) -> int:
    """The device address of ``array``'s first element, 0 for None (kernel tables)."""
    return 0 if array is None else array.data.ptr


def check_contiguous(**arrays: Any) -> None:
    """Twins index memory by the logical flat index: they take C-contiguous arrays only."""
    for name, array in arrays.items():
        if array is not None and not array.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous here (the API copies other layouts)")


def u32(value: int) -> np.uint32:
    return np.uint32(value)


def u64(value: int) -> np.uint64:
    return np.uint64(value)
