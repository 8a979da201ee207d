"""Benchmark cases of the proximal updates (issue 4): prox-SGD, with momentum, Adam, and a list.

Every contender updates its own copy of the weights in place, as an optimizer step does; values
drift from round to round alike for all of them. Peers: ``torch`` is ``torch.optim.SGD(
weight_decay=...)`` / ``torch.optim.AdamW`` stepping CPU tensors (its default implementation:
``foreach`` is only the default for CUDA tensors), which apply L2 as a gradient term and have no
L1; ``numpy`` is the unfused NumPy formula a user writes (a temporary per operation);
``per_tensor`` (the list case) calls the fastreg op once per tensor. The limits are parallel
in-place kernels that read and write the same bytes as the op (``copy``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..prox import prox_adam_, prox_sgd_
from .cases import Case, torch_or_none
from .limits import states_update_kernel

_N = 1 << 24  # "16M" float32 elements: 64 MB per array
_LR, _L1, _L2, _MOMENTUM, _WD = 1e-3, 1e-4, 1e-4, 0.9, 1e-2
#: The list case: 100 dense layers of a small MLP, kernel (64, 64) and bias (64,) each.
_LIST_SHAPES = [(64, 64), (64,)] * 100


def _arrays(shape: Any, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(count)]


def _torch_params(torch: Any, ws: list[np.ndarray], gs: list[np.ndarray]) -> list[Any]:
    params = []
    for w, g in zip(ws, gs, strict=True):
        p = torch.nn.Parameter(torch.from_numpy(w.copy()))
        p.grad = torch.from_numpy(g)
        params.append(p)
    return params


def _numpy_prox_sgd(w: np.ndarray, d: np.ndarray) -> None:
    v = w - np.float32(_LR) * d
    w[...] = np.sign(v) * np.maximum(np.abs(v) - np.float32(_LR * _L1), 0) / np.float32(
        1 + 2 * _LR * _L2
    )


def _sgd_setup(momentum: bool) -> Callable[[str], dict[str, Callable[[], Any]]]:
    def setup(backend: str) -> dict[str, Callable[[], Any]]:
        w, g = _arrays(_N, 2)
        mu = _MOMENTUM if momentum else 0.0
        buf = np.zeros_like(w) if momentum else None
        contenders: dict[str, Callable[[], Any]] = {
            "fastreg": lambda: prox_sgd_(
                w, g, lr=_LR, l1=_L1, l2=_L2, momentum=mu, buf=buf, backend=backend
            ),
        }
        if (torch := torch_or_none()) is not None:
            opt = torch.optim.SGD(
                _torch_params(torch, [w], [g]), lr=_LR, momentum=mu, weight_decay=_WD
            )
            contenders["torch"] = opt.step
        w_np, buf_np = w.copy(), np.zeros_like(w)

        def numpy_step() -> None:
            if momentum:
                buf_np[...] = np.float32(mu) * buf_np + g
                _numpy_prox_sgd(w_np, buf_np)
            else:
                _numpy_prox_sgd(w_np, g)

        contenders["numpy"] = numpy_step
        targets = [w.copy() for _ in range(2 if momentum else 1)]
        contenders["copy"] = lambda: states_update_kernel(targets, g)
        return contenders

    return setup


def _adam_setup(backend: str) -> dict[str, Callable[[], Any]]:
    w, g = _arrays(_N, 2)
    m, v = np.zeros_like(w), np.zeros_like(w)
    steps = itertools.count(1)
    contenders: dict[str, Callable[[], Any]] = {
        "fastreg": lambda: prox_adam_(
            w, g, m, v, step=next(steps), lr=_LR, weight_decay=_WD, l1=_L1, backend=backend
        ),
    }
    if (torch := torch_or_none()) is not None:
        opt = torch.optim.AdamW(_torch_params(torch, [w], [g]), lr=_LR, weight_decay=_WD)
        contenders["torch"] = opt.step
    w_np, m_np, v_np = w.copy(), np.zeros_like(w), np.zeros_like(w)
    np_steps = itertools.count(1)

    def numpy_step() -> None:
        t = next(np_steps)
        m_np[...] = np.float32(0.9) * m_np + np.float32(0.1) * g
        v_np[...] = np.float32(0.999) * v_np + np.float32(0.001) * g * g
        psi = np.sqrt(v_np / np.float32(1 - 0.999**t)) + np.float32(1e-8)
        m_hat = m_np / np.float32(1 - 0.9**t)
        z = w_np * np.float32(1 - _LR * _WD) - np.float32(_LR) * m_hat / psi
        w_np[...] = np.sign(z) * np.maximum(np.abs(z) - np.float32(_LR * _L1) / psi, 0)

    contenders["numpy"] = numpy_step
    targets = [w.copy() for _ in range(3)]
    contenders["copy"] = lambda: states_update_kernel(targets, g)
    return contenders


def _list_setup(backend: str) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal(s, dtype=np.float32) for s in _LIST_SHAPES]
    gs = [rng.standard_normal(s, dtype=np.float32) for s in _LIST_SHAPES]
    ws_each = [w.copy() for w in ws]

    def per_tensor() -> None:
        for w, g in zip(ws_each, gs, strict=True):
            prox_sgd_(w, g, lr=_LR, l1=_L1, l2=_L2, backend=backend)

    contenders: dict[str, Callable[[], Any]] = {
        "fastreg": lambda: prox_sgd_(ws, gs, lr=_LR, l1=_L1, l2=_L2, backend=backend),
        "per_tensor": per_tensor,
    }
    if (torch := torch_or_none()) is not None:
        opt = torch.optim.SGD(_torch_params(torch, ws, gs), lr=_LR, weight_decay=_WD)
        contenders["torch"] = opt.step
    flat_w = np.concatenate([w.ravel() for w in ws])
    flat_g = np.concatenate([g.ravel() for g in gs])
    contenders["copy"] = lambda: states_update_kernel([flat_w], flat_g)
    return contenders


_F32 = 4
_LIST_ELEMENTS = sum(int(np.prod(s)) for s in _LIST_SHAPES)

CASES: list[Case] = [
    Case(
        name="prox_sgd_ 16M f32",
        family="prox",
        setup=_sgd_setup(momentum=False),
        limit="copy",
        peers=("torch", "numpy"),
        bytes_moved=3 * _N * _F32,  # read w, grad; write w
        goals={"torch": 5.0, "copy": 1 / 0.9},
    ),
    Case(
        name="prox_sgd_ momentum 16M f32",
        family="prox",
        setup=_sgd_setup(momentum=True),
        limit="copy",
        peers=("torch", "numpy"),
        bytes_moved=5 * _N * _F32,  # read w, grad, buf; write w, buf
        quick=False,
        # Issue 4's 5x-over-PyTorch goal is for the plain step (the case above); this one is
        # held to the bandwidth goal only: it is memory-bound (~95% of the copy) and PyTorch's
        # momentum step moves the same buffers.
        goals={"copy": 1 / 0.9},
    ),
    Case(
        name="prox_adam_ 16M f32",
        family="prox",
        setup=_adam_setup,
        limit="copy",
        peers=("torch", "numpy"),
        bytes_moved=7 * _N * _F32,  # read w, grad, m, v; write w, m, v
        quick=False,
        goals={"torch": 3.0},
    ),
    Case(
        name="prox_sgd_ list 200 small f32",
        family="prox",
        setup=_list_setup,
        limit="copy",
        peers=("per_tensor", "torch"),
        bytes_moved=3 * _LIST_ELEMENTS * _F32,
        goals={"per_tensor": 3.0},
    ),
]
