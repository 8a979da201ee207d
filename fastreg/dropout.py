"""The dropout family (docs/contract/ops.md): inverted dropout, its backward, masks, Gaussian noise.

No mask is ever stored: element ``i`` (row-major flat index over the logical mask shape) is kept iff
``bits(i) >= threshold`` on the salt-0 stream of :mod:`fastreg.random`, so the backward pass and
every backend regenerate exactly the same mask from ``(seed, offset)``.
"""

from __future__ import annotations

import math
from typing import Any

from . import _backends
from ._elementwise import run_flat
from ._validate import (
    check_array,
    check_bool,
    check_noise_shape,
    check_nonnegative,
    check_offset,
    check_out,
    check_probability,
    check_seed,
    check_shape,
)
from .random import SALT_DROPOUT, derive_key, dropout_scale, kernel_threshold

__all__ = ["dropout", "dropout_backward", "dropout_mask", "gaussian_dropout", "gaussian_noise"]


def _masked_scale(
    x: Any,
    p: Any,
    seed: Any,
    offset: Any,
    noise_shape: Any,
    out: Any,
    backend: str | None,
    name: str,
) -> Any:
    """``x * keep * scale`` with select semantics: the shared body of forward and backward."""
    check_array(x, name)
    p = check_probability(p)
    key = derive_key(seed)
    offset = check_offset(offset)
    mask_shape = check_noise_shape(noise_shape, tuple(x.shape))
    check_out(out, tuple(x.shape), x.dtype, _backends.array_kind(x))
    backend = _backends.resolve(backend, x=x, out=out)
    xp = _backends.array_module(backend)
    twin = _backends.twin("dropout", backend)
    threshold, scale = kernel_threshold(p), dropout_scale(p, x.dtype)
    if mask_shape is None:
        return run_flat(
            xp, x, out, twin.dropout_apply, *key, SALT_DROPOUT, offset, threshold, scale
        )
    # Keras noise_shape: draw the small mask once and broadcast it; a select keeps NaN out.
    keep = twin.keep_mask(math.prod(mask_shape), *key, SALT_DROPOUT, offset, threshold)
    result = xp.where(keep.reshape(mask_shape), x * scale, x.dtype.type(0))
    if out is None:
        # where() follows x's layout (F order for F-ordered x); results are C-contiguous.
        return xp.ascontiguousarray(result)
    out[...] = result
    return out


