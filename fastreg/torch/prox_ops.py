"""The optimizers' update ops (``torch.library``, namespace ``fastreg``): in-place custom ops.

``fastreg::prox_sgd_`` and ``fastreg::prox_adam_`` update a list of parameters (one device) and
their states in one call to :func:`fastreg.prox_sgd_` / :func:`fastreg.prox_adam_`, then apply
group lasso and max-norm to the parameters with 2 or more dimensions. They declare what they
mutate, so PyTorch bumps the version counters (autograd refuses graphs that saved the old
weights, as after ``torch.optim``) and ``torch.compile(optimizer.step)`` functionalizes them.
``lr`` is a 0-d tensor (a float becomes one), so a compiled step does not specialize on it.

16-bit parameters (and their states) are updated in float32 and rounded once per step, as
``torch.optim`` does for them: the op upcasts, runs the kernel, and copies back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.library import custom_op

from ..prox import max_norm_, prox_adam_, prox_group_lasso_, prox_sgd_
from ._bridge import as_array, compute_dtype, on_device

__all__ = ["prox_adam_op", "prox_adam_run", "prox_sgd_op", "prox_sgd_run"]

Tensor = torch.Tensor


class _Staging:
    """Arrays for the kernels: views of float32/float64 tensors, float32 copies of 16-bit ones
    (written back, rounded once, by :meth:`write_back`)."""

    def __init__(self) -> None:
        self._pairs: list[tuple[Tensor, Tensor]] = []

    def written(self, t: Tensor) -> Any:
        wide = compute_dtype(t)
        if wide is t.dtype:
            return as_array(t)
        copy = t.to(wide)
        self._pairs.append((t, copy))
        return as_array(copy)

    @staticmethod
    def read(t: Tensor) -> Any:
        wide = compute_dtype(t)
        return as_array(t if wide is t.dtype else t.to(wide))

    def write_back(self) -> None:
        for destination, copy in self._pairs:
            destination.copy_(copy)


def _axis(axis: list[int] | None) -> Any:
    if axis is None:
        return None
    return axis[0] if len(axis) == 1 else tuple(axis)


def _constraints(weights: list[Any], lr: float, group_lasso: float, max_norm: float | None,
                 axis: list[int] | None) -> None:
    """Group lasso (``t = lr * group_lasso``), then max-norm, on the weights (2+ dims)."""
    weights = [w for w in weights if w.ndim >= 2]
    if not weights:
        return
    if group_lasso > 0.0:
        prox_group_lasso_(weights, t=lr * group_lasso, axis=_axis(axis))
    if max_norm is not None:
        max_norm_(weights, max_norm=max_norm, axis=_axis(axis))


def _gradients(params: list[Tensor], grads: list[Tensor], maximize: bool,
               coupled_decay: float) -> list[Tensor]:
    """``-grad`` when maximizing, then ``+ coupled_decay * w`` (torch.optim.SGD's order)."""
    out = []
    for p, g in zip(params, grads, strict=True):
        wide = compute_dtype(p)
        g = g.to(wide) if g.dtype is not wide else g
        if maximize:
            g = -g
        if coupled_decay != 0.0:
            g = g.add(p.to(wide) if p.dtype is not wide else p, alpha=coupled_decay)
        out.append(g)
    return out


@custom_op("fastreg::prox_sgd_", mutates_args=("params", "momentum_buffers"))
def prox_sgd_op(params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor],
                lr: Tensor, momentum: float, nesterov: bool, weight_decay: float, l1: float,
                l2: float, maximize: bool, group_lasso: float, max_norm: float | None,
                axis: list[int] | None) -> None:
    """:func:`fastreg.prox_sgd_` on the list (``momentum_buffers`` empty without momentum)."""
    prox_sgd_run(params, grads, momentum_buffers, float(lr), momentum, nesterov, weight_decay,
                 l1, l2, maximize, group_lasso, max_norm, axis)


