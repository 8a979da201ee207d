"""The backend registry, the resolution rules of docs/backends.md, and ``use_backend``.

A backend is a name in ``_REGISTRY``; each op family has one twin module per backend under
``fastreg._kernels.<family>`` (``ref_numpy``, ``cpu_numba``, ``gpu_cupy``), imported lazily so that
``import fastreg`` imports neither Numba nor CuPy.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "array_kind",
    "array_module",
    "available_backends",
    "get_backend",
    "resolve",
    "set_backend",
    "twin",
    "use_backend",
]


@dataclass(frozen=True)
class _Backend:
    twin_module: str  # module name of the twin inside each family folder
    array_kind: str  # "numpy" or "cupy": the array type the backend accepts
    requires: str | None  # the package that must import, or None
    install_hint: str


_REGISTRY: dict[str, _Backend] = {
    "numpy": _Backend("ref_numpy", "numpy", None, "NumPy is always installed"),
    "numba": _Backend("cpu_numba", "numpy", "numba", "pip install numba"),
    "cupy": _Backend(
        "gpu_cupy", "cupy", "cupy", "pip install 'fastreg-kernels[cuda12]' (or [cuda13])"
    ),
}

_ENV_VAR = "FASTREG_BACKEND"
_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fastreg_backend", default=None
)
_global_backend: str | None = None
_warned_no_numba = False
_availability: dict[str, bool] = {}


def _check_name(name: Any, argument: str = "backend") -> str:
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str naming a backend, got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"{argument} must be one of {sorted(_REGISTRY)}, got {name!r}")
    return name


def _is_available(name: str) -> bool:
    if name not in _availability:
        spec = _REGISTRY[name]
        if spec.requires is None:
            _availability[name] = True
        elif name == "cupy":
            _availability[name] = _cupy_device_usable()
        else:
            _availability[name] = importlib.util.find_spec(spec.requires) is not None
    return _availability[name]


def _cupy_device_usable() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device, broken install: all mean "not usable"
        return False


def available_backends() -> tuple[str, ...]:
    """The backends usable in this process: ``numpy`` always, ``numba`` if it imports, ``cupy``
    if CuPy imports and sees a CUDA device."""
    return tuple(name for name in _REGISTRY if _is_available(name))


def _require(name: str) -> str:
    if not _is_available(name):
        raise RuntimeError(
            f"backend {name!r} is not available in this environment; install it with: "
            f"{_REGISTRY[name].install_hint}"
        )
    return name


def set_backend(name: str | None) -> None:
    """Set the process-wide default backend (``None`` clears it). Raises if unavailable."""
    global _global_backend
    _global_backend = None if name is None else _require(_check_name(name))


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Use backend ``name`` inside the block (context-local: threads and tasks don't leak)."""
    token = _context_backend.set(_require(_check_name(name)))
    try:
        yield name
    finally:
        _context_backend.reset(token)


_LIBRARY = {"numpy": "NumPy", "cupy": "CuPy"}


def array_kind(array: Any) -> str:
    """``"cupy"`` for a CuPy array, ``"numpy"`` otherwise (checked without importing CuPy)."""
    if isinstance(array, np.ndarray):  # the common case, without string work
        return "numpy"
    return "cupy" if type(array).__module__.split(".")[0] == "cupy" else "numpy"


def _configured() -> tuple[str, str] | None:
    """The configured backend and where it came from, first match wins (docs/backends.md)."""
    if (name := _context_backend.get()) is not None:
        return name, "use_backend"
    if _global_backend is not None:
        return _global_backend, "set_backend"
    if env := os.environ.get(_ENV_VAR):
        return _check_name(env, _ENV_VAR), _ENV_VAR
    return None


def _default_cpu() -> str:
    global _warned_no_numba
    if _is_available("numba"):
        return "numba"
    if not _warned_no_numba:
        _warned_no_numba = True
        warnings.warn(
            "numba is not installed: fastreg falls back to its pure-NumPy reference backend, "
            "which is slow (pip install numba)",
            RuntimeWarning,
            stacklevel=3,
        )
    return "numpy"


def get_backend() -> str:
    """The backend a call without ``backend=`` and without CuPy arrays would use now."""
    configured = _configured()
    return configured[0] if configured else _default_cpu()


def _kinds_by_name(arrays: dict[str, Any]) -> list[tuple[str, str]]:
    return [(name, array_kind(a)) for name, a in arrays.items() if a is not None]


def resolve(backend: str | None, **arrays: Any) -> str:
    """The backend for a call: explicit argument, ``use_backend``, ``set_backend``,
    ``FASTREG_BACKEND``, then the array type. Checks the arrays (by argument name; None for an
    absent one) are all of one kind, the backend's, and names the first that is not."""
    kinds = {array_kind(a) for a in arrays.values() if a is not None}
    if len(kinds) > 1:
        (first, first_kind), *rest = _kinds_by_name(arrays)
        other, other_kind = next((n, k) for n, k in rest if k != first_kind)
        raise TypeError(
            "arrays must all be NumPy arrays or all be CuPy arrays, got a mix of both: "
            f"{first} is a {_LIBRARY[first_kind]} array, {other} a {_LIBRARY[other_kind]} "
            "array (fastreg never copies between host and device implicitly)"
        )
    if backend is not None:
        name, source = _require(_check_name(backend)), "backend="
    elif (configured := _configured()) is not None:
        name, source = _require(configured[0]), configured[1]
    elif kinds == {"cupy"}:
        name, source = _require("cupy"), "the array type"
    else:
        name, source = _default_cpu(), "the default"
    expected = _REGISTRY[name].array_kind
    if kinds and kinds != {expected}:
        argument, given = _kinds_by_name(arrays)[0]
        raise TypeError(
            f"backend {name!r} (chosen by {source}) takes {expected} arrays, got a {given} "
            f"array for {argument}; fastreg never copies between host and device implicitly"
        )
    return name


# Modules already imported, by name: ``importlib.import_module`` costs ~4 us a call, a third of
# a small op's whole Python overhead (measured on a 1x4 @ 4x4 dense_dropout, 27 us in all).
_modules: dict[str, ModuleType] = {}


def _import(path: str) -> ModuleType:
    module = _modules.get(path)
    if module is None:
        module = _modules[path] = importlib.import_module(path)
    return module


def twin(family: str, name: str) -> ModuleType:
    """The twin module of op ``family`` for backend ``name`` (imported on first use)."""
    return _import(f"fastreg._kernels.{family}.{_REGISTRY[name].twin_module}")


def backend_array_kind(name: str) -> str:
    """``"numpy"`` or ``"cupy"``: the kind of array backend ``name`` takes (imports nothing)."""
    return _REGISTRY[_check_name(name)].array_kind


def host_backend_problem(name: str, why_host: str) -> str | None:
    """Why a command that computes on NumPy arrays (``bench``, ``demo``) cannot use backend
    ``name``, or None when it can: unknown, not available here, or a device backend
    (``why_host`` says why host arrays only)."""
    if name not in _REGISTRY:
        return f"backend {name!r} is unknown; the backends are {', '.join(_REGISTRY)}"
    if not _is_available(name):
        available = ", ".join(available_backends())
        return (
            f"backend {name!r} is not available here (available: {available}); install it "
            f"with: {_REGISTRY[name].install_hint}"
        )
    if _REGISTRY[name].array_kind != "numpy":
        return f"backend {name!r} computes on device arrays, and {why_host}"
    return None


def array_module(name: str) -> ModuleType:
    """``numpy`` or ``cupy``: the array library backend ``name`` computes with."""
    return _import(_REGISTRY[name].array_kind)
