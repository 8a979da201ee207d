"""Proximal-update CPU twin in Numba: every update is one parallel in-place pass over memory.

Same names and signatures as ``ref_numpy``. Elementwise functions receive arrays of one tensor
that are all C-contiguous or all F-contiguous (``fastreg.prox`` arranges it), so the tensor is
walked in memory order as a flat array; scalars arrive already cast to the arrays' dtype.

Lists run in one compiled call: the tensors of one dtype are described by a table of object
addresses and sizes, cut into chunks, and the chunks are shared among the threads. Building a
``numba.typed.List`` costs about 2 us per array and reading ``__array_interface__`` about
1.5 us; ``id()`` costs 50 ns, and the kernel reads each array's data pointer from the object
header at a word offset calibrated once against ``ndarray.ctypes.data`` (see
:func:`_data_word`), so a 200-tensor list pays microseconds, not a millisecond, to get in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from fastreg._runtime import parallel_for

from . import NORM_RESCALE_BELOW

# Every kernel uses NumPy's error model: Python's (the default) tests each float division for a
# zero divisor to raise ZeroDivisionError, and that branch stopped LLVM from vectorizing the Adam
# loop (scalar vdivss, 5x slower than the copy limit); NumPy semantics give inf/NaN instead.

#: Elements per parallel task: 128 KiB of float32 per array, so tasks are few and even.
CHUNK = 1 << 15
#: Single arrays up to this size are updated on the calling thread: handing a job to fastreg's
#: pool costs ~20-40 us on the 2-core VM. Measured (under Numba's earlier OpenMP launch) serial vs
#: parallel (cache-resident float32): prox-SGD
#: 17 vs 31 us at 64k elements (even at 256k), prox-Adam 49 vs 55 us at 64k, 94 vs 71 at 128k.
SERIAL_ELEMENTS = 1 << 16
#: Groups per task when groups are columns (their elements are a row apart).
GROUP_BLOCK = 64


@intrinsic
def _voidptr(typingctx, address):
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@njit(cache=True, error_model="numpy")
def _read_words(address, count):
    return carray(_voidptr(address), count, np.uint64).copy()


_data_word_cache: list[int] = []


def _data_word() -> int:
    """The word of an ndarray's object header that holds its data pointer (2 on CPython: after
    the refcount and the type; NumPy's ``PyArrayObject_fields`` ABI), or -1 if none matches, in
    which case addresses are read from ``__array_interface__`` instead."""
    if not _data_word_cache:
        probes = [np.arange(3.0), np.zeros((2, 5), np.float32)[:, 1:]]
        found = -1
        for word in range(8):
            if all(
                int(_read_words(id(p), 8)[word]) == p.__array_interface__["data"][0]
                for p in probes
            ):
                found = word
                break
        _data_word_cache.append(found)
    return _data_word_cache[0]


def _table(*columns) -> np.ndarray:
    """Rows ``[size, address of each array...]`` for the tensors of a list; 0 marks None.
    Addresses are object ids when the data word is known, else data pointers."""
    word = _data_word()
    first = columns[0]
    table = np.zeros((len(first), 1 + len(columns)), dtype=np.uint64)
    table[:, 0] = [a.size for a in first]
    for j, column in enumerate(columns, start=1):
        if column is None:
            continue
        if word >= 0:
            table[:, j] = [0 if a is None else id(a) for a in column]
        else:
            table[:, j] = [0 if a is None else a.__array_interface__["data"][0] for a in column]
    return table


@njit(cache=True, error_model="numpy")
def _view(address, word, n, proto):
    """The flat array of ``n`` elements behind ``address`` (an object id when ``word >= 0``)."""
    if word >= 0:
        address = carray(_voidptr(address), word + 1, np.uint64)[word]
    return carray(_voidptr(address), n, proto.dtype)


@njit(cache=True, error_model="numpy")
def _chunk_starts(table):
    starts = np.empty(table.shape[0] + 1, dtype=np.int64)
    starts[0] = 0
    for k in range(table.shape[0]):
        starts[k + 1] = starts[k] + (np.int64(table[k, 0]) + CHUNK - 1) // CHUNK
    return starts


def _part(a, lo, hi):
    """``a[lo:hi]``, or None for None (an optional array of a compiled kernel)."""


@overload(_part)
def _part_overload(a, lo, hi):
    if isinstance(a, types.NoneType):
        return lambda a, lo, hi: None
    return lambda a, lo, hi: a[lo:hi]


@njit(cache=True, error_model="numpy")
def _soft_threshold(v, t, zero):
    # |v| <= t selects exactly +0.0; NaN fails the test and propagates. Branch-free (copysign
    # rather than a sign test) so the loops that call it vectorize.
    return zero if abs(v) <= t else v - np.copysign(t, v)


# The spans below loop over whole (sliced) arrays with range(size): a loop over range(lo, hi)
# keeps Numba's negative-index wraparound in the body and ran 2.2x slower (16M float32).
@njit(cache=True, error_model="numpy")
def _sgd_span(w, g, buf, mask, lr, thr, shrink, momentum, nesterov):
    zero = w.dtype.type(0)
    for i in range(w.size):
        # Every element reads all its values before writing the state, then w (ref_numpy's
        # order: arguments that are the same array agree on every backend).
        d = g[i]
        wi = w[i]
        if buf is not None:
            b = momentum * buf[i] + d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        r = _soft_threshold(wi - lr * d, thr, zero) * shrink
        if mask is not None:
            r = r if mask[i] else zero
        w[i] = r


@njit(nogil=True, cache=True, error_model="numpy")
def _sgd(w, g, buf, mask, lr, thr, shrink, momentum, nesterov, c0, c1):
    n = w.size
    for c in range(c0, c1):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        _sgd_span(w[lo:hi], g[lo:hi], _part(buf, lo, hi), _part(mask, lo, hi), lr, thr, shrink,
                  momentum, nesterov)


def _chunks(n: int) -> int:
    return -(-n // CHUNK)


def _flat(a):
    return None if a is None else a.ravel(order="K")


def sgd_update(w, grad, buf, mask, lr, thr, shrink, momentum, nesterov) -> None:
    """``buf = momentum*buf + grad``; ``d = buf`` (``grad + momentum*buf`` if nesterov; ``grad``
    if ``buf`` is None); ``w = S(w - lr*d, thr) * shrink``; ``w[~mask] = +0.0``."""
    parallel_for(_sgd, _chunks(w.size), _flat(w), _flat(grad), _flat(buf), _flat(mask), lr, thr,
                 shrink, momentum, nesterov, work=w.size, serial_work=SERIAL_ELEMENTS)


@njit(nogil=True, cache=True, error_model="numpy")
def _sgd_many(table, starts, word, proto, lr, thr, shrink, momentum, nesterov, c0, c1):
    # table rows: size, w, grad, buf, mask
    for c in range(c0, c1):
        k = np.searchsorted(starts, c, side="right") - 1
        n = np.int64(table[k, 0])
        lo = (c - starts[k]) * CHUNK
        hi = min(n, lo + CHUNK)
        w = _view(table[k, 1], word, n, proto)[lo:hi]
        g = _view(table[k, 2], word, n, proto)[lo:hi]
        has_buf = table[k, 3] != 0
        if table[k, 4] == 0:
            if has_buf:
                b = _view(table[k, 3], word, n, proto)[lo:hi]
                _sgd_span(w, g, b, None, lr, thr, shrink, momentum, nesterov)
            else:
                _sgd_span(w, g, None, None, lr, thr, shrink, momentum, nesterov)
        else:
            m = _view(table[k, 4], word, n, np.empty(0, np.bool_))[lo:hi]
            if has_buf:
                b = _view(table[k, 3], word, n, proto)[lo:hi]
                _sgd_span(w, g, b, m, lr, thr, shrink, momentum, nesterov)
            else:
                _sgd_span(w, g, None, m, lr, thr, shrink, momentum, nesterov)


def sgd_update_many(ws, grads, bufs, masks, lr, thr, shrink, momentum, nesterov) -> None:
    """:func:`sgd_update` on each tensor of the lists (``bufs`` None or a list; ``masks`` a list
    with None entries for tensors without a mask)."""
    table = _table(ws, grads, bufs, masks)
    proto = np.empty(0, ws[0].dtype)
    starts = _chunk_starts(table)
    parallel_for(_sgd_many, starts[-1], table, starts, _data_word(), proto, lr, thr, shrink,
                 momentum, nesterov, work=int(table[:, 0].sum()), serial_work=SERIAL_ELEMENTS)


@njit(cache=True, error_model="numpy")
def _adam_span(w, g, m, v, mask, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
               inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox):
    zero = w.dtype.type(0)
    one = w.dtype.type(1)
    for i in range(w.size):
        gi = g[i]
        wi = w[i]  # read before any write, as in _sgd_span
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * gi * gi
        m[i] = mi
        v[i] = vi
        inv_psi = one / (np.sqrt(vi) * inv_sqrt_bc2 + eps)
        z = wi * decay - step_size * mi * inv_psi
        if prox != 0:
            metric = inv_psi if prox == 1 else one  # 1: the Adam metric; 2: decoupled
            z = _soft_threshold(z, lr_l1 * metric, zero) / (one + two_lr_l2 * metric)
        if mask is not None:
            z = z if mask[i] else zero
        w[i] = z


@njit(nogil=True, cache=True, error_model="numpy")
def _adam(w, g, m, v, mask, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
          inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox, c0, c1):
    n = w.size
    for c in range(c0, c1):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        _adam_span(w[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], _part(mask, lo, hi), beta1,
                   one_minus_beta1, beta2, one_minus_beta2, step_size, inv_sqrt_bc2, eps, decay,
                   lr_l1, two_lr_l2, prox)


def adam_update(
    w, grad, m, v, mask, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_sqrt_bc2,
    eps, decay, lr_l1, two_lr_l2, prox
) -> None:
    """Adam moments in place, then with ``r = 1 / (sqrt(v)*inv_sqrt_bc2 + eps)`` (``1/psi``):
    ``z = w*decay - step_size*m*r``; ``prox`` 1: ``w = S(z, lr_l1*r) / (1 + two_lr_l2*r)``,
    ``prox`` 2: ``w = S(z, lr_l1) / (1 + two_lr_l2)``, ``prox`` 0: ``w = z``; ``w[~mask] = 0``."""
    parallel_for(_adam, _chunks(w.size), _flat(w), _flat(grad), _flat(m), _flat(v), _flat(mask),
                 beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_sqrt_bc2, eps,
                 decay, lr_l1, two_lr_l2, prox, work=w.size, serial_work=SERIAL_ELEMENTS)


@njit(nogil=True, cache=True, error_model="numpy")
def _adam_many(table, starts, word, proto, beta1, one_minus_beta1, beta2, one_minus_beta2,
               step_size, inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox, c0, c1):
    # table rows: size, w, grad, m, v, mask
    for c in range(c0, c1):
        k = np.searchsorted(starts, c, side="right") - 1
        n = np.int64(table[k, 0])
        lo = (c - starts[k]) * CHUNK
        hi = min(n, lo + CHUNK)
        w = _view(table[k, 1], word, n, proto)[lo:hi]
        g = _view(table[k, 2], word, n, proto)[lo:hi]
        m = _view(table[k, 3], word, n, proto)[lo:hi]
        v = _view(table[k, 4], word, n, proto)[lo:hi]
        if table[k, 5] == 0:
            _adam_span(w, g, m, v, None, beta1, one_minus_beta1, beta2, one_minus_beta2,
                       step_size, inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox)
        else:
            keep = _view(table[k, 5], word, n, np.empty(0, np.bool_))[lo:hi]
            _adam_span(w, g, m, v, keep, beta1, one_minus_beta1, beta2, one_minus_beta2,
                       step_size, inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox)


def adam_update_many(
    ws, grads, ms, vs, masks, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
    inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox
) -> None:
    """:func:`adam_update` on each tensor of the lists."""
    table = _table(ws, grads, ms, vs, masks)
    proto = np.empty(0, ws[0].dtype)
    starts = _chunk_starts(table)
    parallel_for(_adam_many, starts[-1], table, starts, _data_word(), proto, beta1,
                 one_minus_beta1, beta2, one_minus_beta2, step_size, inv_sqrt_bc2, eps, decay,
                 lr_l1, two_lr_l2, prox, work=int(table[:, 0].sum()), serial_work=SERIAL_ELEMENTS)


@njit(cache=True, error_model="numpy")
def _group_scale(norm, param, mode):
    """mode 0, group lasso: ``max(0, 1 - t/norm)``; mode 1, max-norm: ``min(1, c/norm)``."""
    if mode == 0:
        return 0.0 if norm <= param else 1.0 - param / norm
    return param / norm if norm > param else 1.0


@njit(cache=True, error_model="numpy")
def _group_norm(x2, g, sum_squares):
    """The L2 norm of row ``g`` from its float64 sum of squares; a sum that overflowed or may
    have underflowed is recomputed with the entries scaled by ``2**-k``, ``k`` the exponent of
    the row's largest magnitude (exact scaling, as in the numpy twin)."""
    if not (sum_squares == np.inf or sum_squares < NORM_RESCALE_BELOW):
        return np.sqrt(sum_squares)
    largest = 0.0
    for j in range(x2.shape[1]):
        largest = max(largest, abs(np.float64(x2[g, j])))
    if largest == 0.0 or largest == np.inf:
        return largest
    k = math.frexp(largest)[1]
    acc = 0.0
    for j in range(x2.shape[1]):
        e = math.ldexp(np.float64(x2[g, j]), -k)
        acc += e * e
    return math.ldexp(np.sqrt(acc), k)


