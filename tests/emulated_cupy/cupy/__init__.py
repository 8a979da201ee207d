"""A stand-in for CuPy on a machine without a GPU, for the test suite only.

``tests/test_gpu_emulated.py`` puts this folder first on the path of a child pytest, so that
``import cupy`` finds it and ``fastreg.available_backends()`` lists ``cupy``; tests/test_gpu_cupy.py
then runs unchanged. The "device" is host memory, but the rules are CuPy's where they catch bugs:

- an :class:`ndarray` is not a NumPy array: NumPy functions and ufuncs dispatch to it, implicit
  conversion to NumPy raises ``TypeError``, and mixing it with a NumPy array raises ``TypeError``;
- ``RawModule`` compiles the real CUDA text with the host emulator (tests/cuda_emulator.h), and
  each ``RawKernel`` launch is checked like a C call (argument count, pointer element types, exact
  scalar types: what CuPy passes on without looking) before it runs every block and thread.

Only what fastreg and its tests use is here.
"""

from __future__ import annotations

import functools
from typing import Any

import cuda_emulator
import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from . import cuda
from . import random as random  # cupy.random

__version__ = "0.0.0+fastreg-emulated"
_HOST_OK = "cupy.asarray() (or cupy.array()) copies a NumPy array to the device"


class ndarray(NDArrayOperatorsMixin):  # noqa: N801 (CuPy's name)
    """A device array: host memory behind CuPy's interface."""

    __array_priority__ = 100

    def __init__(self, host: np.ndarray):
        self._host = host

    # CuPy refuses to become a NumPy array silently.
    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul and method == "__call__":
            return matmul(*inputs, **kwargs)
        out = kwargs.pop("out", None)
        kwargs = _to_host(kwargs)
        if out is not None:
            kwargs["out"] = _to_host(out)
        result = getattr(ufunc, method)(*_to_host(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_to_host(args), **_to_host(kwargs)))

    @property
    def data(self) -> cuda.MemoryPointer:
        return cuda.MemoryPointer(self._host.ctypes.data)

    def get(self) -> np.ndarray:
        return self._host.copy()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self._host, name)
        if callable(value):
            return lambda *a, **k: _wrap(value(*_to_host(a), **_to_host(k)))
        return _wrap(value)

    def __getitem__(self, key):
        return _wrap(self._host[_to_host(key)])

    def __setitem__(self, key, value):
        self._host[_to_host(key)] = _to_host(value, host_ok=True)

    def __len__(self) -> int:
        return len(self._host)

    def __iter__(self):
        return (_wrap(row) for row in self._host)

    def __bool__(self) -> bool:
        return bool(self._host)

    def __float__(self) -> float:
        return float(self._host)

    def __int__(self) -> int:
        return int(self._host)

    def __index__(self) -> int:
        return self._host.__index__()

    def __repr__(self) -> str:
        return f"array({np.array2string(self._host)}, dtype={self._host.dtype})"


def _to_host(value: Any, host_ok: bool = False) -> Any:
    """Device arrays as their host memory, through tuples, lists and dicts; a NumPy array here
    is the mistake CuPy raises for."""
    if isinstance(value, ndarray):
        return value._host
    if isinstance(value, np.ndarray):
        if host_ok:
            return value
        raise TypeError(f"Unsupported type {type(value)}: a NumPy array where CuPy takes a "
                        f"device array ({_HOST_OK})")
    if isinstance(value, (tuple, list)):
        return type(value)(_to_host(v, host_ok) for v in value)
    if isinstance(value, dict):
        return {k: _to_host(v, host_ok) for k, v in value.items()}
    return value


def _wrap(value: Any) -> Any:
    """Results as device arrays (NumPy scalars as 0-d arrays, as CuPy's reductions give)."""
    if isinstance(value, np.ndarray):
        if value.base is None and value.nbytes:
            cuda.allocated(value.nbytes)
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


# ------------------------------------------------------------------- arrays from anywhere
def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(obj, ndarray):
        host = np.array(obj._host, dtype=dtype, copy=copy, order=order, ndmin=ndmin)
        return obj if host is obj._host else _wrap(host)
    return _wrap(np.array(_to_host(obj, host_ok=True), dtype=dtype, order=order, ndmin=ndmin))


def asarray(a, dtype=None, order=None):
    return array(a, dtype=dtype, copy=None, order=order or "K")


def ascontiguousarray(a, dtype=None):
    return array(a, dtype=dtype, copy=None, order="C")


def asfortranarray(a, dtype=None):
    return array(a, dtype=dtype, copy=None, order="F")


def asnumpy(a, *args, **kwargs):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*args):
    import sys

    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


def from_dlpack(obj):
    raise NotImplementedError("the emulated CuPy has no DLPack exchange")


def matmul(a, b, out=None, **kwargs):
    """``a @ b`` in the operands' dtype, as CuPy's (cuBLAS) is: NumPy's matmul of two
    ml_dtypes.bfloat16 arrays returns float32, CuPy's returns bfloat16 (rounded once)."""
    a, b = _to_host(a), _to_host(b)
    product = np.matmul(a, b, **kwargs)
    dtype = np.result_type(a, b)
    if product.dtype != dtype:
        product = product.astype(dtype)
    if out is None:
        return _wrap(product)
    _to_host(out)[...] = product
    return out


# --------------------------------------------------------------------------------- kernels
class RawModule:
    """``cupy.RawModule(code=..., options=...)``, built for the host emulator."""

    def __init__(self, code: str, options: tuple = (), **kwargs: Any):
        self._module = cuda_emulator.EmulatedModule(code)

    def get_function(self, name: str) -> RawKernel:
        if name not in self._module.signatures:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found: {name}")
        return RawKernel(self._module, name)


class RawKernel:
    def __init__(self, module: cuda_emulator.EmulatedModule, name: str):
        self._module, self.name = module, name

    def __call__(self, grid, block, args, *, shared_mem: int = 0, stream: Any = None) -> None:
        params = self._module.signatures[self.name]
        cuda_emulator.check_launch(self.name, params, grid, block, args, ndarray)
        self._module.launch(self.name, grid, block, args, address=lambda a: a.data.ptr)


# --------------------------------------------------------------- everything else: NumPy's
@functools.cache
def _device_function(name: str, function: Any) -> Any:
    @functools.wraps(function)
    def on_device(*args: Any, **kwargs: Any) -> Any:
        return _wrap(function(*_to_host(args), **_to_host(kwargs)))

    return on_device


def __getattr__(name: str) -> Any:
    value = getattr(np, name)  # AttributeError for what NumPy lacks too
    if callable(value) and not isinstance(value, type):
        return _device_function(name, value)
    return value  # dtypes, constants
