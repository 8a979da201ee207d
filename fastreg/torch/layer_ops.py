"""The layers' custom ops (``torch.library``, namespace ``fastreg``): real, fake and autograd.

Each op is a ``torch.library.custom_op`` with a fake kernel (shapes only, for ``torch.compile``
and ``torch.export``) and an autograd formula registered with ``register_autograd``, whose
backward is again a custom op. The seed and the call index are int64 0-d tensors, so graphs do
not specialize on them; ``fastreg::advance_offset`` is the one mutating op: it returns the index
a call uses as a new tensor and advances the buffer, outside the differentiable op (which
``register_autograd`` requires), so the backward regenerates the forward's mask even where
Inductor reorders the buffer update.

CPU kernels. With the numba backend the GEMMs run in PyTorch itself (``torch.mm``, in PyTorch's
own thread pool, exactly like ``nn.Linear``), and fastreg's Numba kernels do the epilogues
(bias, activation, mask, scale; ``dense_epilogue`` / ``dense_preact_grad``) and the weight
masks (``dropout_apply``, ``dropout_apply_pair`` on the salt-1 stream); the masks are those of
``fastreg.dropout_mask`` bit for bit. With the numpy backend, and on CUDA (CuPy by DLPack), the
ops call fastreg's array API. No mask is stored: backward regenerates it from ``(seed, offset)``.

Each op's body is a plain function of the stream as Python ints (``dropout_run``,
``dense_forward``, ``dense_backward``, ``dropconnect_forward``, ``dropconnect_backward``), which
the eager fast path (``_eager``) calls directly: one implementation, two ways in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.library import custom_op

from .. import _backends, _validate
from ..dense import dense_dropout as _api_dense_dropout
from ..dense import dense_dropout_backward as _api_dense_dropout_backward
from ..dropconnect import dropconnect as _api_dropconnect
from ..dropconnect import dropconnect_backward as _api_dropconnect_backward
from ..dropout import dropout as _api_dropout
from ..random import SALT_DROPCONNECT, SALT_DROPOUT, dropout_scale, kernel_threshold
from ._bridge import (
    as_array,
    as_tensor,
    check_float,
    compute_dtype,
    cpu_backend,
    on_device,
    stream_ints,
)

__all__ = [
    "advance_offset",
    "dense_dropout_backward_op",
    "dense_dropout_op",
    "dropconnect_backward_op",
    "dropconnect_op",
    "dropout_backward_op",
    "dropout_op",
]

Tensor = torch.Tensor


def _twin(family: str, backend: str) -> Any:
    return _backends.twin(family, backend)


def _wide(t: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    return t if t is None or t.dtype is dtype else t.to(dtype)


def _narrow(t: Tensor, dtype: torch.dtype) -> Tensor:
    """The float32 result of a 16-bit op rounded once to the storage type."""
    return t if t.dtype is dtype else t.to(dtype)


def _scale(p: float, storage: torch.dtype, kernel_dtype: Any) -> Any:
    """``1/(1-p)`` as docs/contract/random-stream.md has it for every dtype: in float64, cast
    once to the storage type (float16 and bfloat16 included), then widened (exactly) to the
    dtype of the arrays the kernels see. The float32 scale of a widened 16-bit tensor would
    not be the storage type's: 1/(1-0.3) is 1.4285714 in float32, 1.4296875 in bfloat16."""
    if storage is torch.bfloat16:
        import ml_dtypes

        numpy_storage: Any = ml_dtypes.bfloat16
    else:
        numpy_storage = {torch.float16: np.float16, torch.float32: np.float32}.get(
            storage, np.float64)
    return np.dtype(kernel_dtype).type(dropout_scale(p, numpy_storage))


def _numba(t: Tensor, a: Any) -> bool:
    return t.device.type == "cpu" and cpu_backend(a) == "numba"


# ------------------------------------------------------------------------------ call index


@custom_op("fastreg::advance_offset", mutates_args=("offset",))
def advance_offset(offset: Tensor) -> Tensor:
    """Return the call index ``offset`` holds (a new tensor) and advance the buffer by one, mod
    ``2**32`` (docs/contract/random-stream.md: the offset is a uint32)."""
    index = offset.clone()
    offset.add_(1).bitwise_and_(0xFFFFFFFF)
    return index


@advance_offset.register_fake
def _(offset: Tensor) -> Tensor:
    return torch.empty_like(offset)


