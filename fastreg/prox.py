"""Proximal weight updates: L1, L2, elastic net, group lasso and max-norm, in place
(docs/contract/ops.md).

Penalty convention (Keras): ``R(w) = l1 * sum|w| + l2 * sum w**2``. With the soft threshold
``S(v, t) = sign(v) * max(|v| - t, 0)`` the proximal step of ``lr * R`` is
``S(v, lr*l1) / (1 + 2*lr*l2)``: weights inside the threshold become exactly ``+0.0`` (a select,
so every backend gives the same bits), which a subgradient step on ``R`` never does.

Every op takes one array or a list of arrays (with matching lists for gradients, states and
masks) and updates them in one call; everything is validated before the first write, so on any
error nothing has been modified. Arrays are updated where they live: tensors whose arrays share
one memory order (all C- or all F-contiguous) are walked in one pass; strided arrays are staged
in a contiguous copy and written back, so the update still lands in the caller's array.
Hyper-parameters are combined in float64 on the host and cast once to the arrays' compute dtype.
float16/bfloat16 compute in float32 (docs/contract/ops.md): on the CPU their arrays are staged in
float32 copies, updated there, and written back rounded once per step (states too); CuPy kernels
do the same per element.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _backends
from ._dtypes import compute_dtype, host_widens
from ._validate import (
    check_array,
    check_axes,
    check_bool,
    check_choice,
    check_int_at_least,
    check_matching_list,
    check_momentum,
    check_nonnegative,
    check_probability,
    check_update_arrays,
    float_in_range,
)

__all__ = ["max_norm_", "penalty", "prox_adam_", "prox_group_lasso_", "prox_sgd_"]

_Staged = list[tuple[Any, Any]]

#: Where :func:`prox_adam_` takes the L1/L2 prox (docs/contract/ops.md).
PENALTY_METRICS = ("decoupled", "adam")


def _weights(w: Any) -> tuple[list[Any], bool]:
    """The weights as a list, and whether the caller gave a list."""
    if isinstance(w, (list, tuple)):
        return list(w), True
    return [w], False


def _resolve(backend: str | None, **columns: list[Any]) -> str:
    """The backend for all arrays of all lists, named ``w[k]`` (or ``w`` for a single array) in
    errors; the common all-NumPy case checks one array."""
    if all(type(a) is np.ndarray or a is None for column in columns.values() for a in column):
        # All NumPy: only the first array's name can appear in an error (~4 us less a call
        # than naming all of them, per optimizer step and list).
        name, column = next(iter(columns.items()))
        if not column:
            return _backends.resolve(backend)
        return _backends.resolve(backend, **{f"{name}[0]" if len(column) > 1 else name: column[0]})
    arrays = {
        (f"{name}[{k}]" if len(column) > 1 else name): a
        for name, column in columns.items()
        for k, a in enumerate(column)
        if a is not None
    }
    return _backends.resolve(backend, **arrays)


def _conform(a: Any, order: str, written: bool, staged: _Staged, widen: bool = False) -> Any:
    """``a`` itself if contiguous in ``order``, else a contiguous copy (written back later when
    ``written``): the twins walk a tensor's arrays in one memory order. With ``widen``, always a
    copy in ``a``'s compute dtype (float32 for float16/bfloat16; the write-back rounds once)."""
    if a is None or (
        not widen and (a.flags.c_contiguous if order == "C" else a.flags.f_contiguous)
    ):
        return a
    # astype/copy with order=: methods both NumPy and CuPy arrays have.
    copy = a.astype(compute_dtype(a.dtype), order=order) if widen else a.copy(order=order)
    if written:
        staged.append((a, copy))
    return copy


def _all_flag(arrays: list[Any], flag: str) -> bool:
    # A plain loop, not all(<generator>): this runs once per tensor of an optimizer step.
    for a in arrays:
        if not getattr(a.flags, flag):
            return False
    return True


def _arrange(
    w: Any, inputs: list[Any], states: list[Any], mask: Any, staged: _Staged
) -> tuple[Any, list[Any], list[Any], Any]:
    """The arrays of one tensor, all C- or all F-contiguous (F only when ``w`` is F-only), in
    their compute dtype (float32 copies of float16/bfloat16 NumPy arrays, written back)."""
    widen = host_widens(_backends.array_kind(w), w.dtype)
    if not widen:
        others = [*inputs, *states]
        if mask is not None:
            others.append(mask)
        if w.flags.c_contiguous and _all_flag(others, "c_contiguous"):
            return w, inputs, states, mask
        if w.flags.f_contiguous and _all_flag(others, "f_contiguous"):
            return w, inputs, states, mask
    order = "F" if w.flags.f_contiguous and not w.flags.c_contiguous else "C"
    return (
        _conform(w, order, True, staged, widen),
        [_conform(a, order, False, staged, widen) for a in inputs],
        [_conform(a, order, True, staged, widen) for a in states],
        _conform(mask, order, False, staged),
    )


