"""Tensors to arrays and back, the compute dtype, the stream tensors, and per-rank seeds.

Zero copy. CPU tensors reach the kernels as NumPy views of their storage (``t.numpy()``, any
strides) and results come back wrapped by ``torch.from_numpy``; CUDA tensors go to CuPy by
DLPack and every kernel is launched on PyTorch's current stream of the tensor's device (CuPy's
current stream is set to it for the call), so no host/device copy is added.

16-bit storage. float16 and bfloat16 compute in float32 and round once to the storage type
(docs/contract/ops.md), with the storage type's ``1/(1-p)``: dropout runs the NumPy API's
native 16-bit kernels on the storage bits; the GEMM-based layers upcast their inputs to float32
for ``torch.mm`` and the epilogue, and round the result once.
NumPy has no bfloat16 of its own, and the masks never depend on the dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .. import _backends, _runtime, _validate

__all__ = [
    "as_array",
    "as_tensor",
    "compute_dtype",
    "cpu_backend",
    "on_device",
    "rank_seed",
    "seed_tensor",
    "stream_ints",
    "threads_beside_torch",
]

MASK64 = (1 << 64) - 1
MASK32 = 0xFFFFFFFF
_RANK_MULTIPLIER = 0x9E3779B97F4A7C15  # odd: rank -> rank * c is a bijection mod 2**64
_WIDE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def as_array(t: torch.Tensor) -> Any:
    """The tensor's storage as a NumPy (CPU) or CuPy (CUDA) array: a view, never a copy."""
    t = t.detach()
    if t.is_neg():  # a lazily negated view has no array form; materialize it
        t = t.resolve_neg()
    if t.is_cpu:  # (not t.device.type: building the device object costs ~0.8 us)
        if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: the bits, as ml_dtypes'
            return _bfloat16_view(t.view(torch.int16).numpy())
        return t.numpy()
    if t.is_cuda:
        import cupy

        if t.dtype == torch.bfloat16:
            return _bfloat16_view(cupy.from_dlpack(t.view(torch.int16)))
        return cupy.from_dlpack(t)
    raise TypeError(f"fastreg.torch takes CPU or CUDA tensors, got a tensor on {t.device}")


def as_tensor(a: Any) -> torch.Tensor:
    """An array returned by a kernel as a tensor sharing its memory."""
    if type(a).__module__.split(".")[0] == "cupy":
        if a.dtype.name == "bfloat16":
            return torch.from_dlpack(a.view("int16")).view(torch.bfloat16)
        return torch.from_dlpack(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view("int16")).view(torch.bfloat16)
    return torch.from_numpy(a)


def _bfloat16_view(bits: Any) -> Any:
    """An int16 NumPy or CuPy array of bfloat16 bit patterns viewed as ``ml_dtypes.bfloat16``
    (NumPy has no bfloat16; CuPy's bfloat16 arrays carry ml_dtypes'). bfloat16 crosses DLPack as
    int16 both ways: CuPy imports DLPack bfloat16 only from version 14, and exports it in no
    released version."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 tensors need the ml_dtypes package (pip install ml_dtypes) "
                        "to reach fastreg's kernels") from None
    return bits.view(ml_dtypes.bfloat16)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype the kernels get ``t``'s op in: float32 for 16-bit storage on the CPU (the
    NumPy API's CPU twins take float32/float64), else ``t``'s own (the CUDA kernels take
    float16 and bfloat16 and compute them in float32 themselves)."""
    if t.is_cuda:
        return t.dtype
    return _WIDE.get(t.dtype, t.dtype)


def check_float(t: torch.Tensor, name: str) -> None:
    """TypeError unless ``t`` is a float16/bfloat16/float32/float64 tensor."""
    if t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"{name} must be a float16, bfloat16, float32 or float64 tensor, "
                        f"got {t.dtype}")


def cpu_backend(a: Any) -> str:
    """The backend for NumPy views (docs/backends.md resolution: ``use_backend``, ``set_backend``,
    ``FASTREG_BACKEND``, then numba if it imports)."""
    return _backends.resolve(None, x=a)


_NO_CONTEXT = contextlib.nullcontext()


def on_device(t: torch.Tensor) -> contextlib.AbstractContextManager[None]:
    """The context of an op's kernels: autocast off (an op's own GEMMs compute in its compute
    dtype; autocast stays on for the thread while the op runs); for a CPU tensor fastreg's
    threads are :func:`threads_beside_torch`; for a CUDA tensor CuPy's current device and
    stream become the tensor's device and PyTorch's current stream there, so kernels queue
    behind PyTorch's work without a sync. A CPU tensor without autocast whose thread count
    needs no change gets a shared empty context (no generator to build: ~3 us less per op)."""
    device = "cpu" if t.is_cpu else t.device.type  # (t.device builds an object: ~0.8 us)
    if device == "cpu" and not torch.is_autocast_enabled("cpu"):
        threads = threads_beside_torch()
        if threads == _runtime.get_num_threads():
            return _NO_CONTEXT
        return _runtime.num_threads(threads)
    return _device_context(t, device)


