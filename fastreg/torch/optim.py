"""Proximal optimizers: ``ProxSGD`` and ``ProxAdamW``, ``torch.optim`` drop-ins with L1/L2 prox.

Each step is one ``fastreg::prox_sgd_`` / ``fastreg::prox_adam_`` custom op per parameter group
and device (all the group's parameters in one list call), so ``torch.compile(optimizer.step)``
traces it as one node. The state and parameter-group keys are ``torch.optim.SGD``'s and
``AdamW``'s (``momentum_buffer``; ``step``, ``exp_avg``, ``exp_avg_sq``), so their state dicts
load: fastreg's own keys (``l1``, ``l2``, ...) then take this optimizer's defaults.
``DistributedDataParallel`` averages gradients during ``backward()``, so ``step()`` applies the
prox to the averaged gradient, identically on every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .. import _validate
from ..prox import PENALTY_METRICS
from ._eager import eager
from .prox_ops import prox_adam_op, prox_adam_run, prox_sgd_op, prox_sgd_run

__all__ = ["ProxAdamW", "ProxSGD"]


def _check_lr(lr: Any) -> Any:
    """A float >= 0, or a one-element float tensor holding one (kept as the tensor)."""
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1 or not lr.is_floating_point():
            raise TypeError(f"lr must be a float or a one-element float tensor, got a "
                            f"{lr.dtype} tensor of shape {tuple(lr.shape)}")
        _validate.check_nonnegative(float(lr), "lr")
        return lr
    return _validate.check_nonnegative(lr, "lr")


def _lr_tensor(lr: Any) -> torch.Tensor:
    if isinstance(lr, torch.Tensor):
        return lr.reshape(())
    return torch.tensor(float(lr), dtype=torch.float64)


def _update(op: Any, run: Any, lists: tuple[list[torch.Tensor], ...], lr: Any,
            options: tuple[Any, ...], mutated: list[torch.Tensor]) -> None:
    """One group's update ``op(*lists, lr, *options)``: the custom op, or in plain eager mode
    (``_eager.eager``) its implementation ``run`` called directly with ``lr`` as a float (the
    op reads it as ``float(lr)``), after bumping the version counters of the ``mutated``
    tensors as the op's ADInplaceOrView step does (autograd still refuses graphs that saved
    the old values)."""
    if eager(*(t for column in lists for t in column), lr):
        torch.autograd.graph.increment_version(mutated)
        run(*lists, float(lr), *options)
    else:
        op(*lists, _lr_tensor(lr), *options)


def _check_constraints(group_lasso: float, max_norm: float | None, axis: Any) -> None:
    _validate.check_nonnegative(group_lasso, "group_lasso")
    if max_norm is not None:
        _validate.check_nonnegative(max_norm, "max_norm")
    _validate.check_axes(axis, 64)  # types and repeats now; the range per parameter at step


def _axis_list(axis: Any) -> list[int] | None:
    if axis is None:
        return None
    return [axis] if isinstance(axis, int) else list(axis)


def _refuse(group: dict[str, Any], name: str, supported: Any, why: str) -> None:
    """ValueError when a torch.optim option is set to what fastreg does not do."""
    value = group.get(name, supported)
    if value not in (None, supported) and bool(value) != bool(supported):
        raise ValueError(f"{name}={value!r} is not supported by fastreg.torch: {why}")


def _check_torch_options(group: dict[str, Any]) -> None:
    _refuse(group, "fused", False, "the update is already one fused pass per parameter list; "
            "use fused=None")
    _refuse(group, "differentiable", False, "the update is not differentiable")
    _refuse(group, "capturable", False, "the update reads lr and step on the host")


def _by_device(params: Iterable[torch.Tensor]) -> dict[torch.device, list[torch.Tensor]]:
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise TypeError("fastreg.torch optimizers take dense gradients, got a sparse grad")
        groups.setdefault(p.device, []).append(p)
    return groups


def _run_closure(closure: Callable[[], Any] | None) -> Any:
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class _ProxOptimizer(torch.optim.Optimizer):
    def __setstate__(self, state: dict[str, Any]) -> None:
        """After ``load_state_dict`` (or unpickling): keys a ``torch.optim`` checkpoint lacks
        take this optimizer's defaults."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)


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
    maximize : bool, as ``torch.optim``: ascend (the gradient is negated first).
    foreach : None or bool, accepted for ``torch.optim`` compatibility: a group's parameters are
        always updated in one list call. fused=True, differentiable=True (and capturable=True)
        raise ValueError.
