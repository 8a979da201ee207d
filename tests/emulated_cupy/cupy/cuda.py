"""``cupy.cuda`` of the emulated CuPy: one device, no-op streams, memory hooks."""

from __future__ import annotations

import ctypes
import time
import types
from typing import Any, NamedTuple

#: A small device: the default grid (32 blocks per multiprocessor) stays quick to emulate.
_ATTRIBUTES = {"MultiProcessorCount": 2, "MaxThreadsPerBlock": 1024, "WarpSize": 32}


class MemoryPointer(NamedTuple):
    ptr: int

    def copy_from_device_async(self, src: MemoryPointer, size: int, stream: Any = None) -> None:
        ctypes.memmove(self.ptr, src.ptr, size)


class Device:
    def __init__(self, device: int | None = None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise RuntimeError(f"cudaErrorInvalidDevice: no device {self.id} (one is emulated)")
        self.attributes = dict(_ATTRIBUTES)
        self.compute_capability = "90"

    def use(self) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class Stream:
    """Launches run at once on the host: every stream is already synchronized."""

    null: Stream

    def __init__(self, *args: Any, **kwargs: Any):
        self.ptr = 0

    def synchronize(self) -> None:
        pass

    def use(self) -> Stream:
        return self

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


Stream.null = Stream()


class ExternalStream(Stream):
    def __init__(self, ptr: int, *args: Any, **kwargs: Any):
        self.ptr = ptr


def get_current_stream() -> Stream:
    return Stream.null


class Event:
    """A CUDA event: the host clock when recorded (launches complete at once here)."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.time: float | None = None

    def record(self, stream: Any = None) -> None:
        self.time = time.perf_counter()

    def synchronize(self) -> None:
        pass


def get_elapsed_time(start: Event, end: Event) -> float:
    """Milliseconds between two recorded events."""
    if start.time is None or end.time is None:
        raise RuntimeError("cudaErrorInvalidResourceHandle: an event was never recorded")
    return (end.time - start.time) * 1e3


_PROPERTIES = {
    "name": b"fastreg emulated device", "multiProcessorCount": _ATTRIBUTES["MultiProcessorCount"],
    "clockRate": 1_000_000, "memoryClockRate": 1_000_000, "memoryBusWidth": 64,
    "totalGlobalMem": 1 << 30, "l2CacheSize": 1 << 20, "major": 9, "minor": 0,
}

runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1,
    getDeviceProperties=lambda device: dict(_PROPERTIES),
    driverGetVersion=lambda: 13000,
    runtimeGetVersion=lambda: 13000,
)


_active_hooks: list[Any] = []


class MemoryHook:
    """``cupy.cuda.memory_hook.MemoryHook``: ``with hook:`` sees the size of every new array."""

    name = "MemoryHook"

    def malloc_preprocess(self, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> MemoryHook:
        _active_hooks.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _active_hooks.remove(self)


def allocated(size: int) -> None:
    """Called by the emulated CuPy for each new device array of ``size`` bytes."""
    for hook in _active_hooks:
        hook.malloc_preprocess(device_id=0, size=size, mem_size=size)


memory_hook = types.SimpleNamespace(MemoryHook=MemoryHook)


def set_allocator(allocator: Any = None) -> None:
    """Memory-pool switches: the host's allocator is the only one here."""


def set_pinned_memory_allocator(allocator: Any = None) -> None:
    pass
