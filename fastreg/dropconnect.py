"""DropConnect: masks on the weights, per batch or per example, never materialized
(docs/contract/ops.md).

Masks come from the salt-1 stream of :mod:`fastreg.random`: weight ``(k, n)`` is kept iff
``bits(i) >= threshold`` with ``i = k*N + n`` per batch (one mask of ``W``'s shape for the call) or
``i = e*K*N + k*N + n`` per example (Wan et al. 2013: example ``e`` of the flattened batch has its
own mask). Kept weights are scaled by ``1/(1-p)`` (inverted DropConnect); the bias is not masked.

Per batch, the masked weight (the size of ``W``) is formed by the dropout kernel on the salt-1
stream and fed to BLAS; the backward masks ``W`` and ``x.T @ dy`` in one pass over the words
(``dropout_apply_pair``). Per example, the twin kernels regenerate the bits of each tile inside
the matmul loops; no ``(B, K, N)`` array exists in either direction.

Also here: Wan et al.'s Gaussian moment-matching inference (:func:`dropconnect_moments`,
:func:`dropconnect_inference`), a better test-time estimate of ``E[act(u)]`` than the mean network.
"""

from __future__ import annotations

from typing import Any

from . import _backends
from ._dtypes import from_compute, host_widens, to_compute
from ._elementwise import run_flat
from ._validate import (
    _describe,
    check_array,
    check_bool,
    check_choice,
    check_int_at_least,
    check_layer,
    check_offset,
    check_probability,
    check_same_dtype,
    check_seed,
    check_shape_equal,
)
from .dropout import gaussian_noise
from .random import SALT_DROPCONNECT, derive_key, dropout_scale, kernel_threshold

__all__ = [
    "dropconnect",
    "dropconnect_backward",
    "dropconnect_inference",
    "dropconnect_moments",
]

_ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")


def _stream(p: float, seed: Any, offset: Any, dtype: Any, compute: Any) -> tuple[Any, ...]:
    """Host-derived kernel scalars ``(k0, k1, salt, offset, threshold, scale)``: the scale cast
    to the storage ``dtype``, then to the ``compute`` dtype of the arrays the kernels see."""
    k0, k1 = derive_key(seed)
    scale = compute.type(dropout_scale(p, dtype))
    return k0, k1, SALT_DROPCONNECT, offset, kernel_threshold(p), scale


def _widened(backend: str, *arrays: Any) -> tuple[Any, ...]:
    """The arrays in the dtype the op computes in: float32 copies of float16/bfloat16 NumPy
    arrays (their one rounding is the op's last step), else the arrays themselves."""
    if host_widens(_backends.backend_array_kind(backend), arrays[0].dtype):
        return tuple(to_compute(a) for a in arrays)
    return arrays


def _masked_weight(backend: str, W: Any, stream: tuple[Any, ...]) -> Any:
    """``select(bits(k*N + n) >= threshold, W * scale, +0.0)``: the per-batch mask applied by the
    dropout kernel on the salt-1 stream (same select, same flat index)."""
    xp = _backends.array_module(backend)
    return run_flat(xp, W, None, _backends.twin("dropout", backend).dropout_apply, *stream)


def _flat(xp: Any, a: Any, rows: int) -> Any:
    """``a (..., C)`` as a C-contiguous ``(rows, C)`` array (copied only if the layout needs it)."""
    return xp.ascontiguousarray(a.reshape(rows, a.shape[-1]))