"""


class ProxSGD(_ProxOptimizer):
    """SGD with a proximal L1/L2 step (``torch.optim.SGD`` when ``l1 = l2 = 0``), over
    :func:`fastreg.prox_sgd_`: all parameters of a group in one list call.

    Per step, with ``g = grad + weight_decay * w`` (``torch.optim.SGD``'s coupled decay; one
    extra temporary when ``weight_decay > 0``): ``buf = momentum * buf + g``, ``d = buf`` (or
    ``g + momentum * buf`` with Nesterov), then ``w = S(w - lr * d, lr * l1) / (1 + 2 * lr *
    l2)`` with ``S(v, t) = sign(v) * max(|v| - t, 0)``: the prox of Keras's penalty ``l1 *
    sum|w| + l2 * sum w**2``, exact zeros for L1. ``l2 = weight_decay / 2`` is the proximal
    counterpart of ``weight_decay`` (no extra pass). Then group lasso and max-norm, if set.
    The momentum buffers live in ``self.state[p]["momentum_buffer"]`` (``state_dict``
    round-trips, and ``torch.optim.SGD``'s loads); every option can be set per parameter group.
    float16/bfloat16 parameters update in float32, rounded once per step.

    Parameters
    ----------
    params : iterable of parameters or of dicts (parameter groups)
    lr : float >= 0 or a one-element tensor (a compiled step then does not specialize on it)
    momentum : float >= 0; nesterov : bool (needs momentum > 0)
    dampening : 0 only (``torch.optim.SGD``'s option, for state-dict compatibility)
    weight_decay, l1, l2 : floats >= 0
    """ + _CONSTRAINTS_DOC + """
    Raises
    ------
    ValueError: negative hyper-parameters, nesterov without momentum, dampening != 0,
        fused=True; at ``step``, shapes or axes out of range. TypeError: sparse gradients,
        non-float parameters.

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

    def __init__(self, params: Any, lr: Any = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 *, maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None, l1: float = 0.0,
                 l2: float = 0.0, group_lasso: float = 0.0, max_norm: float | None = None,
                 axis: Any = 1) -> None:
        lr = _check_lr(lr)
        for name, value in (("momentum", momentum), ("weight_decay", weight_decay),
                            ("l1", l1), ("l2", l2)):
            _validate.check_nonnegative(value, name)
        _validate.check_momentum(momentum, _validate.check_bool(nesterov, "nesterov"), True)
        _check_constraints(group_lasso, max_norm, axis)
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov,
                    "maximize": _validate.check_bool(maximize, "maximize"), "foreach": foreach,
                    "differentiable": differentiable, "fused": fused, "l1": l1, "l2": l2,
                    "group_lasso": group_lasso, "max_norm": max_norm, "axis": axis}
        _check_sgd_group(defaults)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = _run_closure(closure)
        for group in self.param_groups:
            _check_sgd_group(group)
            momentum = group["momentum"]
            for params in _by_device(group["params"]).values():
                bufs = []
                if momentum > 0.0:
                    for p in params:
                        state = self.state[p]
                        if state.get("momentum_buffer") is None:
                            state["momentum_buffer"] = torch.zeros_like(p)
                        bufs.append(state["momentum_buffer"])
                grads = [p.grad for p in params]
                options = (momentum, group["nesterov"], group["weight_decay"], group["l1"],
                           group["l2"], group["maximize"], group["group_lasso"],
                           group["max_norm"], _axis_list(group["axis"]))
                _update(prox_sgd_op, prox_sgd_run, (params, grads, bufs), group["lr"], options,
                        params + bufs)
        return loss


def _check_sgd_group(group: dict[str, Any]) -> None:
    _check_torch_options(group)
    if group.get("dampening", 0.0) != 0.0:
        raise ValueError(f"dampening={group['dampening']!r} is not supported by "
                         "fastreg.torch.ProxSGD (only 0, torch.optim.SGD's default)")


class ProxAdamW(_ProxOptimizer):
    """AdamW with a proximal L1/L2 step (``torch.optim.AdamW`` when ``l1 = l2 = 0``), over
    :func:`fastreg.prox_adam_`: a group's parameters in one list call.

    Per step (Kingma & Ba moments, bias-corrected): ``psi = sqrt(v_hat) + eps``,
    ``z = w - lr * m_hat / psi - lr * weight_decay * w`` (decoupled decay), then the prox of
    ``lr * (l1 * sum|w| + l2 * sum w**2)``, exact zeros for L1: with
    ``penalty_metric="decoupled"`` (the default, docs/contract/ops.md)
    ``w = S(z, lr * l1) / (1 + 2 * lr * l2)``, outside the Adam metric like the decoupled decay;
    with ``penalty_metric="adam"``
    ``w = S(z, lr * l1 / psi) / (1 + 2 * lr * l2 / psi)`` (a coordinate whose gradient is always
    zero has ``psi = eps`` there and is zeroed at once). Then group lasso (a Euclidean prox with
    ``t = lr * group_lasso``) and max-norm, if set. State per parameter, as
    ``torch.optim.AdamW`` names it (its state dicts load): ``step`` (a float32 0-d tensor),
    ``exp_avg``, ``exp_avg_sq``. float16/bfloat16 parameters update in float32, rounded once.

    Parameters
    ----------
    params : iterable of parameters or of dicts (parameter groups)
    lr : float >= 0 or a one-element tensor; betas : (beta1, beta2) in [0, 1); eps : float >= 0
    weight_decay : float >= 0, decoupled (default 1e-2, as ``torch.optim.AdamW``)
    amsgrad : False only (``torch.optim``'s option, for state-dict compatibility)
    l1, l2 : floats >= 0; penalty_metric : "decoupled" (default) or "adam"
    """ + _CONSTRAINTS_DOC + """
    Raises
    ------
    ValueError: negative hyper-parameters, betas outside [0, 1), amsgrad=True, fused=True, an
        unknown penalty_metric; at ``step``, axes out of range. TypeError: sparse gradients,
        non-float parameters.

    Example
    -------
    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, 1e-4], dtype=torch.float64))
    >>> opt = ProxAdamW([w], lr=0.1, l1=0.1, weight_decay=0.0)
    >>> w.grad = torch.ones(2, dtype=torch.float64)
    >>> opt.step()
    >>> [round(v, 6) for v in w.tolist()]
    [0.89, 0.0]
    """

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None, l1: float = 0.0,
                 l2: float = 0.0, penalty_metric: str = "decoupled", group_lasso: float = 0.0,
                 max_norm: float | None = None, axis: Any = 1) -> None:
        lr = _check_lr(lr)
        for name, value in (("eps", eps), ("weight_decay", weight_decay), ("l1", l1),
                            ("l2", l2)):
            _validate.check_nonnegative(value, name)
        beta1, beta2 = betas
        _validate.check_probability(beta1, "beta1", allow_one=False)
        _validate.check_probability(beta2, "beta2", allow_one=False)
        _validate.check_choice(penalty_metric, "penalty_metric", PENALTY_METRICS)
        _check_constraints(group_lasso, max_norm, axis)
        defaults = {"lr": lr, "betas": (beta1, beta2), "eps": eps,
                    "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "maximize": _validate.check_bool(maximize, "maximize"), "foreach": foreach,
                    "capturable": capturable, "differentiable": differentiable, "fused": fused,
                    "l1": l1, "l2": l2, "penalty_metric": penalty_metric,
                    "group_lasso": group_lasso, "max_norm": max_norm, "axis": axis}
        _check_adam_group(defaults)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = _run_closure(closure)
        for group in self.param_groups:
            _check_adam_group(group)
            beta1, beta2 = group["betas"]
            for params in _by_device(group["params"]).values():
                states = []
                for p in params:
                    state = self.state[p]
                    if "step" not in state:
                        state["step"] = torch.zeros((), dtype=torch.float32)
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                    elif not isinstance(state["step"], torch.Tensor):  # an int (fastreg 0.1)
                        state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32)
                    states.append(state)
                grads = [p.grad for p in params]
                ms = [s["exp_avg"] for s in states]
                vs = [s["exp_avg_sq"] for s in states]
                counts = [s["step"] for s in states]
                options = (beta1, beta2, group["eps"], group["weight_decay"], group["l1"],
                           group["l2"], group["penalty_metric"], group["maximize"],
                           group["group_lasso"], group["max_norm"], _axis_list(group["axis"]))
                _update(prox_adam_op, prox_adam_run, (params, grads, ms, vs, counts),
                        group["lr"], options, params + ms + vs + counts)
        return loss


def _check_adam_group(group: dict[str, Any]) -> None:
    _check_torch_options(group)
    _refuse(group, "amsgrad", False, "the prox step has no AMSGrad variant")
    _refuse(group, "decoupled_weight_decay", True, "ProxAdamW's decay is decoupled (AdamW)")
