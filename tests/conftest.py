"""Shared fixtures: the backend and dtype parameters (helpers live in helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest

import fastreg

try:  # hypothesis is in the `test` extra; without it the property tests skip themselves
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    settings = None

if settings is not None:
    # "ci" (the default) keeps the whole property suite (tests/test_fuzz_properties.py) within
    # about two minutes on the 2-core machine, the same examples every run (derandomize);
    # `pytest --hypothesis-profile=long` draws new, many more examples for a deeper local run.
    _common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", max_examples=50, derandomize=True, print_blob=True, **_common)
    settings.register_profile("long", max_examples=2000, print_blob=True, **_common)
    settings.load_profile("ci")

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
