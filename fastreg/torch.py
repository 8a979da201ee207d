"""PyTorch integration: autograd Functions, ``nn.Module`` layers and proximal optimizers.

Import it explicitly (``import fastreg.torch``; needs the ``torch`` extra): ``import fastreg``
never imports PyTorch.

Zero copy. CPU tensors reach the kernels as NumPy views of their storage (``t.detach().numpy()``,
any strides) and results come back wrapped by ``torch.from_numpy``; CUDA tensors go to CuPy by
DLPack and every kernel is launched on PyTorch's current stream of the tensor's device (CuPy's
current stream is set to it for the call), so no synchronization and no host/device copy is
added. The autograd Functions save ``(seed, offset)`` and the tensors the backward formula
needs (the input, the weight, the output ``y``, and ``z`` for gelu), never a mask: the backward
regenerates the mask from the stream (SPEC §3).

Layout. The layers keep PyTorch's weight layout ``weight (out_features, in_features)`` and
``nn.Linear``'s initialization; fastreg's dense ops take the Keras kernel ``W (K, N)``, which is
passed as the transposed view ``weight.T`` (no copy: BLAS reads it as a transposed matrix). Mask
indices are those of the ops on ``W``: DropConnect weight ``weight[n, k]`` is element
``k*N + n`` of the salt-1 stream. Two copies cost memory traffic: the weight gradient comes back
as ``dW.T`` (a transposed view) and autograd's ``AccumulateGrad`` copies it into the parameter's
layout (one weight-sized copy per backward); per-example DropConnect reads ``W`` in C order, so
it copies ``weight.T`` (one weight-sized copy per call).

Seeds. Each layer draws a 64-bit seed once, at construction, from PyTorch's default generator
(``torch.randint``, two 32-bit halves), so ``torch.manual_seed`` before building a model
reproduces its masks; every forward call in training mode uses the layer's current ``offset``
and then advances it by one (mod 2**32). Both live in the layer's ``state_dict`` as int64
buffers ``seed`` (the 64-bit seed in two's complement) and ``offset``; the layer keeps them as
Python ints as well (reading a CUDA buffer would synchronize), so change them with
``load_state_dict``, not by writing the buffers.

Data-parallel training. Under an initialized ``torch.distributed`` process group each rank draws
its own masks: the kernels get :func:`rank_seed` ``(seed, rank) = seed XOR (rank *
0x9E3779B97F4A7C15 mod 2**64)`` (rank 0 uses the layer's seed itself, so rank 0 of a run
draws the masks of a single-process run). ``DistributedDataParallel`` averages gradients during
``backward()``, so ``optimizer.step()`` after it applies the proximal step to the averaged
gradient, identically on every rank.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from . import _validate
from ._kernels.dense import ACTIVATIONS
from .dense import dense_dropout as _dense_dropout
from .dense import dense_dropout_backward as _dense_dropout_backward
from .dropconnect import dropconnect as _dropconnect
from .dropconnect import dropconnect_backward as _dropconnect_backward
from .dropout import dropout as _dropout
from .dropout import dropout_backward as _dropout_backward
from .prox import max_norm_, prox_adam_, prox_group_lasso_, prox_sgd_

__all__ = [
    "DenseDropout",
    "DropConnectLinear",
    "Dropout",
    "ProxAdamW",
    "ProxSGD",
    "dense_dropout",
    "dropconnect",
    "dropout",
    "rank_seed",
]

_MASK64 = (1 << 64) - 1
_RANK_MULTIPLIER = 0x9E3779B97F4A7C15  # odd: rank -> rank * c is a bijection mod 2**64


# --------------------------------------------------------------------------------------------
# Tensors <-> arrays
# --------------------------------------------------------------------------------------------


def _array(t: torch.Tensor) -> Any:
    """The tensor's storage as a NumPy (CPU) or CuPy (CUDA) array: a view, never a copy."""
    t = t.detach()
    if t.is_neg():  # a lazily negated view has no array form; materialize it
        t = t.resolve_neg()
    if t.device.type == "cpu":
        return t.numpy()
    if t.device.type == "cuda":
        import cupy

        if t.dtype == torch.bfloat16:
            return _bfloat16_view(cupy.from_dlpack(t.view(torch.int16)))
        return cupy.from_dlpack(t)
    raise TypeError(f"fastreg.torch takes CPU or CUDA tensors, got a tensor on {t.device}")


