"""What the GPU benchmark cases share: the device timer, the device's own limits, its description.

Timing (:class:`DeviceSampler`): CUDA events on the current stream around ``number`` calls, read
after the end event completes, so a sample is device time, not launch time. Before each sample a
buffer larger than any L2 (:data:`FLUSH_BYTES`; the H100/H200 L2 is 50-60 MB) is written, so a
memory-bound case cannot be served from the previous sample's cache lines.

Limits: :func:`copy_limit` is ``cudaMemcpyAsync`` device to device of the same bytes (the copy
engine path CuPy's ``MemoryPointer.copy_from_device_async`` takes: read ``n`` bytes, write ``n``);
:func:`traffic_limit` is a 16-byte-vector kernel that reads ``k`` float32 arrays and writes
``j`` of them in place, the traffic of an optimizer step with its states. Importing this module
does not import CuPy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

#: Bytes written between timed samples: above the 50 MB (H100) / 60 MB (H200) L2.
FLUSH_BYTES = 96 << 20

#: t_j += s for each of `targets` float32 arrays t_j: reads every t_j and s, writes every t_j.
#: float4 accesses where the arrays are 16-byte aligned (always, for CuPy allocations), a
#: scalar tail; a grid-stride loop as in fastreg's kernels.
_TRAFFIC_SOURCE = r"""
#define FR_BENCH_UPDATE(NAME, BODY4, BODY1, ...)                                              \
    extern "C" __global__ void NAME(__VA_ARGS__, const float *s, long long n) {               \
        const long long stride = (long long)gridDim.x * blockDim.x;                           \
        const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;             \
        const long long quads = n / 4;                                                        \
        for (long long q = first; q < quads; q += stride) {                                   \
            const float4 v = reinterpret_cast<const float4 *>(s)[q];                          \
            BODY4                                                                             \
        }                                                                                     \
        for (long long i = 4 * quads + first; i < n; i += stride) {                           \
            const float v = s[i];                                                             \
            BODY1                                                                             \
        }                                                                                     \
    }
#define FR_ADD4(T)                                                                            \
    {                                                                                         \
        float4 t = reinterpret_cast<float4 *>(T)[q];                                          \
        t.x += v.x; t.y += v.y; t.z += v.z; t.w += v.w;                                       \
        reinterpret_cast<float4 *>(T)[q] = t;                                                 \
    }
FR_BENCH_UPDATE(fastreg_bench_update1_f32, FR_ADD4(a), a[i] += v;, float *a)
FR_BENCH_UPDATE(fastreg_bench_update2_f32, FR_ADD4(a) FR_ADD4(b), a[i] += v; b[i] += v;,
                float *a, float *b)
FR_BENCH_UPDATE(fastreg_bench_update3_f32, FR_ADD4(a) FR_ADD4(b) FR_ADD4(c),
                a[i] += v; b[i] += v; c[i] += v;, float *a, float *b, float *c)
"""


def cupy_module() -> Any:
    import cupy

    return cupy


@functools.cache
def _traffic_module() -> Any:
    return cupy_module().RawModule(code=_TRAFFIC_SOURCE, options=("--std=c++14",))


def copy_limit(src: Any) -> Callable[[], None]:
    """A device-to-device copy of ``src``'s bytes into a preallocated array (any dtype)."""
    dst = cupy_module().empty_like(src)
    nbytes = src.nbytes
    return lambda: dst.data.copy_from_device_async(src.data, nbytes)


def traffic_limit(targets: list[Any], source: Any) -> Callable[[], None]:
    """``t += source`` for each of 1 to 3 float32 ``targets`` in one kernel (reads every target
    and the source, writes every target). The targets are the caller's own copies."""
    from .._kernels import cuda_launch as cl

    cupy = cupy_module()
    flat = [t.reshape(-1) for t in targets]
    kernel = _traffic_module().get_function(f"fastreg_bench_update{len(flat)}_f32")
    n = source.size
    blocks, threads = cl.grid(-(-n // 4))
    args = (*flat, source.reshape(-1), cupy.int64(n))
    return lambda: kernel((blocks,), (threads,), args)


class DeviceSampler:
    """``sample(fn, number)``: device seconds per call of ``fn``, by CUDA events, with the L2
    flushed before the sample (the flush is outside the timed span)."""

    def __init__(self) -> None:
        cupy = cupy_module()
        self._cupy = cupy
        self._flush = cupy.empty(FLUSH_BYTES, dtype=cupy.uint8)
        self._start, self._end = cupy.cuda.Event(), cupy.cuda.Event()
        self._value = 0

    def __call__(self, fn: Callable[[], Any], number: int) -> float:
        self._value = (self._value + 1) & 0xFF
        self._flush.fill(self._value)
        self._start.record()
        for _ in range(number):
            fn()
        self._end.record()
        self._end.synchronize()
        return self._cupy.cuda.get_elapsed_time(self._start, self._end) / 1e3 / number


def device_info() -> dict[str, Any]:
    """The current CUDA device and the software driving it (for the header and the JSON)."""
    cupy = cupy_module()
    runtime = cupy.cuda.runtime
    device = cupy.cuda.Device()
    props = runtime.getDeviceProperties(device.id)
    name = props["name"]
    info: dict[str, Any] = {
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "compute_capability": str(device.compute_capability),
        "multiprocessors": int(props["multiProcessorCount"]),
        "clock_mhz": int(props.get("clockRate", 0)) // 1000,
        "memory_clock_mhz": int(props.get("memoryClockRate", 0)) // 1000,
        "memory_bus_bits": int(props.get("memoryBusWidth", 0)),
        "memory_gib": round(int(props.get("totalGlobalMem", 0)) / 2**30, 1),
        "l2_mib": round(int(props.get("l2CacheSize", 0)) / 2**20, 1),
        "driver": _cuda_version(runtime.driverGetVersion()),
        "runtime": _cuda_version(runtime.runtimeGetVersion()),
        "cupy": cupy.__version__,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = info["torch_cuda"] = None
    return info


def _cuda_version(code: int) -> str:
    return f"{code // 1000}.{code % 1000 // 10}"


def device_line(info: dict[str, Any]) -> str:
    """One header line: the GPU, its size and clocks, the driver and library versions."""
    return (
        f"GPU {info['name']} (sm_{info['compute_capability']}, {info['multiprocessors']} SMs, "
        f"{info['clock_mhz']} MHz, memory {info['memory_clock_mhz']} MHz x "
        f"{info['memory_bus_bits']} bit, {info['memory_gib']} GiB, L2 {info['l2_mib']} MiB); "
        f"driver CUDA {info['driver']}, runtime {info['runtime']}; CuPy {info['cupy']}; "
        f"PyTorch {info['torch'] or 'not installed'}"
        f"{' (CUDA ' + info['torch_cuda'] + ')' if info.get('torch_cuda') else ''}"
    )
