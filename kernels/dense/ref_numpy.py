"""Fused dense reference twin in plain NumPy: reads like docs/contract/ops.md, the oracle of the
Numba twin.

Both functions take 2-D arrays (the batch flattened into rows) and host-derived scalars
(``k0, k1`` the key, ``threshold`` from ``fastreg.random.kernel_threshold``, ``scale = 1/(1-p)``
in the array dtype). Element ``(r, c)`` of the ``(M, N)`` output has the logical flat index
``r*N + c`` in the salt-``salt`` stream.
"""

from __future__ import annotations

import math

import numpy as np

from ..dropout.ref_numpy import keep_mask

#: The twin interface (the same in every backend's dense twin).
__all__ = ["dense_backward", "dense_forward"]

_erf = np.vectorize(math.erf, otypes=[np.float64])
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def activate(z: np.ndarray, activation: str) -> np.ndarray:
    """``act(z)``; relu keeps NaN (like ``torch.relu``), gelu is the erf form."""
    if activation == "identity":
        return z
    if activation == "relu":
        return np.where(z <= 0, z.dtype.type(0), z)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "sigmoid":
        with np.errstate(over="ignore"):
            return (1 / (1 + np.exp(-z))).astype(z.dtype)
    return (0.5 * z * (1 + _erf(z * _SQRT_HALF))).astype(z.dtype)


def derivative(a: np.ndarray, z: np.ndarray | None, activation: str) -> np.ndarray:
    """``act'(z)`` from the activation ``a = act(z)`` (identity/relu/tanh/sigmoid) or from ``z``
    (gelu: ``Phi(z) + z*phi(z)``)."""
    if activation == "identity":
        return np.ones_like(a)
    if activation == "relu":
        return (a > 0).astype(a.dtype)
    if activation == "tanh":
        return 1 - a * a
    if activation == "sigmoid":
        return a * (1 - a)
    wide = z.astype(np.float64)
    cdf = 0.5 * (1 + _erf(wide * _SQRT_HALF))
    return (cdf + wide * np.exp(-0.5 * wide * wide) * _INV_SQRT_2PI).astype(z.dtype)


def _keep(shape, k0, k1, salt, offset, threshold) -> np.ndarray:
    return keep_mask(math.prod(shape), k0, k1, salt, offset, threshold).reshape(shape)


def dense_forward(x, W, b, y, z, activation, k0, k1, salt, offset, threshold, scale) -> None:
    """``y = where(keep, act(x @ W + b) * scale, +0.0)``; ``z = x @ W + b`` when ``z`` is given.

    ``x`` (M, K), ``W`` (K, N), ``b`` (N,) or None; ``y`` and ``z`` (M, N) C-contiguous outputs.
    """
    pre = x @ W
    if b is not None:
        pre += b
    if z is not None:
        z[...] = pre
    keep = _keep(y.shape, k0, k1, salt, offset, threshold)
    y[...] = np.where(keep, activate(pre, activation) * scale, y.dtype.type(0))


def dense_backward(dy, x, W, y, z, activation, k0, k1, salt, offset, threshold, scale):
    """``(dx, dW, db)`` of :func:`dense_forward`: ``dz = where(keep, dy*scale*act', 0)``,
    ``dx = dz @ W.T``, ``dW = x.T @ dz``, ``db = dz.sum(0)``. ``act'`` comes from
    ``y / scale`` (kept elements hold ``act(z)*scale``) or, for gelu, from ``z``."""
    keep = _keep(dy.shape, k0, k1, salt, offset, threshold)
    inverse = y.dtype.type(1 / scale if scale else 0)  # p == 1: nothing kept, nothing divided
    slope = derivative(y * inverse, z, activation)
    dz = np.where(keep, dy * scale * slope, dy.dtype.type(0))
    return dz @ W.T, x.T @ dz, dz.sum(axis=0)