def dropconnect(
    x: Any,
    W: Any,
    b: Any = None,
    *,
    p: float,
    seed: int,
    offset: int = 0,
    per_example: bool = False,
    training: bool = True,
    backend: str | None = None,
) -> Any:
    """DropConnect layer: ``y = x @ (W * M / (1 - p)) + b``, the mask ``M`` on the weights.

    ``M[k, n] = bits(i) >= min(floor(p * 2**32), 2**32 - 1)`` on the salt-1 stream
    (docs/contract/random-stream.md) with ``i = k*N + n`` per batch, or, per example, example
    ``e`` of the flattened batch uses
    ``M_e[k, n]`` with ``i = e*K*N + k*N + n``: ``y[e] = x[e] @ (W * M_e / (1 - p)) + b``. Dropped
    weights are exactly ``+0.0`` (a select). The bias is not masked. ``training=False`` or
    ``p == 0`` gives the mean network ``x @ W + b``; ``p == 1`` gives ``b`` (zeros without bias).
    Per example, no ``(B, K, N)`` array is allocated: memory beyond inputs and output is O(tile).

    Parameters
    ----------
    x : float16/bfloat16/float32/float64 array (..., K); leading dimensions are flattened into
        the batch ``B``. float16/bfloat16 compute in float32 (``1/(1-p)`` cast to the storage
        type, as in :func:`fastreg.dropout`) and round the result once.
    W : array (K, N) of x's dtype (Keras kernel layout)
    b : array (N,) of x's dtype, optional
    p : float in [0, 1], the drop probability of each weight
    seed : int in [0, 2**64); offset : int in [0, 2**32), the call index
    per_example : bool; False: one mask for the call; True: one mask per example (Wan et al.)
    training : bool; when False no mask is applied
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    y : new C-contiguous array (..., N) of x's dtype

    Raises
    ------
    ValueError: p outside [0, 1], seed or offset out of range, shapes that do not chain.
    TypeError: non-array or integer inputs, mixed dtypes, NumPy/CuPy mix, non-bool flags.

    Example
    -------
    >>> import numpy as np
    >>> x, W = np.ones((2, 3)), np.ones((3, 4))
    >>> y = dropconnect(x, W, p=0.5, seed=1, per_example=True)
    >>> y.shape, bool(np.all(np.isin(y, [0.0, 2.0, 4.0, 6.0])))
    ((2, 4), True)
    """
    m, k, n = check_layer(x, W, b)
    p = check_probability(p)
    check_seed(seed)
    offset = check_offset(offset)
    per_example = check_bool(per_example, "per_example")
    training = check_bool(training, "training")
    backend = _backends.resolve(backend, x=x, W=W, b=b)
    xp = _backends.array_module(backend)
    storage, out_shape = x.dtype, (*x.shape[:-1], n)
    x, W, b = _widened(backend, x, W, b)
    x2 = _flat(xp, x, m)
    if not training or p == 0.0:
        y = x2 @ W
    elif p == 1.0:
        y = xp.zeros((m, n), dtype=x.dtype)
    elif per_example:
        stream = _stream(p, seed, offset, storage, x.dtype)
        twin = _backends.twin("dropconnect", backend)
        y = twin.example_forward(x2, xp.ascontiguousarray(W), b, *stream)
        return from_compute(y, storage).reshape(out_shape)
    else:
        y = x2 @ _masked_weight(backend, W, _stream(p, seed, offset, storage, x.dtype))
    if b is not None:
        y += b
    return from_compute(y, storage).reshape(out_shape)