def _tensor(a: Any) -> torch.Tensor:
    """An array returned by a kernel as a tensor sharing its memory."""
    if type(a).__module__.split(".")[0] == "cupy":
        if a.dtype.name == "bfloat16":
            return torch.from_dlpack(a.view("int16")).view(torch.bfloat16)
        return torch.from_dlpack(a)
    return torch.from_numpy(a)


def _bfloat16_view(bits: Any) -> Any:
    """An int16 CuPy array of bfloat16 bit patterns viewed as ``ml_dtypes.bfloat16`` (what CuPy's
    bfloat16 arrays carry). bfloat16 crosses DLPack as int16 both ways: CuPy imports DLPack
    bfloat16 only from version 14, and exports it in no released version."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 CUDA tensors need the ml_dtypes package (pip install "
                        "ml_dtypes) for CuPy to hold them") from None
    return bits.view(ml_dtypes.bfloat16)


@contextlib.contextmanager
def _on_device(t: torch.Tensor) -> Iterator[None]:
    """For a CUDA tensor: CuPy's current device and stream become the tensor's device and
    PyTorch's current stream there, so kernels queue behind PyTorch's work without a sync."""
    if t.device.type != "cuda":
        yield
        return
    import cupy

    index = t.device.index if t.device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index)
    with cupy.cuda.Device(index), cupy.cuda.ExternalStream(stream.cuda_stream, index):
        yield


def rank_seed(seed: int, rank: int | None = None) -> int:
    """The seed a rank's kernels use: ``seed XOR (rank * 0x9E3779B97F4A7C15 mod 2**64)``.

    ``rank=None`` takes the global rank of the initialized ``torch.distributed`` process group,
    or 0 when there is none. Rank 0 gets ``seed`` itself; distinct ranks get distinct seeds
    (multiplying by an odd constant is a bijection mod 2**64), hence independent Philox keys.

    Parameters
    ----------
    seed : int in [0, 2**64)
    rank : int >= 0, optional

    Returns
    -------
    int in [0, 2**64)

    Raises
    ------
    ValueError: seed out of range or a negative rank. TypeError: non-int seed or rank.

    Example
    -------
    >>> rank_seed(7, 0), rank_seed(7, 1) != 7
    (7, True)
    """
    seed = _validate.check_seed(seed)
    if rank is None:
        rank = _distributed_rank()
    rank = _validate.check_int_at_least(rank, "rank", 0)
    return seed ^ ((rank * _RANK_MULTIPLIER) & _MASK64)


def _distributed_rank() -> int:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


# --------------------------------------------------------------------------------------------
# Autograd Functions
# --------------------------------------------------------------------------------------------


class _DropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float, seed: int, offset: int,
                noise_shape: Any) -> torch.Tensor:
        ctx.stream = (p, seed, offset, noise_shape)
        with _on_device(x):
            return _tensor(
                _dropout(_array(x), p, seed=seed, offset=offset, noise_shape=noise_shape)
            )

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        p, seed, offset, noise_shape = ctx.stream
        with _on_device(dy):
            dx = _dropout_backward(_array(dy), p, seed=seed, offset=offset,
                                   noise_shape=noise_shape)
            return _tensor(dx), None, None, None, None


class _DenseDropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                p: float, seed: int, offset: int, activation: str) -> torch.Tensor:
        gelu = activation == "gelu"
        with _on_device(x):
            result = _dense_dropout(
                _array(x), _array(weight).T, None if bias is None else _array(bias),
                p=p, seed=seed, offset=offset, activation=activation, return_preact=gelu,
            )
            y, z = (_tensor(result[0]), _tensor(result[1])) if gelu else (_tensor(result), None)
        ctx.stream = (p, seed, offset, activation, bias is not None)
        ctx.save_for_backward(x, weight, y, z)
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        p, seed, offset, activation, has_bias = ctx.stream
        x, weight, y, z = ctx.saved_tensors
        with _on_device(dy):
            dx, dW, db = _dense_dropout_backward(
                _array(dy), _array(x), _array(weight).T, _array(y), p=p, seed=seed,
                offset=offset, activation=activation, z=None if z is None else _array(z),
            )
            return (
                _tensor(dx) if ctx.needs_input_grad[0] else None,
                _tensor(dW).T if ctx.needs_input_grad[1] else None,
                _tensor(db) if has_bias and ctx.needs_input_grad[2] else None,
                None, None, None, None,
            )


class _DropConnectFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                p: float, seed: int, offset: int, per_example: bool) -> torch.Tensor:
        with _on_device(x):
            y = _dropconnect(
                _array(x), _array(weight).T, None if bias is None else _array(bias),
                p=p, seed=seed, offset=offset, per_example=per_example,
            )
        ctx.stream = (p, seed, offset, per_example, bias is not None)
        ctx.save_for_backward(x, weight)
        return _tensor(y)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        p, seed, offset, per_example, has_bias = ctx.stream
        x, weight = ctx.saved_tensors
        with _on_device(dy):
            dx, dW, db = _dropconnect_backward(
                _array(dy), _array(x), _array(weight).T, p=p, seed=seed, offset=offset,
                per_example=per_example,
            )
            return (
                _tensor(dx) if ctx.needs_input_grad[0] else None,
                _tensor(dW).T if ctx.needs_input_grad[1] else None,
                _tensor(db) if has_bias and ctx.needs_input_grad[2] else None,
                None, None, None, None,
            )


def dropout(x: torch.Tensor, p: float, *, seed: int, offset: int = 0, training: bool = True,
            noise_shape: Any = None) -> torch.Tensor:
    """Differentiable :func:`fastreg.dropout`: ``y = where(keep, x / (1 - p), +0.0)``.

    ``keep[i] = bits(i) >= min(floor(p * 2**32), 2**32 - 1)`` on the salt-0 stream at
    ``(seed, offset)``; the backward regenerates the mask. ``training=False`` or ``p == 0``
    returns ``x`` itself (as ``torch.nn.functional.dropout`` does).

    Parameters
    ----------
    x : float tensor (float32/float64 on CPU; float16 and bfloat16 too on CUDA), any shape,
        any strides
    p : float in [0, 1]; seed : int in [0, 2**64); offset : int in [0, 2**32)
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
    return _DropoutFunction.apply(x, p, seed, offset, noise_shape)


