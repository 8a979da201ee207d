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


#: Relative error allowed between two correct float64 evaluations of a normal ``n(i)``: each
#: side's log, sqrt and cos are within a few ulp on any libm, SIMD path (AVX2, AVX-512) or GPU
#: libdevice, so the two differ by at most ~16 ulp of ``n``. An ulp bound on ``x + s*n`` itself
#: is ill-conditioned wherever ``x`` and ``s*n`` cancel (64 ulp seen on AVX-512).
NORMAL_RTOL = 16 * np.finfo(np.float64).eps


def assert_gaussian_close(got, expected, x) -> None:
    """``got`` equals ``expected`` (a Gaussian op's value, ``x + s*n`` or ``x*(1 + c*n)``) up
    to the formula's error bound: ``NORMAL_RTOL * (|x| + |expected - x|)`` in float64 (the
    noise term's magnitude is ``|expected - x|``), plus one ulp of the output dtype for the final
    cast. Non-finite values must match exactly (NaN where NaN)."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite], expected[~finite])
    g = got[finite].astype(np.float64)
    e = expected[finite].astype(np.float64)
    x64 = np.broadcast_to(np.asarray(x), expected.shape)[finite].astype(np.float64)
    bound = NORMAL_RTOL * (np.abs(x64) + np.abs(e - x64))
    bound = bound + np.spacing(np.abs(expected[finite])).astype(np.float64)
    excess = np.abs(g - e) - bound
    assert (excess <= 0).all(), (
        f"{int((excess > 0).sum())} of {e.size} values beyond the bound; worst: got "
        f"{g[np.argmax(excess)]!r}, expected {e[np.argmax(excess)]!r}"
    )