def dropconnect_backward(
    dy: Any,
    x: Any,
    W: Any,
    *,
    p: float,
    seed: int,
    offset: int = 0,
    per_example: bool = False,
    backend: str | None = None,
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`dropconnect`, the forward's mask regenerated from ``(seed, offset)``.

    Per batch, with ``Wm = W * M / (1 - p)``: ``dx = dy @ Wm.T``, ``dW = (x.T @ dy) * M / (1 - p)``.
    Per example: ``dx[e] = (W * M_e / (1 - p)) @ dy[e]``, ``dW = sum_e outer(x[e], dy[e]) * M_e /
    (1 - p)``. Always ``db = dy.sum(over the batch)``, shape ``(N,)``. ``x`` and ``dy`` are
    flattened to ``(B, K)`` and ``(B, N)``. ``p == 0`` is the mean network's gradient (use it to
    backpropagate a ``training=False`` forward); ``p == 1`` gives zero ``dx`` and ``dW``.
    Per example, no ``(B, K, N)`` array is allocated: memory beyond inputs and outputs is O(tile).

    Parameters
    ----------
    dy : array (..., N), the upstream gradient; leading dimensions as x's
    x : float32/float64 array (..., K), the forward's input
    W : array (K, N), the forward's weight
    p, seed, offset, per_example, backend : the forward's arguments

    Returns
    -------
    dx : array of x's shape; dW : array (K, N); db : array (N,); all of x's dtype, C-contiguous

    Raises
    ------
    ValueError: p outside [0, 1], seed or offset out of range, shapes that do not chain.
    TypeError: non-array or integer inputs, mixed dtypes, NumPy/CuPy mix, non-bool flags.

    Example
    -------
    >>> import numpy as np
    >>> x, W, dy = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    >>> dx, dW, db = dropconnect_backward(dy, x, W, p=0.5, seed=1)
    >>> y = dropconnect(x, W, p=0.5, seed=1)
    >>> bool(np.allclose(dW.sum(), y.sum())), db.tolist()
    (True, [2.0, 2.0, 2.0, 2.0])
    """
    m, k, n = check_layer(x, W)
    check_array(dy, "dy", ndim_min=1)
    check_same_dtype(dy=dy, x=x, W=W)
    check_shape_equal(dy, "dy", (*x.shape[:-1], n), "x.shape[:-1] + (N,), the forward's output")
    p = check_probability(p)
    check_seed(seed)
    offset = check_offset(offset)
    per_example = check_bool(per_example, "per_example")
    backend = _backends.resolve(backend, dy=dy, x=x, W=W)
    xp = _backends.array_module(backend)
    storage, x_shape = x.dtype, x.shape
    dy, x, W = _widened(backend, dy, x, W)
    x2, dy2 = _flat(xp, x, m), _flat(xp, dy, m)
    db = from_compute(dy2.sum(axis=0), storage)
    if p == 1.0:
        return xp.zeros(x_shape, dtype=storage), xp.zeros((k, n), dtype=storage), db
    if p == 0.0:
        dx, dW = dy2 @ W.T, x2.T @ dy2
    elif per_example:
        twin = _backends.twin("dropconnect", backend)
        stream = _stream(p, seed, offset, storage, x.dtype)
        dx, dW = twin.example_backward(dy2, x2, xp.ascontiguousarray(W), *stream)
    else:
        # One pass over the words masks both W and x.T @ dy (in place), between the two GEMMs:
        # a second pass cost ~1 ms of 7 at 128x1024->1024 f32, Philox plus a Numba hand-off
        # right after BLAS.
        dW = xp.ascontiguousarray(x2.T @ dy2)
        masked = xp.empty((k, n), dtype=x.dtype)
        _backends.twin("dropout", backend).dropout_apply_pair(
            xp.ascontiguousarray(W).reshape(-1), masked.reshape(-1), dW.reshape(-1),
            *_stream(p, seed, offset, storage, x.dtype),
        )
        dx = dy2 @ masked.T
    dx, dW = from_compute(dx, storage), from_compute(dW, storage)
    return xp.ascontiguousarray(dx).reshape(x_shape), xp.ascontiguousarray(dW), db


def dropconnect_moments(
    x: Any, W: Any, b: Any = None, *, p: float, backend: str | None = None
) -> tuple[Any, Any]:
    """Mean and variance of the DropConnect pre-activation ``u = x @ (W * M / (1 - p)) + b``.

    Each ``M[k, n]`` is an independent Bernoulli with keep probability ``q = 1 - p`` (per example,
    as at test time), so ``E[u] = x @ W + b`` and ``Var[u] = (p / (1 - p)) * (x**2) @ (W**2)``
    (Wan et al. 2013's ``q*(1-q)*(x**2)@(W**2)`` without the inverted scale, divided by ``q**2``
    for it). ``p == 1`` gives ``u = b`` exactly: mean ``b`` (or 0), variance 0.

    Parameters
    ----------
    x : float32/float64 array (..., K); W : array (K, N); b : array (N,), optional
    p : float in [0, 1]
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    (mean, var) : two new arrays (..., N) of x's dtype

    Raises
    ------
    ValueError, TypeError: as :func:`dropconnect`.

    Example
    -------
    >>> import numpy as np
    >>> mean, var = dropconnect_moments(np.ones((1, 2)), np.ones((2, 1)), p=0.5)
    >>> mean.tolist(), var.tolist()
    ([[2.0]], [[2.0]])
    """
    m, k, n = check_layer(x, W, b)
    p = check_probability(p)
    backend = _backends.resolve(backend, x=x, W=W, b=b)
    xp = _backends.array_module(backend)
    storage = x.dtype
    if host_widens(_backends.backend_array_kind(backend), storage):
        mean, var = dropconnect_moments(*_widened(backend, x, W, b), p=p, backend=backend)
        return from_compute(mean, storage), from_compute(var, storage)
    x2 = _flat(xp, x, m)
    if p == 1.0:
        mean = xp.zeros((m, n), dtype=x.dtype)
        var = xp.zeros((m, n), dtype=x.dtype)
    else:
        mean = x2 @ W
        var = (x2 * x2) @ (W * W)
        var *= x.dtype.type(p / (1.0 - p))
    if b is not None:
        mean += b
    out_shape = (*x.shape[:-1], n)
    return mean.reshape(out_shape), var.reshape(out_shape)


def _activate(xp: Any, activation: str, u: Any) -> Any:
    if activation == "relu":
        return xp.maximum(u, u.dtype.type(0))
    if activation == "tanh":
        return xp.tanh(u)
    if activation == "sigmoid":
        return u.dtype.type(1) / (u.dtype.type(1) + xp.exp(-u))
    return u


def dropconnect_inference(
    x: Any,
    W: Any,
    b: Any = None,
    *,
    p: float,
    activation: str = "relu",
    samples: int | None = None,
    seed: int = 0,
    offset: int = 0,
    backend: str | None = None,
) -> Any:
    """Wan et al.'s moment-matching inference: ``E[act(u)]`` with ``u ~ N(mean, var)`` of
    :func:`dropconnect_moments`, the test-time output of a DropConnect layer followed by ``act``.

    With ``mu = x @ W + b``, ``sigma = sqrt((p / (1 - p)) * (x**2) @ (W**2))``:
    closed form (``samples=None``) for ``"relu"``: ``mu * Phi(mu / sigma) + sigma * phi(mu /
    sigma)`` (``relu(mu)`` where ``sigma == 0``), and ``mu`` for ``"identity"``; with ``samples=S``
    the average ``(1/S) * sum_s act(mu + sigma * z[s])`` with ``z`` the standard normals of the
    salt-2 stream (docs/contract/random-stream.md) of logical shape ``(S, ..., N)`` at
    ``(seed, offset)``, drawn at once (memory ``S`` times the output's). It tracks the average
    of ``act`` over
    sampled masks better than the mean network ``act(x @ W + b)``, which ignores the variance.

    Parameters
    ----------
    x : float32/float64 array (..., K); W : array (K, N); b : array (N,), optional
    p : float in [0, 1], the drop probability used in training
    activation : "identity", "relu", "tanh" or "sigmoid" (the last two need ``samples``)
    samples : int >= 1, optional; None uses the closed form
    seed : int in [0, 2**64); offset : int in [0, 2**32); used only with ``samples``
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    new array (..., N) of x's dtype

    Raises
    ------
    ValueError: as :func:`dropconnect_moments`; an unknown activation; ``samples`` < 1, or
        missing for tanh/sigmoid; seed or offset out of range.
    TypeError: as :func:`dropconnect_moments`.

    Example
    -------
    >>> import numpy as np
    >>> x, W = np.ones((1, 2)), np.array([[1.0], [-1.0]])
    >>> # mu = 0, sigma = sqrt(2): E[relu(u)] = sigma * phi(0) = 1/sqrt(pi), where relu(mu) = 0
    >>> round(float(dropconnect_inference(x, W, p=0.5)[0, 0]), 6)
    0.56419
    """
    rows, _, units = check_layer(x, W, b)
    activation = check_choice(activation, "activation", _ACTIVATIONS)
    if samples is not None:
        samples = check_int_at_least(samples, "samples", 1)
        if samples >= 2**63 or samples * rows * units >= 2**60:  # beyond any array's size
            raise ValueError(f"samples is too large: the (samples, ..., N) draws of "
                             f"{rows * units} elements each cannot be an array, got "
                             f"{_describe(samples)}")
        check_seed(seed)
        check_offset(offset)
    elif activation in ("tanh", "sigmoid"):
        raise ValueError(
            f"samples must be an int >= 1 for activation={activation!r} (no closed form), got None"
        )
    backend = _backends.resolve(backend, x=x, W=W, b=b)
    storage = x.dtype
    if host_widens(_backends.backend_array_kind(backend), storage):
        wide = dropconnect_inference(*_widened(backend, x, W, b), p=p, activation=activation,
                                     samples=samples, seed=seed, offset=offset, backend=backend)
        return from_compute(wide, storage)
    mean, var = dropconnect_moments(x, W, b, p=p, backend=backend)
    xp = _backends.array_module(backend)
    std = xp.sqrt(var)
    if samples is None:
        if activation == "identity":
            return mean
        return _backends.twin("dropconnect", backend).relu_gaussian_mean(mean, std)
    # One draw of the (samples, ..., N) normals: one kernel call instead of one per sample (each
    # call costs ~1 ms of thread hand-off on a busy 2-core box); memory is samples x the output.
    z = gaussian_noise(
        xp.zeros((samples, *mean.shape), dtype=mean.dtype), 1.0, seed=seed, offset=offset,
        backend=backend,
    )
    z *= std
    z += mean
    return _activate(xp, activation, z).mean(axis=0)