def dense_dropout(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                  p: float, seed: int, offset: int = 0, activation: str = "relu",
                  training: bool = True) -> torch.Tensor:
    """Differentiable :func:`fastreg.dense_dropout` in PyTorch's layout:
    ``y = where(keep, act(x @ weight.T + bias) / (1 - p), +0.0)``.

    The mask is ``fastreg.dropout_mask(y.shape, p, seed=seed, offset=offset)``; the backward
    regenerates it. ``training=False`` gives ``act(x @ weight.T + bias)``.

    Parameters
    ----------
    x : tensor (..., in_features); weight : tensor (out_features, in_features) of x's dtype
    bias : tensor (out_features,), optional
    p, seed, offset, activation, training : as in :func:`fastreg.dense_dropout`

    Returns
    -------
    tensor (..., out_features)

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
    if not _validate.check_bool(training, "training"):
        p = 0.0
    return _DenseDropoutFunction.apply(x, weight, bias, p, seed, offset, activation)


def dropconnect(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                p: float, seed: int, offset: int = 0, per_example: bool = False,
                training: bool = True) -> torch.Tensor:
    """Differentiable :func:`fastreg.dropconnect` in PyTorch's layout:
    ``y = x @ (weight * M / (1 - p)).T + bias``.

    ``M[n, k]`` is element ``k*N + n`` of the salt-1 stream (per batch), or ``e*K*N + k*N + n``
    for example ``e`` (per example): the masks of :func:`fastreg.dropconnect` on
    ``W = weight.T``. ``training=False`` gives ``torch.nn.functional.linear(x, weight, bias)``.

    Parameters
    ----------
    x : tensor (..., in_features); weight : tensor (out_features, in_features)
    bias : tensor (out_features,), optional
    p, seed, offset, per_example, training : as in :func:`fastreg.dropconnect`

    Returns
    -------
    tensor (..., out_features)

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
    return _DropConnectFunction.apply(x, weight, bias, p, seed, offset, per_example)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def _as_int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class _RandomStream(nn.Module):
    """A layer's ``(seed, offset)``: the seed drawn once from PyTorch's default generator, the
    offset advanced by each training-mode call; both mirrored in int64 buffers."""

    def _init_stream(self, device: Any = None) -> None:
        """Draw the seed (call it after the parameters' initialization, whose draws come first)."""
        low, high = torch.randint(0, 1 << 32, (2,), dtype=torch.int64).tolist()
        self._seed = low | (high << 32)
        self._offset = 0
        seed = torch.tensor(_as_int64(self._seed), dtype=torch.int64, device=device)
        self.register_buffer("seed", seed)
        self.register_buffer("offset", torch.zeros((), dtype=torch.int64, device=device))

    def _next_stream(self) -> tuple[int, int]:
        """``(rank_seed(seed), offset)`` for this call; advances the offset."""
        offset = self._offset
        self._offset = (offset + 1) & 0xFFFFFFFF
        self.offset.fill_(self._offset)  # asynchronous on CUDA: no sync
        return rank_seed(self._seed), offset

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._seed = int(self.seed) & _MASK64
        self._offset = int(self.offset) & 0xFFFFFFFF

    def extra_repr(self) -> str:
        return f"seed={self._seed:#x}, offset={self._offset}"


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

    def __init__(self, p: float = 0.5, noise_shape: Any = None) -> None:
        super().__init__()
        self.p = _validate.check_probability(p)
        self.noise_shape = noise_shape
        self._init_stream()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        seed, offset = self._next_stream()
        return dropout(x, self.p, seed=seed, offset=offset, noise_shape=self.noise_shape)

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
        if self.training:
            seed, offset = self._next_stream()
            p = self.p
        else:
            seed, offset, p = self._seed, 0, 0.0
        return _DenseDropoutFunction.apply(x, self.weight, self.bias, p, seed, offset,
                                           self.activation)

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
        if not self.training or self.p == 0.0:
            if self.training:
                self._next_stream()
            return nn.functional.linear(x, self.weight, self.bias)
        seed, offset = self._next_stream()
        return _DropConnectFunction.apply(x, self.weight, self.bias, self.p, seed, offset,
                                          self.per_example)

    def extra_repr(self) -> str:
        return f"per_example={self.per_example}, {super().extra_repr()}"


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------