def _write_back(staged: _Staged) -> None:
    # A float32 copy of a float16/bfloat16 array is rounded here, once (nearest even).
    for destination, copy in staged:
        destination[...] = copy


def _by_dtype(ws: list[Any]) -> dict[np.dtype, list[int]]:
    groups: dict[np.dtype, list[int]] = {}
    for k, w in enumerate(ws):
        groups.setdefault(w.dtype, []).append(k)
    return groups


def prox_sgd_(
    w: Any,
    grad: Any,
    *,
    lr: float,
    l1: float = 0.0,
    l2: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    buf: Any = None,
    mask: Any = None,
    backend: str | None = None,
) -> Any:
    """Proximal SGD step in place: ``w = S(w - lr*d, lr*l1) / (1 + 2*lr*l2)``.

    ``d = grad`` without momentum; with ``momentum > 0``, first ``buf = momentum*buf + grad``
    (PyTorch's SGD convention, no dampening) and ``d = buf``, or ``d = grad + momentum*buf`` if
    ``nesterov``. ``S(v, t) = sign(v) * max(|v| - t, 0)`` gives exact ``+0.0`` zeros. The step is
    the proximal operator of ``lr * R`` with Keras's ``R(w) = l1*sum|w| + l2*sum w**2``, applied
    after the gradient step of the smooth loss. With a keep-mask (dense-sparse-dense training),
    ``w[~mask] = +0.0`` afterwards.

    Iterating this step is ISTA (FISTA with extrapolated points) and converges to the elastic
    net. scikit-learn's ``ElasticNet(alpha, l1_ratio, fit_intercept=False)`` minimizes
    ``||y - X w||**2 / (2 n) + alpha*l1_ratio*|w|_1 + alpha*(1 - l1_ratio)/2 * ||w||**2``: take
    ``grad = X.T @ (X @ w - y) / n``, ``lr <= 1/L`` with ``L = ||X||_2**2 / n``, and
    ``l1 = alpha * l1_ratio``, ``l2 = alpha * (1 - l1_ratio) / 2``.

    Parameters
    ----------
    w : float16/bfloat16/float32/float64 array, any shape, or a list of such arrays;
        updated in place
    grad : array of w's shape and dtype (or a list matching w)
    lr, l1, l2 : finite floats >= 0 (the step and the penalty weights)
    momentum : float >= 0; nesterov : bool (needs momentum > 0)
    buf : momentum state, array of w's shape and dtype (zeros before the first step), updated in
        place; required when ``momentum > 0``, untouched when ``momentum == 0``
    mask : bool array of w's shape (True = kept), optional; lists may hold None entries
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    w, updated in place (the same array or list object)

    Raises
    ------
    ValueError: negative or non-finite lr/l1/l2/momentum, shape or list-length mismatch,
        momentum without buf, nesterov without momentum, read-only arrays.
    TypeError: non-arrays, integer or mixed dtypes, a list where an array is expected.

    Example
    -------
    >>> import numpy as np
    >>> w = np.array([0.5, -0.05, 2.0])
    >>> prox_sgd_(w, np.zeros(3), lr=0.1, l1=1.0).tolist()
    [0.4, 0.0, 1.9]
    """
    lr = check_nonnegative(lr, "lr")
    l1 = check_nonnegative(l1, "l1")
    l2 = check_nonnegative(l2, "l2")
    momentum = check_nonnegative(momentum, "momentum")
    nesterov = check_bool(nesterov, "nesterov")
    ws, is_list = _weights(w)
    grads = check_matching_list(grad, "grad", len(ws), is_list)
    bufs = check_matching_list(buf, "buf", len(ws), is_list, optional=True)
    masks = check_matching_list(mask, "mask", len(ws), is_list, optional=True)
    check_momentum(momentum, nesterov, buf is not None)
    use_buf = momentum > 0.0
    index = None
    for k, wk in enumerate(ws):
        if is_list:
            index = k
        states = (("buf", bufs[k]),) if use_buf or bufs[k] is not None else ()
        check_update_arrays(index, wk, (("grad", grads[k]),), states, masks[k])
    twin = _backends.twin("prox", _resolve(backend, w=ws, grad=grads, buf=bufs, mask=masks))
    staged: _Staged = []
    for dtype, members in _by_dtype(ws).items():
        t = compute_dtype(dtype).type
        scalars = (t(lr), t(lr * l1), t(1.0 / (1.0 + 2.0 * lr * l2)), t(momentum), nesterov)
        arranged = []
        for k in members:
            wk, (gk,), states, mk = _arrange(
                ws[k], [grads[k]], [bufs[k]] if use_buf else [], masks[k], staged
            )
            arranged.append((wk, gk, states[0] if use_buf else None, mk))
        if not is_list:
            twin.sgd_update(*arranged[0], *scalars)
            continue
        columns = [list(c) for c in zip(*arranged, strict=True)]
        twin.sgd_update_many(
            columns[0], columns[1], columns[2] if use_buf else None, columns[3], *scalars
        )
    _write_back(staged)
    return w


