"""Differentiable functions over the custom ops: ``dropout``, ``dense_dropout``, ``dropconnect``.

``seed`` and ``offset`` are ints (validated here, then passed as int64 0-d tensors) or int64 0-d
tensors (passed as they are: a compiled graph then does not specialize on their values).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import _validate
from .._kernels.dense import ACTIVATIONS
from . import _eager
from ._bridge import check_float, offset_tensor, refuse_functorch, seed_tensor
from .layer_ops import (
    check_linear,
    dense_dropout_op,
    dropconnect_op,
    dropout_op,
    resolve_noise_shape,
)

__all__ = ["dense_dropout", "dropconnect", "dropout"]


def dropout(x: torch.Tensor, p: float, *, seed: Any, offset: Any = 0, training: bool = True,
            noise_shape: Any = None) -> torch.Tensor:
    """Differentiable :func:`fastreg.dropout`: ``y = where(keep, x / (1 - p), +0.0)``.

    ``keep[i] = bits(i) >= min(floor(p * 2**32), 2**32 - 1)`` on the salt-0 stream at
    ``(seed, offset)``; the backward regenerates the mask. ``training=False`` or ``p == 0``
    returns ``x`` itself (as ``torch.nn.functional.dropout`` does).

    Parameters
    ----------
    x : float16/bfloat16/float32/float64 tensor, any shape and strides (16-bit computes in
        float32 and rounds once)
    p : float in [0, 1]
    seed : int in [0, 2**64) or int64 0-d tensor; offset : int in [0, 2**32) or int64 tensor
    training : bool; noise_shape : as in :func:`fastreg.dropout` (Keras semantics)

    Returns
    -------
    tensor of x's shape, dtype and device (a new contiguous tensor, or ``x``)

    Raises
    ------
    ValueError, TypeError: as :func:`fastreg.dropout`.

    Example
    -------
    >>> import torch
    >>> x = torch.ones(8, dtype=torch.float64, requires_grad=True)
    >>> y = dropout(x, 0.5, seed=1)
    >>> y.sum().backward()
    >>> bool(torch.equal(x.grad, y.detach()))
    True
    """
    if not _validate.check_bool(training, "training") or _validate.check_probability(p) == 0.0:
        return x
    check_float(x, "x")
    if _eager.eager(x, seed, offset):  # the same implementation, without the dispatcher
        shape = resolve_noise_shape(noise_shape, tuple(x.shape))
        return _eager.dropout(x, float(p), *_eager.stream_of(seed, offset), shape)
    refuse_functorch(x)
    shape = resolve_noise_shape(noise_shape, tuple(x.shape))
    return dropout_op(x, float(p), seed_tensor(seed), offset_tensor(offset), shape)


def dense_dropout(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                  p: float, seed: Any, offset: Any = 0, activation: str = "relu",
                  training: bool = True) -> torch.Tensor:
    """Differentiable :func:`fastreg.dense_dropout` in PyTorch's layout:
    ``y = where(keep, act(x @ weight.T + bias) / (1 - p), +0.0)``.

    The mask is ``fastreg.dropout_mask(y.shape, p, seed=seed, offset=offset)``; the backward
    regenerates it. ``training=False`` gives ``act(x @ weight.T + bias)``.

    Parameters
    ----------
    x : tensor (..., in_features); weight : tensor (out_features, in_features) of x's dtype
    bias : tensor (out_features,), optional
    p, seed, offset, activation, training : as in :func:`fastreg.dense_dropout` (seed and
        offset may be int64 tensors)

    Returns
    -------
    tensor (..., out_features) of x's dtype

    Raises
    ------
    ValueError, TypeError: as :func:`fastreg.dense_dropout`.

    Example
    -------
    >>> import torch
    >>> x, w = torch.ones(2, 3), torch.ones(4, 3)
    >>> dense_dropout(x, w, p=0.5, seed=7).unique().tolist()
    [0.0, 6.0]
    """
    p = _validate.check_probability(p)
    activation = _validate.check_choice(activation, "activation", ACTIVATIONS)
    if not _validate.check_bool(training, "training"):
        p = 0.0
    if _eager.eager(x, weight, bias, seed, offset):
        check_linear(x, weight, bias)
        return _eager.dense_dropout(x, weight, bias, p, *_eager.stream_of(seed, offset),
                                    activation)
    refuse_functorch(x, weight, bias)
    return dense_dropout_op(x, weight, bias, p, seed_tensor(seed), offset_tensor(offset),
                            activation)[0]


def dropconnect(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                p: float, seed: Any, offset: Any = 0, per_example: bool = False,
                training: bool = True) -> torch.Tensor:
    """Differentiable :func:`fastreg.dropconnect` in PyTorch's layout:
    ``y = x @ (weight * M / (1 - p)).T + bias``.

    ``M[n, k]`` is element ``k*N + n`` of the salt-1 stream (per batch), or ``e*K*N + k*N + n``
    for example ``e`` (per example): the masks of :func:`fastreg.dropconnect` on
    ``W = weight.T``. ``training=False`` or ``p == 0`` gives
    ``torch.nn.functional.linear(x, weight, bias)``.

    Parameters
    ----------
    x : tensor (..., in_features); weight : tensor (out_features, in_features)
    bias : tensor (out_features,), optional
    p, seed, offset, per_example, training : as in :func:`fastreg.dropconnect`

    Returns
    -------
    tensor (..., out_features) of x's dtype

    Raises
    ------
    ValueError, TypeError: as :func:`fastreg.dropconnect`.

    Example
    -------
    >>> import torch
    >>> y = dropconnect(torch.ones(2, 3), torch.ones(4, 3), p=0.5, seed=1, per_example=True)
    >>> y.shape
    torch.Size([2, 4])
    """
    p = _validate.check_probability(p)
    per_example = _validate.check_bool(per_example, "per_example")
    if not _validate.check_bool(training, "training") or p == 0.0:
        return nn.functional.linear(x, weight, bias)
    if _eager.eager(x, weight, bias, seed, offset):
        check_linear(x, weight, bias)
        return _eager.dropconnect(x, weight, bias, p, *_eager.stream_of(seed, offset),
                                  per_example)
    refuse_functorch(x, weight, bias)
    return dropconnect_op(x, weight, bias, p, seed_tensor(seed), offset_tensor(offset),
                          per_example)
