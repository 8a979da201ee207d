"""The eager fast path: the layers' ops without the custom-op dispatcher, where nothing traces.

A ``torch.library.custom_op`` call in eager mode goes through PyTorch's Python dispatcher: the
autograd wrapper, ``fill_defaults``, the ADInplaceOrView step of a mutating op, the
``torch._dynamo.disable`` frame of the implementation. On the 2-core machine that costs ~60 us
for ``fastreg::advance_offset`` and ~100 us more per layer op than its implementation, about
half of the ``examples/digits_mlp.py`` step (64 x 64 -> 256 -> 256 -> 10, 8.4 ms against
4.4 ms for its plain-PyTorch twin). Where no one records the call (:func:`eager`), the modules
and functions call the ops' implementation functions themselves (``layer_ops.dropout_run``,
``dense_forward``, ... the same code, so the same bits), through a lean
``torch.autograd.Function`` whose backward calls the backward implementations, and advance the
module's ``offset`` buffer in place as ``fastreg::advance_offset`` does (same values, so
checkpoints are the same).

Everywhere else the custom ops run as before: ``torch.compile`` (Dynamo), ``torch.export``,
``jit.trace``, FakeTensor and other dispatch modes, ``TorchFunctionMode``s, ``torch.func``
transforms (their clear error), tensor subclasses, CUDA tensors, and a backward run with
``create_graph=True`` (which calls the backward custom ops, so double backward behaves as on
the op path).
"""

from __future__ import annotations

from typing import Any

import torch

from .. import _validate
from ._bridge import MASK32, MASK64, offset_tensor, rank_seed_int, seed_tensor
from .layer_ops import (
    dense_backward,
    dense_dropout_backward_op,
    dense_forward,
    dropconnect_backward,
    dropconnect_backward_op,
    dropconnect_forward,
    dropout_backward_op,
    dropout_run,
)

__all__ = [
    "advance",
    "dense_dropout",
    "dropconnect",
    "dropout",
    "eager",
    "module_stream",
    "stream_of",
]

Tensor = torch.Tensor
_PLAIN = (torch.Tensor, torch.nn.Parameter)
_C = torch._C


def eager(*tensors: Any) -> bool:
    """Whether a call on ``tensors`` (None and non-tensors skipped) may take the fast path:
    nothing compiles, traces or transforms it (no Dynamo, ``jit.trace``, dispatch mode, torch
    function mode or functorch transform), and every tensor is a plain CPU ``Tensor`` or
    ``Parameter``. About 1.5 us; ``is_compiling`` first, so Dynamo folds the rest away."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if (_C._len_torch_dispatch_stack() or _C._is_torch_function_mode_enabled()
            or _C._are_functorch_transforms_active()):
        return False
    for t in tensors:
        if isinstance(t, Tensor) and (type(t) not in _PLAIN or not t.is_cpu
                                      or _C._functorch.is_functorch_wrapped_tensor(t)):
            return False
    return True


def advance(offset: Tensor) -> int:
    """``fastreg::advance_offset`` in eager: the call index the buffer holds (mod ``2**32``),
    and the buffer advanced in place to ``(index + 1) mod 2**32`` (the op's values exactly,
    int64 wrap-around included)."""
    value = int(offset)
    offset.fill_((value + 1) & MASK32)
    return value & MASK32


def stream_of(seed: Any, offset: Any) -> tuple[int, int]:
    """``(seed, offset)`` of the functional API (ints, validated, or int64 tensors) as the
    Python ints the op would read from their tensors."""
    s = int(seed) & MASK64 if isinstance(seed, Tensor) else _validate.check_seed(seed)
    o = int(offset) & MASK32 if isinstance(offset, Tensor) else _validate.check_offset(offset)
    return s, o


def module_stream(seed: Tensor, offset: Tensor) -> tuple[int, int]:
    """A module's ``(rank_seed(seed), index)`` for this call, the offset advanced."""
    return rank_seed_int(int(seed) & MASK64), advance(offset)


def _needs_graph(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _stream_tensors(s: int, o: int) -> tuple[Tensor, Tensor]:
    return seed_tensor(s), offset_tensor(o)


# ------------------------------------------------------------------------------ dropout


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, s: int, o: int,
                shape: list[int] | None) -> Tensor:
        ctx.stream = (p, s, o, shape)
        return dropout_run(x, p, s, o, shape)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
        p, s, o, shape = ctx.stream
        if torch.is_grad_enabled():  # create_graph=True: the op path's differentiable backward
            return dropout_backward_op(dy, p, *_stream_tensors(s, o), shape), None, None, None, \
                None
        return dropout_run(dy, p, s, o, shape), None, None, None, None


def dropout(x: Tensor, p: float, s: int, o: int, shape: list[int] | None) -> Tensor:
    """``fastreg::dropout`` with its autograd, at stream ``(s, o)``."""
    if _needs_graph(x):
        return _Dropout.apply(x, p, s, o, shape)
    return dropout_run(x, p, s, o, shape)


# ------------------------------------------------------------------------------ dense_dropout


class _DenseDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, p: float, s: int,
                o: int, activation: str) -> Tensor:
        y, z = dense_forward(x, weight, bias, p, s, o, activation)
        ctx.save_for_backward(x, weight, y)
        ctx.z = z  # an intermediate (empty unless gelu), not an input or output
        ctx.stream = (p, s, o, activation, bias is not None)
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
        x, weight, y = ctx.saved_tensors
        p, s, o, activation, has_bias = ctx.stream
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            dx, dw, db = dense_dropout_backward_op(dy, x, weight, y, ctx.z, p,
                                                   *_stream_tensors(s, o), activation,
                                                   need_dx, need_dw)
        else:
            dx, dw, db = dense_backward(dy, x, weight, y, ctx.z, p, s, o, activation, need_dx,
                                        need_dw)
        return (dx if need_dx else None, dw if need_dw else None,
                db if has_bias and need_db else None, None, None, None, None)


def dense_dropout(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, s: int, o: int,
                  activation: str) -> Tensor:
    """``fastreg::dense_dropout(...)[0]`` with its autograd (arguments already checked)."""
    if _needs_graph(x, weight, bias):
        return _DenseDropout.apply(x, weight, bias, p, s, o, activation)
    return dense_forward(x, weight, bias, p, s, o, activation)[0]


# ------------------------------------------------------------------------------ DropConnect


class _DropConnect(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, p: float, s: int,
                o: int, per_example: bool) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stream = (p, s, o, per_example, bias is not None)
        return dropconnect_forward(x, weight, bias, p, s, o, per_example)

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        p, s, o, per_example, has_bias = ctx.stream
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():
            dx, dw, db = dropconnect_backward_op(dy, x, weight, p, *_stream_tensors(s, o),
                                                 per_example, need_dx, need_dw)
        else:
            dx, dw, db = dropconnect_backward(dy, x, weight, p, s, o, per_example, need_dx,
                                              need_dw)
        return (dx if need_dx else None, dw if need_dw else None,
                db if has_bias and need_db else None, None, None, None, None)


def dropconnect(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, s: int, o: int,
                per_example: bool) -> Tensor:
    """``fastreg::dropconnect`` with its autograd (arguments already checked)."""
    if _needs_graph(x, weight, bias):
        return _DropConnect.apply(x, weight, bias, p, s, o, per_example)
    return dropconnect_forward(x, weight, bias, p, s, o, per_example)
