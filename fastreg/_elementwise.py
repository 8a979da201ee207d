"""Running a flat elementwise twin kernel on arrays of any layout, with an optional ``out=``.

Twin kernels see C-contiguous 1-D arrays whose position is the logical row-major flat index,
which is what the random stream is defined on. Inputs of other layouts are copied once into C
order (reading never changes the mask); results land in ``out`` whatever its strides.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any


def run_flat(
    xp: ModuleType, x: Any, out: Any | None, kernel: Callable[..., None], *args: Any
) -> Any:
    """``kernel(x_flat, out_flat, *args)`` on C-ordered views; returns ``out`` or a new array.

    ``out`` may be ``x`` itself (in place); an ``out`` that overlaps ``x`` any other way is
    written from a copy of ``x``, as NumPy does, since parallel tiles would read overwritten
    values."""
    if out is not None and out is not x and xp.may_share_memory(x, out):
        x = x.copy()
    source = xp.ascontiguousarray(x).reshape(-1)
    if out is not None and out.flags.c_contiguous:
        kernel(source, out.reshape(-1), *args)
        return out
    result = xp.empty(x.shape, dtype=x.dtype)
    kernel(source, result.reshape(-1), *args)
    if out is None:
        return result
    out[...] = result
    return out