# ------------------------------------------------------------------------------ dropout


def dropout_run(x: Tensor, p: float, s: int, o: int, noise_shape: list[int] | None) -> Tensor:
    """``where(keep, x * scale, +0.0)`` at stream ``(s, o)`` (Python ints): forward and
    backward are the same select. The implementation of ``fastreg::dropout`` and its backward,
    shared with the eager fast path (``_eager``). A non-float ``x`` raises TypeError (the
    numba path below would otherwise run on integer or complex storage)."""
    check_float(x, "x")
    if p == 0.0:
        return x.clone()  # an op's output never aliases its input
    with on_device(x):
        a = as_array(x)
        if noise_shape is None and a.dtype.itemsize >= 4 and _numba(x, a):
            out = torch.empty(x.shape, dtype=x.dtype)
            flat = a.reshape(-1) if a.flags.c_contiguous else x.contiguous().numpy().reshape(-1)
            _twin("dropout", "numba").dropout_apply(
                flat, out.numpy().reshape(-1), s & 0xFFFFFFFF, s >> 32, SALT_DROPOUT, o,
                kernel_threshold(p), dropout_scale(p, flat.dtype))
        else:
            # float16/bfloat16 too: the API's native 16-bit kernels read and write the storage
            # type (half float32's bytes) and scale by the storage type's 1/(1-p)
            shape = None if noise_shape is None else tuple(noise_shape)
            out = as_tensor(_api_dropout(a, p, seed=s, offset=o, noise_shape=shape))
            if out.data_ptr() == x.data_ptr():
                out = out.clone()
    return out


@custom_op("fastreg::dropout", mutates_args=())
def dropout_op(x: Tensor, p: float, seed: Tensor, offset: Tensor,
               noise_shape: list[int] | None) -> Tensor:
    """``y = where(bits(i) >= threshold, x / (1 - p), +0.0)`` on the salt-0 stream."""
    return dropout_run(x, p, *stream_ints(seed, offset), noise_shape)


@custom_op("fastreg::dropout_backward", mutates_args=())
def dropout_backward_op(dy: Tensor, p: float, seed: Tensor, offset: Tensor,
                        noise_shape: list[int] | None) -> Tensor:
    """``dx = where(keep, dy / (1 - p), +0.0)``, the mask regenerated."""
    return dropout_run(dy, p, *stream_ints(seed, offset), noise_shape)


@dropout_op.register_fake
def _(x: Tensor, p: float, seed: Tensor, offset: Tensor, noise_shape: list[int] | None) -> Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@dropout_backward_op.register_fake
def _(dy: Tensor, p: float, seed: Tensor, offset: Tensor,
      noise_shape: list[int] | None) -> Tensor:
    return torch.empty(dy.shape, dtype=dy.dtype, device=dy.device)


def _dropout_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    _, ctx.p, seed, offset, ctx.noise_shape = inputs
    ctx.save_for_backward(seed, offset)


def _dropout_grad(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
    seed, offset = ctx.saved_tensors
    return dropout_backward_op(dy, ctx.p, seed, offset, ctx.noise_shape), None, None, None, None


# The backward is linear in dy with the same mask: its own gradient is itself.
dropout_op.register_autograd(_dropout_grad, setup_context=_dropout_setup)
dropout_backward_op.register_autograd(_dropout_grad, setup_context=_dropout_setup)


# ------------------------------------------------------------------------------ dense_dropout


def check_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    """ValueError/TypeError unless ``x (..., K)``, ``weight (N, K)``, ``bias (N,)`` chain and
    share one float dtype and device."""
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if t is not None:
            check_float(t, name)
    if x.dim() < 1 or weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x (..., in_features) and weight (out_features, in_features) do not "
                         f"chain: x {tuple(x.shape)}, weight {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{name} must have x's dtype {x.dtype}, got {t.dtype}")


def _rows(x: Tensor) -> Tensor:
    """``x (..., K)`` as ``(M, K)``: a view when the layout allows."""
    return x.reshape(-1, x.shape[-1])


@custom_op("fastreg::dense_dropout", mutates_args=())
def dense_dropout_op(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, seed: Tensor,
                     offset: Tensor, activation: str) -> tuple[Tensor, Tensor]:
    """``(y, z)``: ``y = where(keep, act(x @ weight.T + bias) / (1 - p), +0.0)`` and, for gelu,
    ``z = x @ weight.T + bias`` (an empty tensor otherwise)."""
    check_linear(x, weight, bias)
    return dense_forward(x, weight, bias, p, *stream_ints(seed, offset), activation)


