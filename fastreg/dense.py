"""Fused dense + activation + dropout: one GEMM and one epilogue pass, no stored mask
(docs/contract/ops.md).

Element ``(r, c)`` of the output, with ``r`` the row of the flattened batch, has the logical flat
index ``r*N + c`` in the salt-0 stream, so the mask equals ``dropout_mask(y.shape, p, seed=seed,
offset=offset)`` bit for bit and the backward pass regenerates it from ``(seed, offset)``.
"""

from __future__ import annotations

from typing import Any

from . import _backends
from ._kernels.dense import ACTIVATIONS
from ._validate import (
    check_array,
    check_bool,
    check_choice,
    check_layer,
    check_offset,
    check_probability,
    check_required,
    check_same_dtype,
    check_shape_equal,
)
from .random import SALT_DROPOUT, derive_key, dropout_scale, kernel_threshold

__all__ = ["dense_dropout", "dense_dropout_backward"]


def dense_dropout(
    x: Any,
    W: Any,
    b: Any = None,
    *,
    p: float,
    seed: int,
    offset: int = 0,
    activation: str = "relu",
    training: bool = True,
    return_preact: bool = False,
    backend: str | None = None,
) -> Any:
    """Fused layer: ``y = where(keep, act(x @ W + b) / (1 - p), +0.0)``, ``z = x @ W + b``.

    ``keep[i] = bits(i) >= min(floor(p * 2**32), 2**32 - 1)`` with ``i = r*N + c`` the row-major
    flat index of ``y`` (docs/contract/random-stream.md), so
    ``y == dropout(act(x @ W + b), p, seed=seed, offset=offset)`` up to GEMM rounding. ``act``
    is ``identity``, ``relu`` (``max(z, 0)``, NaN
    kept), ``tanh``, ``sigmoid`` (``1/(1+exp(-z))``) or ``gelu`` (``z * Phi(z)``, erf form).
    ``training=False`` gives ``act(x @ W + b)``; ``p == 1`` gives zeros.

    Parameters
    ----------
    x : float32/float64 array (..., K), any strides (copied to C order once if needed)
    W : array (K, N) of x's dtype (Keras kernel layout)
    b : array (N,) of x's dtype, optional
    p : float in [0, 1], the drop probability
    seed : int in [0, 2**64); offset : int in [0, 2**32), the call index
    activation : "identity", "relu", "tanh", "sigmoid" or "gelu"
    training : bool; when False no dropout is applied
    return_preact : bool; also return ``z`` (needed by the backward of gelu)
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    y : new C-contiguous array (..., N) of x's dtype; ``(y, z)`` when ``return_preact``

    Raises
    ------
    ValueError: shape mismatch, p outside [0, 1], seed/offset out of range, unknown activation.
    TypeError: non-array or integer inputs, mixed dtypes, NumPy/CuPy mix.

    Example
    -------
    >>> import numpy as np
    >>> import fastreg
    >>> x, W = np.ones((2, 3)), np.ones((3, 4))
    >>> y = dense_dropout(x, W, np.zeros(4), p=0.5, seed=7)
    >>> keep = fastreg.dropout_mask((2, 4), 0.5, seed=7)
    >>> bool(np.array_equal(y, np.where(keep, 6.0, 0.0)))
    True
    """
    m, k, n = check_layer(x, W, b)
    p = check_probability(p)
    k0, k1 = derive_key(seed)
    offset = check_offset(offset)
    activation = check_choice(activation, "activation", ACTIVATIONS)
    training = check_bool(training, "training")
    return_preact = check_bool(return_preact, "return_preact")
    backend = _backends.resolve(backend, x=x, W=W, b=b)
    xp = _backends.array_module(backend)
    twin = _backends.twin("dense", backend)
    if not training:
        p = 0.0
    y = xp.empty((m, n), dtype=x.dtype)
    z = xp.empty((m, n), dtype=x.dtype) if return_preact else None
    twin.dense_forward(
        x.reshape(m, k), W, b, y, z, activation,
        k0, k1, SALT_DROPOUT, offset, kernel_threshold(p), dropout_scale(p, x.dtype),
    )  # fmt: skip
    shape = (*x.shape[:-1], n)
    return (y.reshape(shape), z.reshape(shape)) if return_preact else y.reshape(shape)


