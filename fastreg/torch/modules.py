"""``nn.Module`` layers over the custom ops: ``Dropout``, ``DenseDropout``, ``DropConnectLinear``.

Layout. The layers keep PyTorch's weight layout ``weight (out_features, in_features)`` and
``nn.Linear``'s initialization; fastreg's dense ops take the Keras kernel ``W (K, N)``, which is
``weight.T``. Mask indices are those of the ops on ``W``: DropConnect weight ``weight[n, k]`` is
element ``k*N + n`` of the salt-1 stream.

Seeds. Each layer draws a 64-bit seed once, at construction, from PyTorch's default generator
(``torch.randint``, two 32-bit halves), so ``torch.manual_seed`` before building a model
reproduces its masks; every forward call in training mode uses the layer's current ``offset``
and advances it by one (mod 2**32) with ``fastreg::advance_offset``, inside the graph when the
model is compiled, so a compiled step does not recompile and draws eager's masks. Both live in
the layer's ``state_dict`` as int64 buffers ``seed`` (the 64-bit seed in two's complement) and
``offset``; a checkpoint without them (a plain ``nn.Dropout``/``nn.Linear`` one) loads with
``strict=True`` and the layer keeps its own. On CUDA the op reads the two scalars in one
device-to-host copy per call (the kernels take them as arguments).

Data-parallel training. Under an initialized ``torch.distributed`` process group each rank draws
its own masks with :func:`rank_seed` (rank 0 uses the layer's seed itself).

Dtypes. A float16/bfloat16/float32/float64 input is computed in its own dtype (16-bit in float32,
rounded once), with the parameters cast to it (autocast included), and the output has the
input's dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import _validate
from .._kernels.dense import ACTIVATIONS
from . import _eager
from ._bridge import MASK64, check_float, rank_seed_tensor, refuse_functorch, stream_ints
from .layer_ops import (
    advance_offset,
    check_linear,
    dense_dropout_op,
    dropconnect_op,
    dropout_op,
    resolve_noise_shape,
)

__all__ = ["DenseDropout", "DropConnectLinear", "Dropout", "replace_dropout"]

_STREAM_KEYS = ("seed", "offset")


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class _RandomStream(nn.Module):
    """A layer's ``(seed, offset)`` int64 buffers: the seed drawn once from PyTorch's default
    generator, the offset advanced by each training-mode call."""

    seed: torch.Tensor
    offset: torch.Tensor

    def _init_stream(self, device: Any = None) -> None:
        """Draw the seed (call it after the parameters' initialization, whose draws come first)."""
        low, high = torch.randint(0, 1 << 32, (2,), dtype=torch.int64).tolist()
        seed = torch.tensor(_as_int64(low | (high << 32)), dtype=torch.int64, device=device)
        self.register_buffer("seed", seed)
        self.register_buffer("offset", torch.zeros((), dtype=torch.int64, device=device))

    def _next_stream(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rank_seed(seed), index)`` for this call: ``index`` is a new tensor holding the
        offset before the buffer advanced (never the buffer itself, which later calls mutate)."""
        return rank_seed_tensor(self.seed), advance_offset(self.offset)

    def _eager(self, *tensors: torch.Tensor | None) -> bool:
        """Whether this call takes the eager fast path (``_eager.eager``)."""
        return _eager.eager(*tensors, self.seed, self.offset)

    def _next_ints(self) -> tuple[int, int]:
        """:meth:`_next_stream` on the fast path: the same stream as Python ints, the offset
        buffer advanced in place to the same value."""
        return _eager.module_stream(self.seed, self.offset)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, local_metadata: Any,
                              strict: bool, missing_keys: list[str], *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      *args)
        for name in _STREAM_KEYS:  # a plain nn.Dropout/nn.Linear checkpoint: keep our stream
            key = prefix + name
            if key not in state_dict and key in missing_keys:
                missing_keys.remove(key)

    def extra_repr(self) -> str:
        return f"seed={int(self.seed) & MASK64:#x}, offset={int(self.offset)}"


class Dropout(_RandomStream):
    """Inverted dropout with fastreg's in-kernel Philox stream (a drop-in ``nn.Dropout``).

    Training: ``y = where(bits(i) >= threshold, x / (1 - p), +0.0)`` at the layer's
    ``(seed, offset)``, then the offset advances; eval mode or ``p == 0``: ``y = x``.

    Parameters
    ----------
    p : float in [0, 1], the drop probability
    noise_shape : tuple, optional; Keras semantics (see :func:`fastreg.dropout`)

    Raises
    ------
    ValueError: p outside [0, 1].

    Example
    -------
    >>> import torch
    >>> layer = Dropout(0.5)
    >>> sorted(layer(torch.ones(100)).unique().tolist())
    [0.0, 2.0]
    >>> int(layer.offset), bool(torch.equal(layer.eval()(torch.ones(3)), torch.ones(3)))
    (1, True)
    """

    def __init__(self, p: float = 0.5, noise_shape: Any = None, device: Any = None) -> None:
        super().__init__()
        self.p = _validate.check_probability(p)
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self._init_stream(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        fast = self._eager(x)
        if not fast:
            refuse_functorch(x)
        # Bad arguments raise before the offset advances (docs/contract/pytorch.md).
        check_float(x, "x")
        shape = None
        if self.noise_shape is not None:
            shape = resolve_noise_shape(self.noise_shape, tuple(x.shape))
        seed, index = self._next_ints() if fast else self._next_stream()
        if self.p == 0.0:
            return x
        if fast:
            return _eager.dropout(x, self.p, seed, index, shape)
        return dropout_op(x, self.p, seed, index, shape)

    def extra_repr(self) -> str:
        return f"p={self.p}, {super().extra_repr()}"


class _Linear(_RandomStream):
    """Parameters, layout and initialization of ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, p: float, bias: bool,
                 device: Any, dtype: Any) -> None:
        super().__init__()
        self.in_features = _validate.check_int_at_least(in_features, "in_features", 0)
        self.out_features = _validate.check_int_at_least(out_features, "out_features", 0)
        self.p = _validate.check_probability(p)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty((out_features, in_features), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory))
        else:
            self.register_parameter("bias", None)
        nn.Linear.reset_parameters(self)  # type: ignore[arg-type]  # uses weight/bias only
        self._init_stream(self.weight.device)

    def _parameters_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``weight`` and ``bias`` in x's float dtype (a differentiable cast, as autocast's)."""
        weight, bias = self.weight, self.bias
        if x.dtype != weight.dtype and x.is_floating_point():
            weight = weight.to(x.dtype)
            bias = None if bias is None else bias.to(x.dtype)
        return weight, bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, p={self.p}, {super().extra_repr()}")


class DenseDropout(_Linear):
    """``nn.Linear`` + activation + dropout as one fused layer (one GEMM, one epilogue pass).

    Training: ``y = where(keep, act(x @ weight.T + bias) / (1 - p), +0.0)`` with the mask of
    :func:`fastreg.dense_dropout` at the layer's ``(seed, offset)``; eval mode:
    ``y = act(x @ weight.T + bias)``. ``weight`` is ``(out_features, in_features)`` and both
    parameters are initialized as ``nn.Linear``'s (the same draws, so the same values after the
    same ``torch.manual_seed``); the seed is drawn after them.

    Parameters
    ----------
    in_features, out_features : int
    p : float in [0, 1], the drop probability (default 0.5)
    activation : "identity", "relu", "tanh", "sigmoid" or "gelu" (erf form)
    bias : bool
    device, dtype : factory arguments, as for ``nn.Linear``

    Raises
    ------
    ValueError: p outside [0, 1], unknown activation, negative sizes.

    Example
    -------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> layer = DenseDropout(3, 4, p=0.5)
    >>> layer(torch.ones(2, 3)).shape
    torch.Size([2, 4])
    """

    def __init__(self, in_features: int, out_features: int, p: float = 0.5,
                 activation: str = "relu", bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        activation = _validate.check_choice(activation, "activation", ACTIVATIONS)
        super().__init__(in_features, out_features, p, bias, device, dtype)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._parameters_for(x)
        if self._eager(x, weight, bias):
            check_linear(x, weight, bias)  # before the offset advances
            if self.training:
                p, (seed, index) = self.p, self._next_ints()
            else:  # p = 0 draws nothing; the stream is read as the op path reads it
                p, (seed, index) = 0.0, stream_ints(self.seed, self.offset)
            return _eager.dense_dropout(x, weight, bias, p, seed, index, self.activation)
        refuse_functorch(x, self.weight)
        if self.training:
            seed, index = self._next_stream()
            return dense_dropout_op(x, weight, bias, self.p, seed, index, self.activation)[0]
        # Eval: p = 0 draws nothing, so the (unadvanced) stream is never read.
        return dense_dropout_op(x, weight, bias, 0.0, self.seed, self.offset,
                                self.activation)[0]

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, {super().extra_repr()}"


class DropConnectLinear(_Linear):
    """A linear layer with DropConnect on its weights (Wan et al. 2013), per batch or per example.

    Training: ``y = x @ (weight * M / (1 - p)).T + bias`` with the masks of
    :func:`fastreg.dropconnect` on ``W = weight.T`` at the layer's ``(seed, offset)``: one mask
    per call (``per_example=False``) or one per example of the flattened batch. Eval mode: the
    mean network ``F.linear(x, weight, bias)``. The bias is not masked. Parameters and
    initialization as ``nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
    p : float in [0, 1], the drop probability of each weight (default 0.5)
    per_example : bool
    bias : bool; device, dtype : factory arguments

    Raises
    ------
    ValueError: p outside [0, 1], negative sizes. TypeError: a non-bool per_example.

    Example
    -------
    >>> import torch
    >>> layer = DropConnectLinear(3, 4, p=0.5, per_example=True)
    >>> layer(torch.ones(5, 3)).shape
    torch.Size([5, 4])
    """

    def __init__(self, in_features: int, out_features: int, p: float = 0.5,
                 per_example: bool = False, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        per_example = _validate.check_bool(per_example, "per_example")
        super().__init__(in_features, out_features, p, bias, device, dtype)
        self.per_example = per_example

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._parameters_for(x)
        if not self.training:
            return nn.functional.linear(x, weight, bias)
        if self._eager(x, weight, bias):
            if self.p != 0.0:
                check_linear(x, weight, bias)  # before the offset advances
            seed, index = self._next_ints()
            if self.p == 0.0:
                return nn.functional.linear(x, weight, bias)
            return _eager.dropconnect(x, weight, bias, self.p, seed, index, self.per_example)
        refuse_functorch(x, self.weight)
        seed, index = self._next_stream()
        if self.p == 0.0:
            return nn.functional.linear(x, weight, bias)
        return dropconnect_op(x, weight, bias, self.p, seed, index, self.per_example)

    def extra_repr(self) -> str:
        return f"per_example={self.per_example}, {super().extra_repr()}"


def replace_dropout(model: nn.Module) -> nn.Module:
    """Swap every ``nn.Dropout`` submodule (subclasses included) for a :class:`Dropout` with the
    same ``p`` and training mode, in place; return the model (a bare ``nn.Dropout`` given as
    ``model`` is returned as its replacement).

    Only modules are swapped: a ``torch.nn.functional.dropout`` call inside a model's forward
    (Hugging Face attention dropout, for one) is code, not a submodule, and keeps PyTorch's
    dropout. Each new layer draws its seed from PyTorch's default generator, in module order.

    Example
    -------
    >>> from torch import nn
    >>> model = replace_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1)))
    >>> type(model[1]).__name__, model[1].p
    ('Dropout', 0.1)
    """
    if isinstance(model, nn.Dropout):
        return _swap(model, None)
    first = next(model.parameters(), None)
    device = None if first is None else first.device
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(parent, name, _swap(child, device))
    return model


def _swap(child: nn.Dropout, device: Any) -> Dropout:
    layer = Dropout(child.p, device=device)
    layer.train(child.training)
    return layer
