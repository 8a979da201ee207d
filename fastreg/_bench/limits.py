"""The machine's own limits, measured in the same run as the op: copy kernels and bare GEMMs.

The copy kernels are parallel Numba loops over the same bytes the op moves (NumPy's ``copyto``
runs on one core and understates a 2-core machine's bandwidth by about a third).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_kernels: dict[str, Any] = {}


def _compiled() -> dict[str, Any]:
    if not _kernels:
        from numba import njit, prange

        @njit(parallel=True, cache=True)
        def copy(src, dst):
            for i in prange(src.size):
                dst[i] = src[i]

        @njit(parallel=True, cache=True)
        def read2_write1(a, b):
            # reads a and b, writes a: the traffic of an in-place update with one input
            for i in prange(a.size):
                a[i] = a[i] + b[i]

        _kernels.update(copy=copy, read2_write1=read2_write1)
    return _kernels


def copy_kernel(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[:] = src`` (flat C-contiguous arrays), in parallel: reads and writes ``src.nbytes``."""
    _compiled()["copy"](src.reshape(-1), dst.reshape(-1))


def update_kernel(target: np.ndarray, source: np.ndarray) -> None:
    """``target += source`` in parallel: reads both and writes ``target`` (3 array passes)."""
    _compiled()["read2_write1"](target.reshape(-1), source.reshape(-1))


_state_kernels: dict[int, Any] = {}


def _compiled_states() -> dict[int, Any]:
    if not _state_kernels:
        from numba import njit, prange

        @njit(parallel=True, cache=True)
        def read3_write2(a, b, s):
            # the traffic of SGD with momentum: reads w, buf, grad; writes w, buf
            for i in prange(s.size):
                a[i] = a[i] + s[i]
                b[i] = b[i] + s[i]

        @njit(parallel=True, cache=True)
        def read4_write3(a, b, c, s):
            # the traffic of an Adam step: reads w, m, v, grad; writes w, m, v
            for i in prange(s.size):
                a[i] = a[i] + s[i]
                b[i] = b[i] + s[i]
                c[i] = c[i] + s[i]

        _state_kernels.update({2: read3_write2, 3: read4_write3})
    return _state_kernels


def states_update_kernel(targets: list[np.ndarray], source: np.ndarray) -> None:
    """``t += source`` for each of 1 to 3 ``targets`` in one parallel pass: reads every target
    and the source, writes every target (the traffic of an optimizer step with states)."""
    if len(targets) == 1:
        update_kernel(targets[0], source)
        return
    flat = [t.reshape(-1) for t in targets]
    _compiled_states()[len(flat)](*flat, source.reshape(-1))