def prox_sgd_run(params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor],
                 step: float, momentum: float, nesterov: bool, weight_decay: float, l1: float,
                 l2: float, maximize: bool, group_lasso: float, max_norm: float | None,
                 axis: list[int] | None) -> None:
    """The implementation of ``fastreg::prox_sgd_`` with ``lr`` as a float (``step``), shared
    with the optimizer's eager fast path (which bumps the version counters the op's
    ADInplaceOrView step bumps)."""
    if not params:
        return
    staging = _Staging()
    with on_device(params[0]):
        ws = [staging.written(p) for p in params]
        gs = [as_array(g) for g in _gradients(params, grads, maximize, weight_decay)]
        bufs = [staging.written(b) for b in momentum_buffers] if momentum > 0.0 else None
        prox_sgd_(ws, gs, lr=step, l1=l1, l2=l2, momentum=momentum, nesterov=nesterov, buf=bufs)
        _constraints(ws, step, group_lasso, max_norm, axis)
    staging.write_back()


@prox_sgd_op.register_fake
def _(params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor], lr: Tensor,
      momentum: float, nesterov: bool, weight_decay: float, l1: float, l2: float,
      maximize: bool, group_lasso: float, max_norm: float | None,
      axis: list[int] | None) -> None:
    return None


@custom_op("fastreg::prox_adam_", mutates_args=("params", "exp_avgs", "exp_avg_sqs", "steps"))
def prox_adam_op(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                 exp_avg_sqs: list[Tensor], steps: list[Tensor], lr: Tensor, beta1: float,
                 beta2: float, eps: float, weight_decay: float, l1: float, l2: float,
                 penalty_metric: str, maximize: bool, group_lasso: float,
                 max_norm: float | None, axis: list[int] | None) -> None:
    """:func:`fastreg.prox_adam_` on the list; ``steps`` (0-d tensors, as ``torch.optim``'s
    ``state["step"]``) count this step, and the tensors that share a count go in one call."""
    prox_adam_run(params, grads, exp_avgs, exp_avg_sqs, steps, float(lr), beta1, beta2, eps,
                  weight_decay, l1, l2, penalty_metric, maximize, group_lasso, max_norm, axis)


def prox_adam_run(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                  exp_avg_sqs: list[Tensor], steps: list[Tensor], step_size: float,
                  beta1: float, beta2: float, eps: float, weight_decay: float, l1: float,
                  l2: float, penalty_metric: str, maximize: bool, group_lasso: float,
                  max_norm: float | None, axis: list[int] | None) -> None:
    """The implementation of ``fastreg::prox_adam_`` with ``lr`` as a float (``step_size``),
    shared with the optimizer's eager fast path."""
    if not params:
        return
    counts = [int(s) + 1 for s in steps]
    staging = _Staging()
    with on_device(params[0]):
        ws = [staging.written(p) for p in params]
        gs = [as_array(g) for g in _gradients(params, grads, maximize, 0.0)]
        ms = [staging.written(m) for m in exp_avgs]
        vs = [staging.written(v) for v in exp_avg_sqs]
        by_count: dict[int, list[int]] = {}
        for k, count in enumerate(counts):
            by_count.setdefault(count, []).append(k)
        for count, members in by_count.items():
            prox_adam_([ws[k] for k in members], [gs[k] for k in members],
                       [ms[k] for k in members], [vs[k] for k in members], step=count,
                       lr=step_size, beta1=beta1, beta2=beta2, eps=eps, l1=l1, l2=l2,
                       weight_decay=weight_decay, penalty_metric=penalty_metric)
        _constraints(ws, step_size, group_lasso, max_norm, axis)
    staging.write_back()
    for s in steps:
        s.add_(1)


@prox_adam_op.register_fake
def _(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
      exp_avg_sqs: list[Tensor], steps: list[Tensor], lr: Tensor, beta1: float, beta2: float,
      eps: float, weight_decay: float, l1: float, l2: float, penalty_metric: str,
      maximize: bool, group_lasso: float, max_norm: float | None,
      axis: list[int] | None) -> None:
    return None