def dropout(
    x: Any,
    p: float,
    *,
    seed: int,
    offset: int = 0,
    training: bool = True,
    noise_shape: Any = None,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Inverted dropout: ``y[i] = x[i] / (1 - p)`` if ``bits(i) >= threshold`` else ``+0.0``.

    ``threshold = min(floor(p * 2**32), 2**32 - 1)`` and ``bits`` is the salt-0 Philox stream
    (docs/contract/random-stream.md). Dropped outputs are exactly ``+0.0`` even where ``x`` is
    NaN or Inf (a select, not a multiply). ``p == 1`` drops everything; ``p == 0`` or
    ``training=False`` returns ``x``
    itself (copied into ``out`` when given), like ``torch.nn.functional.dropout``'s identity.

    Parameters
    ----------
    x : float32/float64 array (float16 too on cupy), any shape and strides
    p : float in [0, 1], the drop probability
    seed : int in [0, 2**64); offset : int in [0, 2**32), the call index
    training : bool; when False the op is the identity
    noise_shape : tuple, optional. Keras semantics: the logical mask shape, one entry per axis of
        ``x``, each 1, None (x's size) or x's size; ``(batch, 1)`` drops whole rows. The mask index
        is the flat index in ``noise_shape``.
    out : array of x's shape and dtype, optional (may be ``x`` itself for in-place dropout)
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md

    Returns
    -------
    array of x's shape and dtype: a new C-contiguous array, ``out``, or ``x`` (identity cases)

    Raises
    ------
    ValueError: p outside [0, 1], seed or offset out of range, bad noise_shape or out shape.
    TypeError: non-array or integer x, dtype mismatch of out, NumPy/CuPy mix.

    Example
    -------
    >>> import numpy as np
    >>> y = dropout(np.ones(8, np.float32), 0.5, seed=1)
    >>> sorted(set(y.tolist())) <= [0.0, 2.0]
    True
    """
    # p is validated even where training=False makes it unused (docs/contract/errors.md: every
    # argument).
    p = check_probability(p)
    if not check_bool(training, "training") or p == 0.0:
        check_array(x, "x")
        check_seed(seed)
        check_offset(offset)
        check_noise_shape(noise_shape, tuple(x.shape))
        check_out(out, tuple(x.shape), x.dtype, _backends.array_kind(x))
        _backends.resolve(backend, x=x, out=out)
        if out is None:
            return x
        out[...] = x
        return out
    return _masked_scale(x, p, seed, offset, noise_shape, out, backend, "x")


def dropout_backward(
    dy: Any,
    p: float,
    *,
    seed: int,
    offset: int = 0,
    noise_shape: Any = None,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Gradient of :func:`dropout`: ``dx[i] = dy[i] / (1 - p)`` if kept else ``+0.0``.

    The mask is regenerated from ``(seed, offset)`` and must use the forward's arguments. With
    ``p == 0`` the gradient is ``dy`` scaled by 1 (a new array, or ``out``).

    Parameters
    ----------
    dy : the upstream gradient, the forward output's shape
    p, seed, offset, noise_shape, out, backend : as in :func:`dropout`

    Returns
    -------
    array of dy's shape and dtype

    Example
    -------
    >>> import numpy as np
    >>> x = np.arange(1.0, 9.0)
    >>> y = dropout(x, 0.5, seed=3)
    >>> bool(np.array_equal(dropout_backward(np.ones(8), 0.5, seed=3) * x, y))
    True
    """
    return _masked_scale(dy, p, seed, offset, noise_shape, out, backend, "dy")


def dropout_mask(
    shape: Any, p: float, *, seed: int, offset: int = 0, backend: str | None = None
) -> Any:
    """The keep-mask of :func:`dropout`: ``bits(i) >= threshold`` (True = kept).

    Parameters
    ----------
    shape : int or tuple of int, the logical mask shape
    p, seed, offset, backend : as in :func:`dropout`

    Returns
    -------
    bool array of ``shape`` (C order)

    Example
    -------
    >>> import numpy as np
    >>> m = dropout_mask((2, 3), 0.5, seed=3)
    >>> bool(np.array_equal(dropout(np.ones((2, 3)), 0.5, seed=3) != 0, m))
    True
    """
    dims = check_shape(shape)
    p = check_probability(p)
    key = derive_key(seed)
    offset = check_offset(offset)
    backend = _backends.resolve(backend)
    twin = _backends.twin("dropout", backend)
    keep = twin.keep_mask(math.prod(dims), *key, SALT_DROPOUT, offset, kernel_threshold(p))
    return keep.reshape(dims)


def _gaussian(
    x: Any, additive: float, multiplicative: float, seed: Any, offset: Any, backend: str | None
) -> Any:
    key = derive_key(seed)
    offset = check_offset(offset)
    backend = _backends.resolve(backend, x=x)
    xp = _backends.array_module(backend)
    twin = _backends.twin("dropout", backend)
    return run_flat(xp, x, None, twin.gaussian_apply, *key, offset, additive, multiplicative)


def gaussian_noise(
    x: Any,
    stddev: float,
    *,
    seed: int,
    offset: int = 0,
    training: bool = True,
    backend: str | None = None,
) -> Any:
    """Additive Gaussian noise: ``y[i] = x[i] + stddev * n(i)`` (Keras ``GaussianNoise``).

    ``n(i)`` is the salt-2 Box-Muller stream of docs/contract/random-stream.md, computed in
    float64 on the CPU and cast once. ``training=False`` returns ``x`` itself.

    Parameters
    ----------
    x : float array, any shape and strides
    stddev : float >= 0
    seed, offset, training, backend : as in :func:`dropout`

    Returns
    -------
    array of x's shape and dtype

    Example
    -------
    >>> import numpy as np
    >>> y = gaussian_noise(np.zeros(100_000), 2.0, seed=0)
    >>> bool(abs(y.std() - 2.0) < 0.05)
    True
    """
    check_array(x, "x")
    stddev = check_nonnegative(stddev, "stddev")
    if not check_bool(training, "training"):
        check_seed(seed)
        check_offset(offset)
        _backends.resolve(backend, x=x)
        return x
    return _gaussian(x, stddev, 0.0, seed, offset, backend)


def gaussian_dropout(
    x: Any,
    p: float,
    *,
    seed: int,
    offset: int = 0,
    training: bool = True,
    backend: str | None = None,
) -> Any:
    """Multiplicative Gaussian noise: ``y[i] = x[i] * (1 + sqrt(p / (1 - p)) * n(i))``.

    Keras ``GaussianDropout``: the noise has mean 1 and the variance of inverted dropout with rate
    ``p``. ``n(i)`` as in :func:`gaussian_noise`. ``training=False`` or ``p == 0`` returns ``x``.

    Parameters
    ----------
    x : float array, any shape and strides
    p : float in [0, 1)
    seed, offset, training, backend : as in :func:`dropout`

    Returns
    -------
    array of x's shape and dtype

    Example
    -------
    >>> import numpy as np
    >>> y = gaussian_dropout(np.ones(100_000), 0.5, seed=0)
    >>> bool(abs(y.mean() - 1.0) < 0.02 and abs(y.std() - 1.0) < 0.02)
    True
    """
    check_array(x, "x")
    p = check_probability(p, allow_one=False)
    if not check_bool(training, "training") or p == 0.0:
        check_seed(seed)
        check_offset(offset)
        _backends.resolve(backend, x=x)
        return x
    return _gaussian(x, 0.0, math.sqrt(p / (1.0 - p)), seed, offset, backend)