def dense_forward(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, s: int, o: int,
                  activation: str) -> tuple[Tensor, Tensor]:
    """The implementation of ``fastreg::dense_dropout`` at stream ``(s, o)`` (Python ints),
    shared with the eager fast path; the arguments are checked (:func:`check_linear`)."""
    gelu = activation == "gelu"
    wide = compute_dtype(x)
    xw, ww, bw = _wide(x, wide), _wide(weight, wide), _wide(bias, wide)
    shape = (*x.shape[:-1], weight.shape[0])
    with on_device(xw):
        wa = as_array(ww)
        if _numba(x, wa):
            y = torch.mm(_rows(xw), ww.t())
            z = torch.empty_like(y) if gelu else None
            _twin("dense", "numba").dense_epilogue(
                y.numpy(), None if z is None else z.numpy(),
                None if bw is None else as_array(bw), activation, s & 0xFFFFFFFF, s >> 32,
                SALT_DROPOUT, o, kernel_threshold(p), _scale(p, x.dtype, wa.dtype))
        else:  # the API on the storage arrays: it widens 16-bit data itself
            result = _api_dense_dropout(
                as_array(x), as_array(weight).T, None if bias is None else as_array(bias), p=p,
                seed=s, offset=o, activation=activation, return_preact=gelu)
            y, z = (as_tensor(result[0]), as_tensor(result[1])) if gelu else (as_tensor(result),
                                                                               None)
    y = _narrow(y.reshape(shape), x.dtype)
    z = x.new_empty(0) if z is None else _narrow(z.reshape(shape), x.dtype)
    return y, z


@dense_dropout_op.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, seed: Tensor, offset: Tensor,
      activation: str) -> tuple[Tensor, Tensor]:
    check_linear(x, weight, bias)
    shape = (*x.shape[:-1], weight.shape[0])
    return x.new_empty(shape), x.new_empty(shape if activation == "gelu" else (0,))


@custom_op("fastreg::dense_dropout_backward", mutates_args=())
def dense_dropout_backward_op(dy: Tensor, x: Tensor, weight: Tensor, y: Tensor, z: Tensor,
                              p: float, seed: Tensor, offset: Tensor, activation: str,
                              need_dx: bool, need_dw: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dW, db)`` in PyTorch's layout (``dW`` like ``weight``); ``dx``/``dW`` are empty
    when not needed (their GEMMs are skipped)."""
    return dense_backward(dy, x, weight, y, z, p, *stream_ints(seed, offset), activation,
                          need_dx, need_dw)


def dense_backward(dy: Tensor, x: Tensor, weight: Tensor, y: Tensor, z: Tensor, p: float,
                   s: int, o: int, activation: str, need_dx: bool,
                   need_dw: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The implementation of ``fastreg::dense_dropout_backward`` at stream ``(s, o)``, shared
    with the eager fast path."""
    wide = compute_dtype(x)
    dyw, xw, ww, yw = (_wide(t, wide) for t in (dy, x, weight, y))
    zw = _wide(z, wide) if activation == "gelu" else None
    n = weight.shape[0]
    with on_device(xw):
        wa = as_array(ww)
        if _numba(x, wa):
            dz, db = _twin("dense", "numba").dense_preact_grad(
                as_array(_rows_n(dyw, n)), as_array(_rows_n(yw, n)),
                None if zw is None else as_array(_rows_n(zw, n)), activation, s & 0xFFFFFFFF,
                s >> 32, SALT_DROPOUT, o, kernel_threshold(p), _scale(p, x.dtype, wa.dtype))
            dzt = torch.from_numpy(dz)
            dx = torch.mm(dzt, ww).reshape(x.shape) if need_dx else None
            dw = torch.mm(dzt.t(), _rows(xw)) if need_dw else None
            db = torch.from_numpy(db)
        else:
            dxa, dWa, dba = _api_dense_dropout_backward(
                as_array(dy), as_array(x), as_array(weight).T, as_array(y), p=p, seed=s,
                offset=o, activation=activation,
                z=None if activation != "gelu" else as_array(z))
            dx, dw, db = as_tensor(dxa), as_tensor(dWa).t(), as_tensor(dba)
    dx = _narrow(dx.contiguous(), x.dtype) if need_dx else x.new_empty(0)
    dw = _narrow(dw.contiguous(), x.dtype) if need_dw else x.new_empty(0)
    return dx, dw, _narrow(db, x.dtype)