def _check_constraints(group_lasso: float, max_norm: float | None, axis: Any) -> None:
    _validate.check_nonnegative(group_lasso, "group_lasso")
    if max_norm is not None:
        _validate.check_nonnegative(max_norm, "max_norm")
    _validate.check_axes(axis, 64)  # types and repeats now; the range per parameter at step


def _by_device(params: Iterable[torch.Tensor]) -> dict[torch.device, list[torch.Tensor]]:
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise TypeError("fastreg.torch optimizers take dense gradients, got a sparse grad")
        groups.setdefault(p.device, []).append(p)
    return groups


def _apply_constraints(group: dict[str, Any], params: list[torch.Tensor]) -> None:
    """Group lasso, then max-norm, on the parameters with at least 2 dimensions (weights;
    biases are skipped), in one list call each."""
    weights = [_array(p) for p in params if p.dim() >= 2]
    if not weights:
        return
    if group["group_lasso"] > 0.0:
        prox_group_lasso_(weights, t=group["lr"] * group["group_lasso"], axis=group["axis"])
    if group["max_norm"] is not None:
        max_norm_(weights, max_norm=group["max_norm"], axis=group["axis"])


def _mark_written(params: list[torch.Tensor]) -> None:
    """Bump the parameters' version counters, as PyTorch's in-place ops do: the update wrote
    their storage through array views, and autograd must refuse graphs that saved the old
    values (the error ``torch.optim`` gives)."""
    increment_version = getattr(torch.autograd.graph, "increment_version", None)
    if increment_version is not None:  # torch >= 2.2
        for p in params:
            increment_version(p)


