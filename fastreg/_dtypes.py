"""The float dtypes of docs/contract/ops.md and the one rounding of the 16-bit storage types.

fastreg computes on four float dtypes: float16, bfloat16, float32 and float64. float16 and
bfloat16 are *storage* types: every op reads them, computes in float32 (their compute type) and
rounds once to the storage type, round to nearest even. NumPy's bfloat16 is
``ml_dtypes.bfloat16``; ml_dtypes is not a dependency: an array can only have that dtype if
ml_dtypes is installed, so it is imported here only when a dtype named ``bfloat16`` shows up.

This module is the one table of those facts; the checks (``fastreg._validate``) and the ops ask it
instead of listing dtypes themselves. It imports neither Numba nor CuPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DTYPE_NAMES",
    "compute_dtype",
    "from_compute",
    "host_widens",
    "is_float",
    "is_storage",
    "to_compute",
]

#: The dtypes every backend accepts, by name (docs/contract/ops.md), in the order error messages
#: list them.
DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")

_FLOAT32 = np.dtype(np.float32)
_NATIVE = (np.dtype(np.float16), _FLOAT32, np.dtype(np.float64))


def _is_bfloat16(dtype: np.dtype) -> bool:
    # The name test is cheap and never imports anything; ml_dtypes confirms it is really its type
    # (it must be installed: the array exists).
    if dtype.name != "bfloat16" or dtype.itemsize != 2:
        return False
    import ml_dtypes

    return dtype == np.dtype(ml_dtypes.bfloat16)


def is_float(dtype: Any) -> bool:
    """Whether ``dtype`` is one of the four float dtypes of docs/contract/ops.md."""
    dtype = np.dtype(dtype)
    return dtype in _NATIVE or _is_bfloat16(dtype)


def is_storage(dtype: Any) -> bool:
    """Whether ``dtype`` is a 16-bit storage type (float16 or bfloat16): computed in float32."""
    dtype = np.dtype(dtype)
    return dtype.itemsize == 2 and (dtype == np.float16 or _is_bfloat16(dtype))


def compute_dtype(dtype: Any) -> np.dtype:
    """The dtype arithmetic on ``dtype`` is done in: float32 for float16/bfloat16, else itself."""
    return _FLOAT32 if is_storage(dtype) else np.dtype(dtype)


def to_compute(a: Any) -> Any:
    """``a`` in its compute dtype: a float32 copy of a float16/bfloat16 array (exact, every
    16-bit value is a float32), ``a`` itself otherwise. NumPy or CuPy arrays (or None)."""
    if a is None or not is_storage(a.dtype):
        return a
    return a.astype(_FLOAT32)


def from_compute(a: Any, dtype: Any, out: Any = None) -> Any:
    """``a`` (computed in ``compute_dtype(dtype)``) rounded once to ``dtype``, round to nearest
    even (NumPy's and ml_dtypes' casts; NaN stays NaN, overflow gives inf). Written into ``out``
    (any layout, ``dtype``) when given, else returned as a new array (``a`` itself when no
    rounding is needed)."""
    if out is not None:
        out[...] = a
        return out
    if a.dtype == np.dtype(dtype):
        return a
    return a.astype(dtype)



def host_widens(array_kind: str, dtype: Any) -> bool:
    """Whether an op on ``array_kind`` ("numpy" or "cupy") arrays of ``dtype`` computes on float32
    copies: the GEMM ops, the updates and the penalty do so for float16/bfloat16 NumPy arrays
    (BLAS has no 16-bit GEMM; the copies cost a pass, the one rounding is then a cast). The CPU
    dropout kernels and every CuPy kernel read the 16-bit storage natively."""
    return array_kind == "numpy" and is_storage(dtype)