def _rows_n(t: Tensor, n: int) -> Tensor:
    return t.reshape(-1, n)


@dense_dropout_backward_op.register_fake
def _(dy: Tensor, x: Tensor, weight: Tensor, y: Tensor, z: Tensor, p: float, seed: Tensor,
      offset: Tensor, activation: str, need_dx: bool,
      need_dw: bool) -> tuple[Tensor, Tensor, Tensor]:
    return (x.new_empty(x.shape if need_dx else (0,)),
            x.new_empty(weight.shape if need_dw else (0,)), x.new_empty(weight.shape[0]))


def _dense_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    x, weight, bias, ctx.p, seed, offset, ctx.activation = inputs
    ctx.has_bias = bias is not None
    y, z = output
    ctx.save_for_backward(x, weight, y, z, seed, offset)


def _dense_grad(ctx: Any, dy: Tensor, _dz: Any) -> tuple[Any, ...]:
    x, weight, y, z, seed, offset = ctx.saved_tensors
    need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
    dx, dw, db = dense_dropout_backward_op(dy, x, weight, y, z, ctx.p, seed, offset,
                                           ctx.activation, need_dx, need_dw)
    return (dx if need_dx else None, dw if need_dw else None,
            db if ctx.has_bias and need_db else None, None, None, None, None)


dense_dropout_op.register_autograd(_dense_grad, setup_context=_dense_setup)


# ------------------------------------------------------------------------------ DropConnect


def _masked_kn(weight: Tensor, s: int, o: int, p: float, grad_kn: Tensor | None,
               storage: torch.dtype) -> Tensor:
    """``W = weight.T`` in C order (K, N), masked in place on the salt-1 stream (element
    ``k*N + n``): ``select(keep, W * scale, +0.0)`` with the ``storage`` type's scale;
    ``grad_kn`` (K, N), when given, is masked in the same pass over the words."""
    wc = weight.t().clone(memory_format=torch.contiguous_format)  # always a copy: masked below
    flat = wc.numpy().reshape(-1)
    stream = (s & 0xFFFFFFFF, s >> 32, SALT_DROPCONNECT, o, kernel_threshold(p),
              _scale(p, storage, flat.dtype))
    twin = _twin("dropout", "numba")
    if grad_kn is None:
        twin.dropout_apply(flat, flat, *stream)
    else:
        twin.dropout_apply_pair(flat, flat, grad_kn.numpy().reshape(-1), *stream)
    return wc


@custom_op("fastreg::dropconnect", mutates_args=())
def dropconnect_op(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, seed: Tensor,
                   offset: Tensor, per_example: bool) -> Tensor:
    """``y = x @ (weight * M / (1 - p)).T + bias``, ``M`` per call or per example."""
    check_linear(x, weight, bias)
    return dropconnect_forward(x, weight, bias, p, *stream_ints(seed, offset), per_example)


def dropconnect_forward(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, s: int,
                        o: int, per_example: bool) -> Tensor:
    """The implementation of ``fastreg::dropconnect`` at stream ``(s, o)`` (Python ints),
    shared with the eager fast path; the arguments are checked (:func:`check_linear`)."""
    wide = compute_dtype(x)
    xw, ww, bw = _wide(x, wide), _wide(weight, wide), _wide(bias, wide)
    shape = (*x.shape[:-1], weight.shape[0])
    with on_device(xw):
        wa = as_array(ww)
        if _numba(x, wa) and not per_example:
            wm = _masked_kn(ww, s, o, p, None, x.dtype)
            x2 = _rows(xw)
            y = torch.mm(x2, wm) if bw is None else torch.addmm(bw, x2, wm)
        elif _numba(x, wa):
            stream = (s & 0xFFFFFFFF, s >> 32, SALT_DROPCONNECT, o, kernel_threshold(p),
                      _scale(p, x.dtype, wa.dtype))
            y = torch.from_numpy(_twin("dropconnect", "numba").example_forward(
                as_array(_rows(xw).contiguous()), as_array(ww.t().contiguous()),
                None if bw is None else as_array(bw), *stream))
        else:
            y = as_tensor(_api_dropconnect(  # on the storage arrays, as dense_forward
                as_array(x), as_array(weight).T, None if bias is None else as_array(bias), p=p,
                seed=s, offset=o, per_example=per_example))
    return _narrow(y.reshape(shape), x.dtype)