def _run_closure(closure: Callable[[], Any] | None) -> Any:
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


_CONSTRAINTS_DOC = """
    group_lasso : float >= 0. Penalty ``group_lasso * sum_g ||w_g||_2``: after the update,
        ``fastreg.prox_group_lasso_(w, t=lr * group_lasso, axis=axis)`` scales each group by
        ``max(0, 1 - t/||w_g||)`` (whole units become exact zeros).
    max_norm : float >= 0 or None. After the update (and group lasso), ``fastreg.max_norm_(w,
        max_norm=max_norm, axis=axis)`` scales each group by ``min(1, max_norm/||w_g||)``.
    axis : int or tuple of ints, default 1: the axes a group's L2 norm is taken over, in PyTorch's
        weight layout. For ``nn.Linear``/``DenseDropout`` weight ``(out, in)``, the incoming
        weights of unit ``j`` are row ``j``: ``axis=1`` (one group per output unit); for a
        ``Conv2d`` weight ``(out, in, kh, kw)`` use ``axis=(1, 2, 3)`` (one group per filter).
        Group lasso and max-norm apply to parameters with 2 or more dimensions; biases are
        skipped.
"""


class ProxSGD(torch.optim.Optimizer):
    """SGD with a proximal L1/L2 step (``torch.optim.SGD`` when ``l1 = l2 = 0``), over
    :func:`fastreg.prox_sgd_`: all parameters of a group in one list call.

    Per step, with ``g = grad + weight_decay * w`` (``torch.optim.SGD``'s coupled decay; one
    extra temporary when ``weight_decay > 0``): ``buf = momentum * buf + g``, ``d = buf`` (or
    ``g + momentum * buf`` with Nesterov), then ``w = S(w - lr * d, lr * l1) / (1 + 2 * lr *
    l2)`` with ``S(v, t) = sign(v) * max(|v| - t, 0)``: the prox of Keras's penalty ``l1 *
    sum|w| + l2 * sum w**2``, exact zeros for L1. ``l2 = weight_decay / 2`` is the proximal
    counterpart of ``weight_decay`` (no extra pass). Then group lasso and max-norm, if set.
    The momentum buffers live in ``self.state[p]["momentum_buffer"]`` (``state_dict``
    round-trips); every option can be set per parameter group.

    Parameters
    ----------
    params : iterable of parameters or of dicts (parameter groups)
    lr : float >= 0; momentum : float >= 0; nesterov : bool (needs momentum > 0)
    weight_decay, l1, l2 : floats >= 0
    """ + _CONSTRAINTS_DOC + """
    Raises
    ------
    ValueError: negative hyper-parameters, nesterov without momentum; at ``step``, shapes or
        axes out of range. TypeError: sparse gradients, non-float parameters.

    Example
    -------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([0.5, -0.05, 2.0]))
    >>> opt = ProxSGD([w], lr=0.1, l1=1.0)
    >>> w.grad = torch.zeros(3)
    >>> opt.step()
    >>> w.tolist()
    [0.4000000059604645, 0.0, 1.899999976158142]
    """

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, l1: float = 0.0,
                 l2: float = 0.0, group_lasso: float = 0.0, max_norm: float | None = None,
                 axis: Any = 1) -> None:
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay),
                            ("l1", l1), ("l2", l2)):
            _validate.check_nonnegative(value, name)
        _validate.check_momentum(momentum, _validate.check_bool(nesterov, "nesterov"), True)
        _check_constraints(group_lasso, max_norm, axis)
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov,
                    "weight_decay": weight_decay, "l1": l1, "l2": l2,
                    "group_lasso": group_lasso, "max_norm": max_norm, "axis": axis}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = _run_closure(closure)
        for group in self.param_groups:
            momentum, decay = group["momentum"], group["weight_decay"]
            for params in _by_device(group["params"]).values():
                with _on_device(params[0]):
                    grads, bufs = [], []
                    for p in params:
                        g = p.grad if decay == 0.0 else p.grad.add(p, alpha=decay)
                        grads.append(_array(g))
                        if momentum > 0.0:
                            state = self.state[p]
                            if "momentum_buffer" not in state:
                                state["momentum_buffer"] = torch.zeros_like(p)
                            bufs.append(_array(state["momentum_buffer"]))
                    prox_sgd_(
                        [_array(p) for p in params], grads, lr=group["lr"], l1=group["l1"],
                        l2=group["l2"], momentum=momentum, nesterov=group["nesterov"],
                        buf=bufs if momentum > 0.0 else None,
                    )
                    _apply_constraints(group, params)
                _mark_written(params)
        return loss


