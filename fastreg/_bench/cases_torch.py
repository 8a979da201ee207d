"""Benchmark cases of the PyTorch integration (issues 8, 15): one training step of a small MLP.

The model is the one of ``examples/digits_mlp.py`` with a plain ``nn.Linear`` head on both
sides: 64 inputs (8x8 digits) -> 256 -> 256 (ReLU, dropout p=0.2) -> 10 classes, a batch of 512,
cross-entropy loss. A contender is one full step: ``zero_grad``, forward, backward, optimizer
step, on CPU float32 tensors.

- ``fastreg``: ``fastreg.torch.DenseDropout`` x2 (GEMM + one fused bias/ReLU/dropout pass; the
  backward regenerates the mask) + ``nn.Linear`` head, ``fastreg.torch.ProxSGD(momentum,
  l2=weight_decay/2)`` (the proximal counterpart of the peer's decay: one pass, no extra term).
- ``torch`` (the peer): ``nn.Linear`` + ``nn.ReLU`` + ``nn.Dropout`` x2 + ``nn.Linear``,
  ``torch.optim.SGD(momentum, weight_decay)``: what a PyTorch user writes.
- ``gemm`` (the limit): the step's GEMMs alone (forward, ``dx`` and ``dW`` of each layer) through
  NumPy's BLAS, as the fastreg kernels call them: what no implementation of the step avoids.

Both models start from the same weights (``torch.manual_seed``) and train on the same batch;
each contender keeps training its own copy from round to round.

Two more cases (not in ``--quick``: compiling takes seconds) time a step of a model with two
``DenseDropout`` layers, a ``DropConnectLinear`` head and ``ProxSGD(l1, max_norm)`` compiled with
``torch.compile(fullgraph=True)`` against the same step in eager mode (issue 15: the compiled step
is no slower), at the digits example's size (batch 64, 64 -> 256 -> 256 -> 10) and at issue 14's
MLP size (512x784 -> 1024 -> 1024 -> 10). Both also time the plain-PyTorch model compiled and
eager: at the digits size a step is ~1 ms of per-op overhead, and what compiling adds there
(guards, AOTAutograd's runtime wrappers) is PyTorch's cost as much as fastreg's.

Without PyTorch the table has no case of this family.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _backends
from .cases import BLAS_SETTLE_SECONDS, Case

_BATCH, _IN, _HIDDEN, _CLASSES = 512, 64, 256, 10
_P, _LR, _MOMENTUM, _WEIGHT_DECAY = 0.2, 0.01, 0.9, 1e-4


def _layer_shapes(n_in: int = _IN, hidden: int = _HIDDEN,
                  classes: int = _CLASSES) -> list[tuple[int, int]]:
    """``(in, out)`` of the three layers of an ``n_in -> hidden -> hidden -> classes`` MLP."""
    return [(n_in, hidden), (hidden, hidden), (hidden, classes)]


def _step_flops(batch: int, shapes: list[tuple[int, int]]) -> int:
    """The multiply-adds of a step's GEMMs: forward, ``dx`` and ``dW`` of each layer."""
    return 3 * 2 * batch * sum(k * n for k, n in shapes)


def _plain_mlp(n_in: int, hidden: int, classes: int) -> Any:
    """What a PyTorch user writes: ``nn.Linear`` + ``nn.ReLU`` + ``nn.Dropout`` x2 + a head."""
    from torch import nn

    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(_P),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(_P),
                         nn.Linear(hidden, classes))


def _gemm_limit(batch: int, shapes: list[tuple[int, int]]) -> Callable[[], Any]:
    """The step's GEMMs at ``batch`` rows (forward, ``dx`` and ``dW`` of each layer ``(in,
    out)`` of ``shapes``) in NumPy."""
    rng = np.random.default_rng(0)
    layers = []
    for k, n in shapes:
        x = rng.standard_normal((batch, k), dtype=np.float32)
        W = rng.standard_normal((k, n), dtype=np.float32)
        dz = rng.standard_normal((batch, n), dtype=np.float32)
        layers.append((x, W, dz))

    def gemms() -> Any:
        return [(x @ W, dz @ W.T, x.T @ dz) for x, W, dz in layers]

    return gemms


def _train_step(model: Any, opt: Any, x: Any, target: Any,
                backend: str | None = None) -> Callable[[], Any]:
    """One full step (``zero_grad``, forward, cross-entropy, backward, optimizer step), under
    fastreg's ``backend`` when given."""
    import contextlib

    from torch import nn

    def run() -> Any:
        scope = contextlib.nullcontext() if backend is None else _backends.use_backend(backend)
        with scope:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), target)
            loss.backward()
            opt.step()
        return loss

    return run