@contextlib.contextmanager
def _device_context(t: torch.Tensor, device: str) -> Iterator[None]:
    if torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False), on_device(t):
            yield
        return
    if device != "cuda":
        with _runtime.num_threads(threads_beside_torch()):
            yield
        return
    import cupy

    index = t.device.index if t.device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index)
    with cupy.cuda.Device(index), cupy.cuda.ExternalStream(stream.cuda_stream, index):
        yield


def threads_beside_torch() -> int:
    """fastreg's CPU threads for a kernel that runs between PyTorch ops: the cores PyTorch's
    own idle workers leave free, ``get_num_threads() - (torch.get_num_threads() - 1)``, at
    least 1.

    PyTorch's OpenMP workers spin for ~10 ms of CPU after each parallel op (measured: 4-13 ms
    of process CPU while the caller sleeps after one 512x512 GEMM), so a fastreg worker started
    on their cores waits for a time slice. In the 512x784->1024->1024->10 MLP step on the
    2-core VM, 2 fastreg threads made the step 76-94 ms, 1 thread 67-70 ms (3 alternations).
    ``torch.set_num_threads(1)`` leaves every core to fastreg.
    """
    return max(1, _runtime.get_num_threads() - torch.get_num_threads() + 1)


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def seed_tensor(seed: Any, device: Any = None) -> torch.Tensor:
    """A 64-bit seed as the int64 0-d tensor the ops take (two's complement); an int64 tensor
    passes through."""
    if isinstance(seed, torch.Tensor):
        return seed
    return torch.tensor(_as_int64(_validate.check_seed(seed)), dtype=torch.int64, device=device)


def offset_tensor(offset: Any, device: Any = None) -> torch.Tensor:
    """A call index as the int64 0-d tensor the ops take; an int64 tensor passes through."""
    if isinstance(offset, torch.Tensor):
        return offset
    return torch.tensor(_validate.check_offset(offset), dtype=torch.int64, device=device)


def stream_ints(seed: torch.Tensor, offset: torch.Tensor) -> tuple[int, int]:
    """``(seed, offset)`` as Python ints in ``[0, 2**64)`` and ``[0, 2**32)`` (one read; a
    CUDA pair is read in one device-to-host copy)."""
    if seed.is_cpu and offset.is_cpu:
        return int(seed) & MASK64, int(offset) & MASK32
    pair = torch.stack((seed.reshape(()), offset.reshape(()))).tolist()
    return pair[0] & MASK64, pair[1] & MASK32


def rank_seed(seed: int, rank: int | None = None) -> int:
    """The seed a rank's kernels use: ``seed XOR (rank * 0x9E3779B97F4A7C15 mod 2**64)``.

    ``rank=None`` takes the global rank of the initialized ``torch.distributed`` process group,
    or 0 when there is none. Rank 0 gets ``seed`` itself; distinct ranks get distinct seeds
    (multiplying by an odd constant is a bijection mod 2**64), hence independent Philox keys.

    Parameters
    ----------
    seed : int in [0, 2**64)
    rank : int >= 0, optional

    Returns
    -------
    int in [0, 2**64)

    Raises
    ------
    ValueError: seed out of range or a negative rank. TypeError: non-int seed or rank.

    Example
    -------
    >>> rank_seed(7, 0), rank_seed(7, 1) != 7
    (7, True)
    """
    seed = _validate.check_seed(seed)
    if rank is None:
        rank = distributed_rank()
    rank = _validate.check_int_at_least(rank, "rank", 0)
    return seed ^ _rank_key(rank)


def rank_seed_tensor(seed: torch.Tensor) -> torch.Tensor:
    """:func:`rank_seed` on an int64 seed tensor, in the graph (the seed itself on rank 0)."""
    rank = distributed_rank()
    if rank == 0:
        return seed
    return torch.bitwise_xor(seed, _as_int64(_rank_key(rank)))


def rank_seed_int(seed: int) -> int:
    """:func:`rank_seed` of this process's rank on a seed already in ``[0, 2**64)``, unchecked
    (the eager fast path's twin of :func:`rank_seed_tensor`: the same bits)."""
    rank = distributed_rank()
    return seed if rank == 0 else seed ^ _rank_key(rank)


def _rank_key(rank: int) -> int:
    return (rank * _RANK_MULTIPLIER) & MASK64


def refuse_functorch(*tensors: torch.Tensor | None) -> None:
    """A clear error for ``torch.func`` transforms, which this PyTorch does not run custom ops'
    registered autograd under (it raises about ``setup_context`` deep inside otherwise)."""
    if torch.compiler.is_compiling():
        return
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    if any(t is not None and wrapped(t) for t in tensors):
        raise RuntimeError(
            "fastreg.torch ops do not support torch.func transforms (grad, vmap, jacrev, ...): "
            "PyTorch does not run a custom op's registered autograd under them; use "
            "torch.autograd.grad or loss.backward() instead")


def distributed_rank() -> int:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0