@njit(inline="always")
def _row_sum_squares(x2, g):
    """``sum(x2[g, j]**2)`` in float64 over eight interleaved partial sums (lane ``j % 8``),
    added pairwise at the end: one running sum is a chain of dependent additions (4 cycles
    each), eight keep the adder busy, and the order is fixed, so the result depends on neither
    the thread count nor the machine's vector width. 256x256 float32, one core: 18 us against
    33 for the single sum (Zen 4 VM)."""
    n = x2.shape[1]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    full = n - n % 8
    for j in range(0, full, 8):
        e0, e1 = np.float64(x2[g, j]), np.float64(x2[g, j + 1])
        e2, e3 = np.float64(x2[g, j + 2]), np.float64(x2[g, j + 3])
        e4, e5 = np.float64(x2[g, j + 4]), np.float64(x2[g, j + 5])
        e6, e7 = np.float64(x2[g, j + 6]), np.float64(x2[g, j + 7])
        a0 += e0 * e0
        a1 += e1 * e1
        a2 += e2 * e2
        a3 += e3 * e3
        a4 += e4 * e4
        a5 += e5 * e5
        a6 += e6 * e6
        a7 += e7 * e7
    for j in range(full, n):
        e = np.float64(x2[g, j])
        a0 += e * e
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@njit(nogil=True, cache=True, error_model="numpy")
def _groups_by_row(x2, param, mode, r0, r1):
    zero = x2.dtype.type(0)
    for g in range(r0, r1):
        s = _group_scale(_group_norm(x2, g, _row_sum_squares(x2, g)), param, mode)
        if s != 1.0:
            typed = x2.dtype.type(s)
            for j in range(x2.shape[1]):
                x2[g, j] = zero if s == 0.0 else x2[g, j] * typed