def dense_dropout_backward(
    dy: Any,
    x: Any,
    W: Any,
    y: Any,
    *,
    p: float,
    seed: int,
    offset: int = 0,
    activation: str = "relu",
    z: Any = None,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`dense_dropout`: ``dz = where(keep, dy / (1 - p) * act'(z), 0)``,
    ``dx = dz @ W.T``, ``dW = x.T @ dz`` (batch flattened), ``db = dz.sum(over the batch)``.

    The mask is regenerated from ``(seed, offset)``: pass the forward's ``p``, ``seed``,
    ``offset`` and ``activation`` (``p=0`` for a forward run with ``training=False``).
    ``act'`` is recovered from ``y`` for identity/relu/tanh/sigmoid (kept elements hold
    ``act(z) / (1 - p)``: ``1``, ``a > 0``, ``1 - a**2``, ``a * (1 - a)`` with ``a = y * (1 - p)``)
    and from ``z`` for gelu (``Phi(z) + z * phi(z)``); ``z`` is ignored otherwise. Dropped
    elements have zero gradient. Memory: one ``dz`` scratch of ``y``'s size (plus C-order copies
    of ``dy``/``y``/``z`` only if they are strided) and a float64 ``(<= 32, N)`` partial of ``db``.

    Parameters
    ----------
    dy : array (..., N), the upstream gradient of ``y``
    x : array (..., K), the forward input; W : array (K, N)
    y : array (..., N), the forward output
    p, seed, offset, activation, backend : as in :func:`dense_dropout`
    z : array (..., N), the forward pre-activation (``return_preact=True``); required for gelu

    Returns
    -------
    dx : array of x's shape; dW : array (K, N); db : array (N,), whether or not the forward had
    a bias. All new C-contiguous arrays of x's dtype.

    Raises
    ------
    ValueError: shape mismatch, gelu without ``z``, bad p/seed/offset/activation.
    TypeError: non-array or integer inputs, mixed dtypes, NumPy/CuPy mix.

    Example
    -------
    >>> import numpy as np
    >>> x, W = np.ones((2, 3)), np.ones((3, 4))
    >>> y = dense_dropout(x, W, p=0.5, seed=7)
    >>> dx, dW, db = dense_dropout_backward(np.ones_like(y), x, W, y, p=0.5, seed=7)
    >>> bool(np.array_equal(db, (y != 0).sum(axis=0) * 2.0))
    True
    """
    m, k, n = check_layer(x, W, None)
    shape = (*x.shape[:-1], n)
    what = "the forward output's shape x.shape[:-1] + (N,)"
    check_array(dy, "dy")
    check_array(y, "y")
    if z is not None:
        check_array(z, "z")
    check_same_dtype(dy=dy, x=x, W=W, y=y, z=z)
    check_shape_equal(dy, "dy", shape, what)
    check_shape_equal(y, "y", shape, what)
    if z is not None:
        check_shape_equal(z, "z", shape, what)
    p = check_probability(p)
    k0, k1 = derive_key(seed)
    offset = check_offset(offset)
    activation = check_choice(activation, "activation", ACTIVATIONS)
    if activation == "gelu":
        check_required(z, "z", "for activation='gelu' (pass return_preact=True to the forward)")
    backend = _backends.resolve(backend, dy=dy, x=x, W=W, y=y, z=z)
    twin = _backends.twin("dense", backend)
    dx, dW, db = twin.dense_backward(
        dy.reshape(m, n), x.reshape(m, k), W, y.reshape(m, n),
        None if z is None else z.reshape(m, n), activation,
        k0, k1, SALT_DROPOUT, offset, kernel_threshold(p), dropout_scale(p, x.dtype),
    )  # fmt: skip
    return dx.reshape(x.shape), dW, db