def _setup(backend: str) -> dict[str, Callable[[], Any]]:
    import torch
    from torch import nn

    from .. import torch as ft

    torch.manual_seed(0)
    x = torch.randn(_BATCH, _IN)
    target = torch.randint(0, _CLASSES, (_BATCH,))
    (k0, h), _, (_, c) = _layer_shapes()

    torch.manual_seed(1)
    ours = nn.Sequential(ft.DenseDropout(k0, h, p=_P), ft.DenseDropout(h, h, p=_P),
                         nn.Linear(h, c))
    torch.manual_seed(1)
    theirs = _plain_mlp(k0, h, c)
    our_opt = ft.ProxSGD(ours.parameters(), lr=_LR, momentum=_MOMENTUM, l2=_WEIGHT_DECAY / 2)
    their_opt = torch.optim.SGD(theirs.parameters(), lr=_LR, momentum=_MOMENTUM,
                                weight_decay=_WEIGHT_DECAY)

    return {"fastreg": _train_step(ours, our_opt, x, target, backend),
            "torch": _train_step(theirs, their_opt, x, target),
            "gemm": _gemm_limit(_BATCH, _layer_shapes())}


#: The digits example's model and step (examples/digits_mlp.py): batch 64, 64 -> 256 -> 256 -> 10.
_DIGITS = (64, _IN, _HIDDEN, _CLASSES)
#: Issue 14's MLP (the fresh-process case of :mod:`.processes`): 512x784 -> 1024 -> 1024 -> 10.
_MNIST = (512, 784, 1024, _CLASSES)


def _compiled_setup(shape: tuple[int, int, int, int]) -> Callable[[str], dict[str, Any]]:
    """Contenders for one step of the ``shape = (batch, in, hidden, classes)`` model with two
    ``DenseDropout`` layers, a ``DropConnectLinear`` head and ``ProxSGD(l1, max_norm)``:
    ``fastreg``: the model under ``torch.compile(fullgraph=True)`` (inductor), compiled here in
    setup (warm-up steps, not timed); ``fastreg eager``: the same model in eager mode (the eager
    fast path); ``torch compiled`` and ``torch eager``: the plain-PyTorch model of the example
    (``nn.Linear`` + ``nn.ReLU`` + ``nn.Dropout``, ``torch.optim.SGD``) compiled and eager, so the
    table shows what compiling costs PyTorch itself at this size; ``gemm``: the step's GEMMs."""
    batch, n_in, hidden, classes = shape

    def setup(backend: str) -> dict[str, Any]:
        import torch
        from torch import nn

        from .. import torch as ft

        torch.manual_seed(0)
        x = torch.randn(batch, n_in)
        target = torch.randint(0, classes, (batch,))

        def ours() -> tuple[Any, Any]:
            torch.manual_seed(1)
            model = nn.Sequential(ft.DenseDropout(n_in, hidden, p=_P),
                                  ft.DenseDropout(hidden, hidden, p=_P),
                                  ft.DropConnectLinear(hidden, classes, p=0.1))
            opt = ft.ProxSGD(model.parameters(), lr=0.05, momentum=_MOMENTUM, l1=1e-5,
                             max_norm=3.0, axis=1)
            return model, opt

        def theirs() -> tuple[Any, Any]:
            torch.manual_seed(1)
            model = _plain_mlp(n_in, hidden, classes)
            return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=_MOMENTUM)

        steps = {}
        for label, build, scope in (("fastreg", ours, backend), ("torch compiled", theirs, None)):
            model, opt = build()
            steps[label] = _train_step(torch.compile(model, fullgraph=True), opt, x, target,
                                       scope)
            for _ in range(3):  # compiles the forward and backward graphs (seconds), once
                steps[label]()
        steps["fastreg eager"] = _train_step(*ours(), x, target, backend)
        steps["torch eager"] = _train_step(*theirs(), x, target)
        steps["gemm"] = _gemm_limit(batch, _layer_shapes(n_in, hidden, classes))
        return steps

    return setup


def _compiled_case(shape: tuple[int, int, int, int], label: str) -> Case:
    batch, n_in, hidden, classes = shape
    return Case(
        name=f"torch.compile'd {label} train step {batch}x{n_in}->{hidden}->{hidden}->{classes}"
        " f32 vs eager",
        family="torch",
        setup=_compiled_setup(shape),
        limit="gemm",
        peers=("fastreg eager", "torch compiled", "torch eager"),
        flops=_step_flops(batch, _layer_shapes(n_in, hidden, classes)),
        quick=False,
        goals={"fastreg eager": 1.0},  # issue 15: compiled no slower than eager
        settle=BLAS_SETTLE_SECONDS,
    )


CASES: list[Case] = (
    [
        Case(
            name=f"torch MLP train step {_BATCH}x{_IN}->{_HIDDEN}->{_HIDDEN}->{_CLASSES} f32",
            family="torch",
            setup=_setup,
            limit="gemm",
            peers=("torch",),
            flops=_step_flops(_BATCH, _layer_shapes()),
            goals={"torch": 1.5},
            settle=BLAS_SETTLE_SECONDS,  # the gemm limit calls NumPy's BLAS
        ),
        _compiled_case(_DIGITS, "digits MLP"),
        _compiled_case(_MNIST, "MLP"),
    ]
    if importlib.util.find_spec("torch") is not None
    else []
)
