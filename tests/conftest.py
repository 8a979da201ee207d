"""Shared fixtures: the backend parameter, dtype tolerances, and array layouts."""

from __future__ import annotations

import numpy as np
import pytest

import fastreg

CPU_BACKENDS = ("numpy", "numba")
ALL_BACKENDS = ("numpy", "numba", "cupy")

#: Relative tolerances for values (masks are always compared exactly).
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5, np.dtype(np.float16): 1e-2}


def _backend_params(names):
    available = fastreg.available_backends()
    return [
        pytest.param(name, marks=pytest.mark.skipif(name not in available, reason=f"no {name}"))
        for name in names
    ]


@pytest.fixture(params=_backend_params(CPU_BACKENDS))
def backend(request):
    """Each CPU backend (the cupy twin has its own tests, skipped without a GPU)."""
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


def tolerance(dtype) -> float:
    return TOLERANCE[np.dtype(dtype)]


def layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    """The same logical array as C-ordered, F-ordered and strided (a view into a bigger array)."""
    padded = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
    view = padded[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return {"C": np.ascontiguousarray(a), "F": np.asfortranarray(a), "strided": view}
