"""Proximal-update reference twin in plain NumPy: reads like docs/contract/ops.md.

Elementwise functions take arrays of one tensor with one shape (any layout: NumPy broadcasts
them elementwise) and scalars already cast to the arrays' dtype by ``fastreg.prox``; they compute
in that dtype, as the Numba twin does. ``*_many`` take lists of such tensors of one dtype. Group
functions take a 2-D view ``(groups, group_size)`` and host scalars in float64.
"""

from __future__ import annotations

import numpy as np

from . import NORM_RESCALE_BELOW


def _soft_threshold(v: np.ndarray, t) -> np.ndarray:
    """``sign(v) * max(|v| - t, 0)`` with a select: zeros are exactly ``+0.0``, NaN stays NaN."""
    return np.where(np.abs(v) <= t, v.dtype.type(0), v - np.copysign(t, v))


def sgd_update(w, grad, buf, mask, lr, thr, shrink, momentum, nesterov) -> None:
    """``buf = momentum*buf + grad``; ``d = buf`` (``grad + momentum*buf`` if nesterov; ``grad``
    if ``buf`` is None); ``w = S(w - lr*d, thr) * shrink``; ``w[~mask] = +0.0``."""
    # Every value is computed from the arrays as the call found them, then the state is
    # written, then w (the order of every twin): arguments that are the same array
    # (docs/contract/errors.md) give the same result on every backend.
    d = grad
    new_buf = None
    if buf is not None:
        new_buf = momentum * buf + grad
        d = grad + momentum * new_buf if nesterov else new_buf
    result = _soft_threshold(w - lr * d, thr) * shrink
    if mask is not None:
        result = np.where(mask, result, w.dtype.type(0))
    if new_buf is not None:
        buf[...] = new_buf
    w[...] = result


def sgd_update_many(ws, grads, bufs, masks, lr, thr, shrink, momentum, nesterov) -> None:
    """:func:`sgd_update` on each tensor of the lists (``bufs`` None or a list; ``masks`` a list
    with None entries for tensors without a mask)."""
    for k, w in enumerate(ws):
        buf = None if bufs is None else bufs[k]
        sgd_update(w, grads[k], buf, masks[k], lr, thr, shrink, momentum, nesterov)


def adam_update(
    w, grad, m, v, mask, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_sqrt_bc2,
    eps, decay, lr_l1, two_lr_l2, prox
) -> None:
    """Adam moments in place, then with ``r = 1 / (sqrt(v)*inv_sqrt_bc2 + eps)`` (``1/psi``):
    ``z = w*decay - step_size*m*r``; ``prox`` 1 (the Adam metric): ``w = S(z, lr_l1*r) /
    (1 + two_lr_l2*r)``; ``prox`` 2 (decoupled): ``w = S(z, lr_l1) / (1 + two_lr_l2)``; ``prox``
    0: ``w = z``; then ``w[~mask] = +0.0``."""
    # Computed from the arrays as found, then written: m, v, then w (see sgd_update).
    new_m = beta1 * m + one_minus_beta1 * grad
    new_v = beta2 * v + one_minus_beta2 * grad * grad
    one = w.dtype.type(1)
    inv_psi = one / (np.sqrt(new_v) * inv_sqrt_bc2 + eps)
    z = w * decay - step_size * new_m * inv_psi
    if prox:
        metric = inv_psi if prox == 1 else one
        z = _soft_threshold(z, lr_l1 * metric) / (one + two_lr_l2 * metric)
    if mask is not None:
        z = np.where(mask, z, w.dtype.type(0))
    m[...] = new_m
    v[...] = new_v
    w[...] = z


def adam_update_many(
    ws, grads, ms, vs, masks, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
    inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox
) -> None:
    """:func:`adam_update` on each tensor of the lists."""
    for k, w in enumerate(ws):
        adam_update(w, grads[k], ms[k], vs[k], masks[k], beta1, one_minus_beta1, beta2,
                    one_minus_beta2, step_size, inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox)


def _group_norms(x2: np.ndarray) -> np.ndarray:
    """L2 norm of each row, in float64; rows whose sum of squares overflows or may have
    underflowed are recomputed with the entries scaled by ``2**-k``, ``k`` the exponent of the
    row's largest magnitude (exact scaling, see ``NORM_RESCALE_BELOW``)."""
    with np.errstate(over="ignore", under="ignore"):  # such rows are the ones recomputed
        sums = np.sum(np.square(x2, dtype=np.float64), axis=1)
    norms = np.sqrt(sums)
    redo = (sums == np.inf) | (sums < NORM_RESCALE_BELOW)
    if np.any(redo) and x2.shape[1]:
        rows = x2[redo].astype(np.float64)
        largest = np.max(np.abs(rows), axis=1)
        k = np.frexp(largest)[1]
        scaled = np.ldexp(rows, -k[:, None])
        rescaled = np.ldexp(np.sqrt(np.sum(np.square(scaled), axis=1)), k)
        # zero rows stay 0 and rows holding an infinity are infinite
        norms[redo] = np.where(np.isfinite(largest) & (largest > 0), rescaled, largest)
    return norms


def _scale_groups(x2: np.ndarray, scale: np.ndarray) -> None:
    """``x2[g] *= scale[g]`` (cast once to the dtype); a zero scale writes exactly ``+0.0``."""
    zero = x2.dtype.type(0)
    with np.errstate(invalid="ignore"):  # inf * 0 of an infinite group: selected away below
        scaled = x2 * scale.astype(x2.dtype)[:, None]
    x2[...] = np.where((scale == 0.0)[:, None], zero, scaled)


def group_lasso(x2: np.ndarray, t: float) -> None:
    """Each row ``g`` of ``x2`` is scaled by ``max(0, 1 - t/||x2[g]||)``; zero rows stay zero."""
    norms = _group_norms(x2)
    safe = np.where(norms > 0.0, norms, 1.0)
    _scale_groups(x2, np.where(norms <= t, 0.0, 1.0 - t / safe))


def max_norm(x2: np.ndarray, c: float) -> None:
    """Each row ``g`` of ``x2`` is scaled by ``min(1, c/||x2[g]||)``, exactly (no epsilon)."""
    norms = _group_norms(x2)
    safe = np.where(norms > 0.0, norms, 1.0)
    _scale_groups(x2, np.where(norms > c, c / safe, 1.0))


def abs_square_sums(x: np.ndarray) -> tuple[float, float]:
    """``(sum |x|, sum x**2)`` accumulated in float64."""
    return float(np.sum(np.abs(x), dtype=np.float64)), float(np.sum(np.square(x, dtype=np.float64)))


__all__ = [
    "abs_square_sums",
    "adam_update",
    "adam_update_many",
    "group_lasso",
    "max_norm",
    "sgd_update",
    "sgd_update_many",
]
