"""Helpers shared by the test modules (importable: pyproject puts tests/ on the path)."""

from __future__ import annotations

import numpy as np

#: Relative tolerances for values (masks are always compared exactly).
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5, np.dtype(np.float16): 1e-2}


def tolerance(dtype) -> float:
    return TOLERANCE[np.dtype(dtype)]


def layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    """The same logical array as C-ordered, F-ordered and strided (a view into a bigger array)."""
    padded = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
    view = padded[tuple(slice(None, None, 2) for _ in a.shape)]
    view[...] = a
    return {"C": np.ascontiguousarray(a), "F": np.asfortranarray(a), "strided": view}