def prox_adam_(
    w: Any,
    grad: Any,
    m: Any,
    v: Any,
    *,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    l1: float = 0.0,
    l2: float = 0.0,
    weight_decay: float = 0.0,
    mask: Any = None,
    penalty_metric: str = "decoupled",
    backend: str | None = None,
) -> Any:
    """Adam step with the L1/L2 prox, decoupled (the default) or in the Adam metric, in place.

    Moments (Kingma & Ba): ``m = beta1*m + (1-beta1)*grad``, ``v = beta2*v + (1-beta2)*grad**2``,
    ``m_hat = m / (1 - beta1**step)``, ``v_hat = v / (1 - beta2**step)``. With
    ``psi = sqrt(v_hat) + eps`` (the diagonal Adam metric):
    ``z = w - lr*m_hat/psi - lr*weight_decay*w`` (decoupled decay, AdamW), then the prox of
    ``lr * R`` (Keras ``R(w) = l1*sum|w| + l2*sum w**2``), exact ``+0.0`` zeros for L1:
    ``penalty_metric="decoupled"`` (default) ``w = S(z, lr*l1) / (1 + 2*lr*l2)``, outside the
    Adam metric like AdamW's decoupled decay; ``penalty_metric="adam"``
    ``w = S(z, lr*l1/psi) / (1 + 2*lr*l2/psi)``, in the metric ``psi``. Why the default: in the
    Adam metric a coordinate whose gradient is always zero has ``psi = eps``, so its threshold
    ``lr*l1/eps`` zeroes it at once (an unused embedding row vanishes in one step).
    ``w[~mask] = +0.0`` afterwards if a keep-mask is given (the moments are updated everywhere).
    With ``l1 = l2 = 0`` this is ``torch.optim.AdamW``'s step.

    Parameters
    ----------
    w : float16/bfloat16/float32/float64 array, any shape, or a list of such arrays;
        updated in place
    grad : array of w's shape and dtype (or a list matching w)
    m, v : first and second moments, arrays of w's shape and dtype (zeros before step 1),
        updated in place
    step : int >= 1, the number of this step (bias correction)
    lr, eps, l1, l2, weight_decay : finite floats >= 0
    beta1, beta2 : floats in [0, 1)
    mask : bool array of w's shape (True = kept), optional; lists may hold None entries
    penalty_metric : "decoupled" (default) or "adam", where the L1/L2 prox is taken
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    w, updated in place (the same array or list object)

    Raises
    ------
    ValueError: step < 1, betas outside [0, 1), negative hyper-parameters, shape or list-length
        mismatch, read-only arrays, an unknown penalty_metric.
    TypeError: non-arrays, integer or mixed dtypes, a non-int step.

    Example
    -------
    >>> import numpy as np
    >>> w, m, v = np.array([1.0, 0.105]), np.zeros(2), np.zeros(2)
    >>> prox_adam_(w, np.ones(2), m, v, step=1, lr=0.1, l1=0.1).round(6).tolist()
    [0.89, 0.0]

    A coordinate whose gradient is zero: shrunk by ``lr*l1`` (decoupled), or zeroed by
    ``lr*l1/eps`` in the Adam metric:

    >>> w, g = np.array([1.0, 0.5]), np.array([1.0, 0.0])
    >>> prox_adam_(w.copy(), g, np.zeros(2), np.zeros(2), step=1, lr=0.1, l1=0.1).round(6).tolist()
    [0.89, 0.49]
    >>> prox_adam_(w.copy(), g, np.zeros(2), np.zeros(2), step=1, lr=0.1, l1=0.1,
    ...            penalty_metric="adam").round(6).tolist()
    [0.89, 0.0]
    """
    step = check_int_at_least(step, "step", 1)
    float_in_range(step, "step")  # beta**step is a float power
    lr = check_nonnegative(lr, "lr")
    beta1 = check_probability(beta1, "beta1", allow_one=False)
    beta2 = check_probability(beta2, "beta2", allow_one=False)
    eps = check_nonnegative(eps, "eps")
    l1 = check_nonnegative(l1, "l1")
    l2 = check_nonnegative(l2, "l2")
    weight_decay = check_nonnegative(weight_decay, "weight_decay")
    metric = check_choice(penalty_metric, "penalty_metric", PENALTY_METRICS)
    ws, is_list = _weights(w)
    grads = check_matching_list(grad, "grad", len(ws), is_list)
    ms = check_matching_list(m, "m", len(ws), is_list)
    vs = check_matching_list(v, "v", len(ws), is_list)
    masks = check_matching_list(mask, "mask", len(ws), is_list, optional=True)
    index = None
    for k, wk in enumerate(ws):
        if is_list:
            index = k
        check_update_arrays(index, wk, (("grad", grads[k]),), (("m", ms[k]), ("v", vs[k])),
                            masks[k])
    twin = _backends.twin("prox", _resolve(backend, w=ws, grad=grads, m=ms, v=vs, mask=masks))
    host = (
        beta1,
        1.0 - beta1,
        beta2,
        1.0 - beta2,
        lr / (1.0 - beta1**step),
        1.0 / math.sqrt(1.0 - beta2**step),
        eps,
        1.0 - lr * weight_decay,
        lr * l1,
        2.0 * lr * l2,
    )
    # The twins' prox code: 0 none, 1 in the Adam metric, 2 decoupled.
    prox = 0 if l1 == 0.0 and l2 == 0.0 else (2 if metric == "decoupled" else 1)
    staged: _Staged = []
    for dtype, members in _by_dtype(ws).items():
        scalars = (*(compute_dtype(dtype).type(s) for s in host), prox)
        arranged = []
        for k in members:
            wk, (gk,), (mk, vk), keep = _arrange(ws[k], [grads[k]], [ms[k], vs[k]], masks[k],
                                                 staged)
            arranged.append((wk, gk, mk, vk, keep))
        if not is_list:
            twin.adam_update(*arranged[0], *scalars)
            continue
        columns = [list(c) for c in zip(*arranged, strict=True)]
        twin.adam_update_many(*columns, *scalars)
    _write_back(staged)
    return w