@njit(nogil=True, cache=True, error_model="numpy")
def _groups_by_column(x2, param, mode, b0, b1):
    # Groups are columns of memory rows: each block owns GROUP_BLOCK groups and walks the rows,
    # so it reads contiguous runs instead of one element per row.
    zero = x2.dtype.type(0)
    ngroups, size = x2.shape
    for block in range(b0, b1):
        g0 = block * GROUP_BLOCK
        g1 = min(ngroups, g0 + GROUP_BLOCK)
        acc = np.zeros(g1 - g0)
        for j in range(size):
            for g in range(g0, g1):
                e = np.float64(x2[g, j])
                acc[g - g0] += e * e
        scales = np.empty(g1 - g0)
        for g in range(g0, g1):
            scales[g - g0] = _group_scale(_group_norm(x2, g, acc[g - g0]), param, mode)
        for j in range(size):
            for g in range(g0, g1):
                s = scales[g - g0]
                if s != 1.0:
                    x2[g, j] = zero if s == 0.0 else x2[g, j] * x2.dtype.type(s)


def _scale_groups(x2: np.ndarray, param: float, mode: int) -> None:
    ngroups = x2.shape[0]
    if x2.shape[1] > 1 and abs(x2.strides[1]) > abs(x2.strides[0]):
        parallel_for(_groups_by_column, -(-ngroups // GROUP_BLOCK), x2, float(param), mode,
                     work=x2.size, serial_work=SERIAL_ELEMENTS)
    else:
        parallel_for(_groups_by_row, ngroups, x2, float(param), mode, work=x2.size,
                     serial_work=SERIAL_ELEMENTS)


def group_lasso(x2: np.ndarray, t: float) -> None:
    """Each row ``g`` of ``x2`` is scaled by ``max(0, 1 - t/||x2[g]||)``; zero rows stay zero."""
    _scale_groups(x2, t, 0)


def max_norm(x2: np.ndarray, c: float) -> None:
    """Each row ``g`` of ``x2`` is scaled by ``min(1, c/||x2[g]||)``, exactly (no epsilon)."""
    _scale_groups(x2, c, 1)


@njit(nogil=True, cache=True, error_model="numpy")
def _partial_sums(x, partial, c0, c1):
    # Fixed chunks, summed in order afterwards: the result never depends on the thread count.
    n = x.size
    for c in range(c0, c1):
        s1 = 0.0
        s2 = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            e = np.float64(x[i])
            s1 += abs(e)
            s2 += e * e
        partial[c, 0] = s1
        partial[c, 1] = s2


def abs_square_sums(x: np.ndarray) -> tuple[float, float]:
    """``(sum |x|, sum x**2)`` accumulated in float64."""
    flat = x.ravel(order="K")
    partial = np.zeros((_chunks(flat.size), 2))
    parallel_for(_partial_sums, partial.shape[0], flat, partial, work=flat.size,
                 serial_work=SERIAL_ELEMENTS)
    return float(partial[:, 0].sum()), float(partial[:, 1].sum())


__all__ = [
    "abs_square_sums",
    "adam_update",
    "adam_update_many",
    "group_lasso",
    "max_norm",
    "sgd_update",
    "sgd_update_many",
]
