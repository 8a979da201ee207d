"""Shared fixtures: the backend and dtype parameters (helpers live in helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest

import fastreg

CPU_BACKENDS = ("numpy", "numba")
ALL_BACKENDS = ("numpy", "numba", "cupy")


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
