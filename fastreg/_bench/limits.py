"""The machine's own limits, measured in the same run as the op: copy kernels and bare GEMMs.

The copy kernels are Numba loops over the same bytes the op moves, run on fastreg's own runtime
like the ops (NumPy's ``copyto`` runs on one core and understates a 2-core machine's bandwidth by
about a third).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._runtime import parallel_for

#: Elements per range of a copy kernel.
_CHUNK = 1 << 15
_kernels: dict[str, Any] = {}


def _compiled() -> dict[str, Any]:
    if not _kernels:
        from numba import njit

        # Loops over slices (range(size)): a range(lo, hi) loop keeps Numba's negative-index
        # wraparound and runs scalar, which would understate the limit.
        @njit(nogil=True, cache=True)
        def copy(src, dst, c0, c1):
            lo, hi = c0 * _CHUNK, min(src.size, c1 * _CHUNK)
            s, d = src[lo:hi], dst[lo:hi]
            for i in range(s.size):
                d[i] = s[i]

        @njit(nogil=True, cache=True)
        def read2_write1(a, b, c0, c1):
            # reads a and b, writes a: the traffic of an in-place update with one input
            lo, hi = c0 * _CHUNK, min(a.size, c1 * _CHUNK)
            x, y = a[lo:hi], b[lo:hi]
            for i in range(x.size):
                x[i] = x[i] + y[i]

        _kernels.update(copy=copy, read2_write1=read2_write1)
    return _kernels


def _run(kernel: Any, *flat: np.ndarray) -> None:
    n = flat[-1].size
    parallel_for(kernel, -(-n // _CHUNK), *flat, work=n)


def copy_kernel(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[:] = src`` (flat C-contiguous arrays), in parallel: reads and writes ``src.nbytes``."""
    _run(_compiled()["copy"], src.reshape(-1), dst.reshape(-1))


def update_kernel(target: np.ndarray, source: np.ndarray) -> None:
    """``target += source`` in parallel: reads both and writes ``target`` (3 array passes)."""
    _run(_compiled()["read2_write1"], target.reshape(-1), source.reshape(-1))


_state_kernels: dict[int, Any] = {}


def _compiled_states() -> dict[int, Any]:
    if not _state_kernels:
        from numba import njit

        @njit(nogil=True, cache=True)
        def read3_write2(a, b, s, c0, c1):
            # the traffic of SGD with momentum: reads w, buf, grad; writes w, buf
            lo, hi = c0 * _CHUNK, min(s.size, c1 * _CHUNK)
            a, b, s = a[lo:hi], b[lo:hi], s[lo:hi]
            for i in range(s.size):
                a[i] = a[i] + s[i]
                b[i] = b[i] + s[i]

        @njit(nogil=True, cache=True)
        def read4_write3(a, b, c, s, c0, c1):
            # the traffic of an Adam step: reads w, m, v, grad; writes w, m, v
            lo, hi = c0 * _CHUNK, min(s.size, c1 * _CHUNK)
            a, b, c, s = a[lo:hi], b[lo:hi], c[lo:hi], s[lo:hi]
            for i in range(s.size):
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
    _run(_compiled_states()[len(flat)], *flat, source.reshape(-1))