@dropconnect_op.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None, p: float, seed: Tensor, offset: Tensor,
      per_example: bool) -> Tensor:
    check_linear(x, weight, bias)
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@custom_op("fastreg::dropconnect_backward", mutates_args=())
def dropconnect_backward_op(dy: Tensor, x: Tensor, weight: Tensor, p: float, seed: Tensor,
                            offset: Tensor, per_example: bool, need_dx: bool,
                            need_dw: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dW, db)`` of :func:`dropconnect_op` in PyTorch's layout, the masks regenerated."""
    return dropconnect_backward(dy, x, weight, p, *stream_ints(seed, offset), per_example,
                                need_dx, need_dw)


def dropconnect_backward(dy: Tensor, x: Tensor, weight: Tensor, p: float, s: int, o: int,
                         per_example: bool, need_dx: bool,
                         need_dw: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The implementation of ``fastreg::dropconnect_backward`` at stream ``(s, o)``, shared
    with the eager fast path."""
    wide = compute_dtype(x)
    dyw, xw, ww = (_wide(t, wide) for t in (dy, x, weight))
    n = weight.shape[0]
    dy2, x2 = dyw.reshape(-1, n), _rows(xw)
    with on_device(xw):
        wa = as_array(ww)
        if _numba(x, wa) and not per_example:
            dw_kn = torch.mm(x2.t(), dy2)
            wm = _masked_kn(ww, s, o, p, dw_kn, x.dtype)
            dx = torch.mm(dy2, wm.t()).reshape(x.shape) if need_dx else None
            dw = dw_kn.t()
            db = dy2.sum(0)
        elif _numba(x, wa):
            stream = (s & 0xFFFFFFFF, s >> 32, SALT_DROPCONNECT, o, kernel_threshold(p),
                      _scale(p, x.dtype, wa.dtype))
            dxa, dWa = _twin("dropconnect", "numba").example_backward(
                as_array(dy2.contiguous()), as_array(x2.contiguous()),
                as_array(ww.t().contiguous()), *stream)
            dx, dw, db = torch.from_numpy(dxa).reshape(x.shape), torch.from_numpy(dWa).t(), \
                dy2.sum(0)
        else:
            dxa, dWa, dba = _api_dropconnect_backward(
                as_array(dy), as_array(x), as_array(weight).T, p=p, seed=s, offset=o,
                per_example=per_example)
            dx, dw, db = as_tensor(dxa), as_tensor(dWa).t(), as_tensor(dba)
    dx = _narrow(dx.contiguous(), x.dtype) if need_dx else x.new_empty(0)
    dw = _narrow(dw.contiguous(), x.dtype) if need_dw else x.new_empty(0)
    return dx, dw, _narrow(db, x.dtype)


@dropconnect_backward_op.register_fake
def _(dy: Tensor, x: Tensor, weight: Tensor, p: float, seed: Tensor, offset: Tensor,
      per_example: bool, need_dx: bool, need_dw: bool) -> tuple[Tensor, Tensor, Tensor]:
    return (x.new_empty(x.shape if need_dx else (0,)),
            x.new_empty(weight.shape if need_dw else (0,)), x.new_empty(weight.shape[0]))


def _dropconnect_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    x, weight, bias, ctx.p, seed, offset, ctx.per_example = inputs
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, weight, seed, offset)


def _dropconnect_grad(ctx: Any, dy: Tensor) -> tuple[Any, ...]:
    x, weight, seed, offset = ctx.saved_tensors
    need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
    dx, dw, db = dropconnect_backward_op(dy, x, weight, ctx.p, seed, offset, ctx.per_example,
                                         need_dx, need_dw)
    return (dx if need_dx else None, dw if need_dw else None,
            db if ctx.has_bias and need_db else None, None, None, None, None)


dropconnect_op.register_autograd(_dropconnect_grad, setup_context=_dropconnect_setup)


def resolve_noise_shape(noise_shape: Any, shape: tuple[int, ...]) -> list[int] | None:
    """Keras ``noise_shape`` (None entries = x's size) as the op's list of ints, validated."""
    dims = _validate.check_noise_shape(noise_shape, shape)
    return None if dims is None else list(dims)