def _group_rows(w: Any, axes: tuple[int, ...], staged: _Staged) -> Any:
    """``w`` as a 2-D ``(groups, group_size)`` array whose rows are the groups: a view when the
    layout allows, else a copy staged for writing back."""
    others = [a for a in range(w.ndim) if a not in axes]
    moved = w.transpose(others + list(axes))
    rows = math.prod(w.shape[a] for a in others)
    rows2 = moved.reshape(rows, math.prod(w.shape[a] for a in axes))
    xp = _backends.array_module(_backends.array_kind(w))  # numpy or cupy, whichever holds w
    if rows2.size and not xp.may_share_memory(rows2, w):
        staged.append((moved, rows2.reshape(moved.shape)))
    return rows2


def _group_op(w: Any, axis: Any, backend: str | None, kernel: str, param: float) -> Any:
    ws, is_list = _weights(w)
    axes = []
    for k, wk in enumerate(ws):
        check_update_arrays(k if is_list else None, wk, (), (), None)
        axes.append(check_axes(axis, wk.ndim))
    _scale_groups(_backends.twin("prox", _resolve(backend, w=ws)), ws, axes, kernel, param)
    return w


def _scale_groups(twin: Any, ws: list[Any], axes: list[tuple[int, ...]], kernel: str,
                  param: float) -> None:
    """The group kernel on arrays already checked (``check_update_arrays``, ``check_axes``):
    the body of :func:`prox_group_lasso_` / :func:`max_norm_` after their checks."""
    for wk, ak in zip(ws, axes, strict=True):
        staged: _Staged = []
        rows = _group_rows(wk, ak, staged)
        if host_widens(_backends.array_kind(wk), wk.dtype):
            wide = rows.astype(compute_dtype(wk.dtype))
            getattr(twin, kernel)(wide, param)
            rows[...] = wide  # the one rounding, before any staged copy is written back
        else:
            getattr(twin, kernel)(rows, param)
        _write_back(staged)