class ProxAdamW(torch.optim.Optimizer):
    """AdamW with a proximal L1/L2 step in the Adam metric (``torch.optim.AdamW`` when
    ``l1 = l2 = 0``), over :func:`fastreg.prox_adam_`: a group's parameters in one list call.

    Per step (Kingma & Ba moments, bias-corrected): ``psi = sqrt(v_hat) + eps``,
    ``z = w - lr * m_hat / psi - lr * weight_decay * w`` (decoupled decay), then
    ``w = S(z, lr * l1 / psi) / (1 + 2 * lr * l2 / psi)``: exact zeros for L1. Then group lasso
    (a Euclidean prox with ``t = lr * group_lasso``, not in the Adam metric) and max-norm, if
    set. State per parameter (``state_dict`` round-trips): ``step`` (int), ``exp_avg``,
    ``exp_avg_sq``, as ``torch.optim.AdamW`` names them. Parameters that share a step count
    are updated in one call.

    Parameters
    ----------
    params : iterable of parameters or of dicts (parameter groups)
    lr : float >= 0; betas : (beta1, beta2) in [0, 1); eps : float >= 0
    weight_decay : float >= 0, decoupled (default 1e-2, as ``torch.optim.AdamW``)
    l1, l2 : floats >= 0
    """ + _CONSTRAINTS_DOC + """
    Raises
    ------
    ValueError: negative hyper-parameters, betas outside [0, 1); at ``step``, axes out of
        range. TypeError: sparse gradients, non-float parameters.

    Example
    -------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1e-4], dtype=torch.float64))
    >>> opt = ProxAdamW([w], lr=0.1, l1=0.1, weight_decay=0.0)
    >>> w.grad = torch.ones(2, dtype=torch.float64)
    >>> opt.step()
    >>> w.tolist()
    [0.8000000000999999, 0.0]
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, l1: float = 0.0, l2: float = 0.0,
                 group_lasso: float = 0.0, max_norm: float | None = None, axis: Any = 1) -> None:
        for name, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay),
                            ("l1", l1), ("l2", l2)):
            _validate.check_nonnegative(value, name)
        beta1, beta2 = betas
        _validate.check_probability(beta1, "beta1", allow_one=False)
        _validate.check_probability(beta2, "beta2", allow_one=False)
        _check_constraints(group_lasso, max_norm, axis)
        defaults = {"lr": lr, "betas": (beta1, beta2), "eps": eps,
                    "weight_decay": weight_decay, "l1": l1, "l2": l2,
                    "group_lasso": group_lasso, "max_norm": max_norm, "axis": axis}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = _run_closure(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for params in _by_device(group["params"]).values():
                by_step: dict[int, list[torch.Tensor]] = {}
                for p in params:
                    state = self.state[p]
                    if "step" not in state:
                        state["step"] = 0
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    state["step"] = int(state["step"]) + 1
                    by_step.setdefault(state["step"], []).append(p)
                with _on_device(params[0]):
                    for step, members in by_step.items():
                        states = [self.state[p] for p in members]
                        prox_adam_(
                            [_array(p) for p in members], [_array(p.grad) for p in members],
                            [_array(s["exp_avg"]) for s in states],
                            [_array(s["exp_avg_sq"]) for s in states],
                            step=step, lr=group["lr"], beta1=beta1, beta2=beta2,
                            eps=group["eps"], l1=group["l1"], l2=group["l2"],
                            weight_decay=group["weight_decay"],
                        )
                    _apply_constraints(group, params)
                _mark_written(params)
        return loss