def prox_group_lasso_(
    w: Any, *, t: float, axis: Any = 0, backend: str | None = None
) -> Any:
    """Group-lasso prox in place: each group ``w_g`` becomes ``max(0, 1 - t/||w_g||) * w_g``.

    A group is the set of entries that share every index outside ``axis``, and ``||w_g||`` is
    the L2 norm over ``axis`` (NumPy ``norm(axis=...)`` and Keras ``MaxNorm`` semantics): for a
    dense kernel ``W`` of shape ``(K, N)``, ``axis=0`` makes ``W[:, j]`` (the incoming weights of
    unit ``j``) a group. This is the prox of ``t * sum_g ||w_g||``; groups with
    ``||w_g|| <= t`` become exactly ``+0.0`` (zero groups stay zero, no NaN). Norms are
    accumulated in float64; each group's scale is cast once to the dtype.

    Parameters
    ----------
    w : float16/bfloat16/float32/float64 array, or a list of arrays; updated in place
    t : finite float >= 0, the threshold (``lr * lambda`` for a step of size lr)
    axis : int, tuple of ints, or None (the whole array is one group); default 0
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    w, updated in place

    Raises
    ------
    ValueError: negative t, axis out of range or repeated, read-only arrays.
    TypeError: non-arrays, integer dtypes, a non-int axis.

    Example
    -------
    >>> import numpy as np
    >>> W = np.array([[3.0, 0.1], [4.0, 0.0]])
    >>> prox_group_lasso_(W, t=1.0).round(6).tolist()
    [[2.4, 0.0], [3.2, 0.0]]
    """
    t = check_nonnegative(t, "t")
    return _group_op(w, axis, backend, "group_lasso", t)


def max_norm_(
    w: Any, *, max_norm: float, axis: Any = 0, backend: str | None = None
) -> Any:
    """Max-norm constraint in place: each group ``w_g`` becomes ``min(1, max_norm/||w_g||) * w_g``.

    Groups and ``axis`` as in :func:`prox_group_lasso_` (Keras ``MaxNorm(max_value, axis)``).
    The scale is exact (no epsilon, unlike Keras): groups within the bound are left untouched,
    the others end with norm ``max_norm`` up to rounding; ``max_norm = 0`` zeroes every group
    (exact ``+0.0``).

    Parameters
    ----------
    w : float16/bfloat16/float32/float64 array, or a list of arrays; updated in place
    max_norm : finite float >= 0
    axis : int, tuple of ints, or None (the whole array is one group); default 0
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    w, updated in place

    Raises
    ------
    ValueError: negative max_norm, axis out of range or repeated, read-only arrays.
    TypeError: non-arrays, integer dtypes, a non-int axis.

    Example
    -------
    >>> import numpy as np
    >>> W = np.array([[3.0, 0.1], [4.0, 0.0]])
    >>> max_norm_(W, max_norm=1.0).round(6).tolist()
    [[0.6, 0.1], [0.8, 0.0]]
    """
    bound = check_nonnegative(max_norm, "max_norm")
    return _group_op(w, axis, backend, "max_norm", bound)


def penalty(w: Any, l1: float = 0.0, l2: float = 0.0, *, backend: str | None = None) -> float:
    """Keras penalty ``R(w) = l1 * sum|w| + l2 * sum w**2``, summed over a list of arrays.

    Sums are accumulated in float64; a term whose weight is 0 is left out (so ``l1=0`` with an
    infinite weight gives ``inf`` or a number, never ``0 * inf = NaN``).

    Parameters
    ----------
    w : float16/bfloat16/float32/float64 array of any shape and layout, or a list of arrays
    l1, l2 : finite floats >= 0
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    float

    Raises
    ------
    ValueError: negative or non-finite l1/l2.
    TypeError: non-arrays, integer dtypes.

    Example
    -------
    >>> import numpy as np
    >>> penalty(np.array([1.0, -2.0]), l1=0.5, l2=0.25)
    2.75
    """
    l1 = check_nonnegative(l1, "l1")
    l2 = check_nonnegative(l2, "l2")
    ws, is_list = _weights(w)
    for k, wk in enumerate(ws):
        check_array(wk, f"w[{k}]" if is_list else "w")
    twin = _backends.twin("prox", _resolve(backend, w=ws))
    total = 0.0
    for wk in ws:
        if host_widens(_backends.array_kind(wk), wk.dtype):
            wk = wk.astype(compute_dtype(wk.dtype))  # exact; the sums are float64 anyway
        sum_abs, sum_squares = twin.abs_square_sums(wk)
        total += (l1 * sum_abs if l1 else 0.0) + (l2 * sum_squares if l2 else 0.0)
    return total
