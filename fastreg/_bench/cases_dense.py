"""Benchmark cases of the fused dense layer (issue 3): relu + dropout, forward and forward+backward.

Shapes: the classic MNIST case-study MLP layer (batch 128, 784 -> 500) and 4096x1024 -> 1024,
float32, ``p = 0.5``, with a bias. Every contender allocates its outputs, as a user's call does.

Peers: ``torch`` is PyTorch on CPU tensors sharing the NumPy buffers,
``F.dropout(F.relu(F.linear(x, W.T, b)))`` (the forward) and its autograd backward; ``numpy`` is
the unfused NumPy a user writes without fastreg: GEMM, bias, ``maximum``, a uniform draw from
``np.random.Generator``, compare and multiply (the backward multiplies by the stored mask). The
limit ``gemm`` is the bare GEMM of the same shape through NumPy's BLAS (``x @ W``; for
forward+backward the three GEMMs ``x @ W``, ``dz @ W.T``, ``x.T @ dz``): the work a dense layer
cannot avoid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..dense import dense_dropout, dense_dropout_backward
from .cases import BLAS_SETTLE_SECONDS, Case, torch_or_none

_P = 0.5
_SEED = 7
Contenders = dict[str, Callable[[], Any]]


def _inputs(m: int, k: int, n: int, dtype: Any) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k)).astype(dtype)
    W = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    dy = rng.standard_normal((m, n)).astype(dtype)
    return x, W, b, dy


def _numpy_forward(x, W, b, rng) -> tuple[np.ndarray, np.ndarray]:
    scale = x.dtype.type(1.0 / (1.0 - _P))
    y = x @ W
    y += b
    np.maximum(y, 0, out=y)
    keep = rng.random(y.shape, dtype=x.dtype) >= _P
    y *= keep
    y *= scale
    return y, keep


def _forward_setup(m: int, k: int, n: int, dtype: Any) -> Callable[[str], Contenders]:
    def setup(backend: str) -> Contenders:
        x, W, b, _ = _inputs(m, k, n, dtype)
        rng = np.random.default_rng(1)
        contenders: Contenders = {
            "fastreg": lambda: dense_dropout(x, W, b, p=_P, seed=_SEED, backend=backend),
        }
        if (torch := torch_or_none()) is not None:
            F = torch.nn.functional
            xt, Wt, bt = (torch.from_numpy(a) for a in (x, W, b))
            contenders["torch"] = lambda: F.dropout(F.relu(F.linear(xt, Wt.T, bt)), _P)
        contenders["numpy"] = lambda: _numpy_forward(x, W, b, rng)[0]
        contenders["gemm"] = lambda: x @ W
        return contenders

    return setup


def _training_setup(m: int, k: int, n: int, dtype: Any) -> Callable[[str], Contenders]:
    def setup(backend: str) -> Contenders:
        x, W, b, dy = _inputs(m, k, n, dtype)
        rng = np.random.default_rng(1)
        kw = dict(p=_P, seed=_SEED, backend=backend)

        def step() -> Any:
            y = dense_dropout(x, W, b, **kw)
            return y, dense_dropout_backward(dy, x, W, y, **kw)

        def numpy_step() -> Any:
            y, keep = _numpy_forward(x, W, b, rng)
            dz = dy * keep
            dz *= x.dtype.type(1.0 / (1.0 - _P))
            dz *= y > 0
            return y, dz @ W.T, x.T @ dz, dz.sum(axis=0)

        contenders: Contenders = {"fastreg": step}
        if (torch := torch_or_none()) is not None:
            F = torch.nn.functional
            xt, Wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, W, b))
            dyt = torch.from_numpy(dy)

            def torch_step() -> Any:
                for t in (xt, Wt, bt):
                    t.grad = None
                y = F.dropout(F.relu(F.linear(xt, Wt.T, bt)), _P)
                y.backward(dyt)
                return y, xt.grad, Wt.grad, bt.grad

            contenders["torch"] = torch_step
        contenders["numpy"] = numpy_step
        contenders["gemm"] = lambda: (x @ W, dy @ W.T, x.T @ dy)
        return contenders

    return setup


def _case(name: str, shape: tuple[int, int, int], training: bool, **fields: Any) -> Case:
    m, k, n = shape
    setup = (_training_setup if training else _forward_setup)(m, k, n, np.float32)
    gemms = 3 if training else 1
    return Case(
        name=name,
        family="dense",
        setup=setup,
        limit="gemm",
        peers=("torch", "numpy"),
        flops=gemms * 2 * m * k * n,
        settle=BLAS_SETTLE_SECONDS,  # the gemm limit and fastreg call NumPy's BLAS
        **fields,
    )


_MNIST = (128, 784, 500)
_BIG = (4096, 1024, 1024)

CASES: list[Case] = [
    _case(
        "dense_dropout relu fwd 128x784->500 f32 (MNIST)",
        _MNIST,
        False,
        goals={"gemm": 1.10, "torch": 2.0},
    ),
    # fwd+bwd is held to its three GEMMs (issue 14): the earlier "2x PyTorch" goal is withdrawn,
    # PyTorch's own step being within 1.8x of those GEMMs.
    _case("dense_dropout relu fwd+bwd 128x784->500 f32 (MNIST)", _MNIST, True, goals={}),
    _case(
        "dense_dropout relu fwd 4096x1024->1024 f32",
        _BIG,
        False,
        goals={"gemm": 1.10, "torch": 2.0},
        quick=False,
    ),
    _case(
        "dense_dropout relu fwd+bwd 4096x1024->1024 f32",
        _BIG,
        True,
        goals={"gemm": 1.10},
        quick=False,
    ),
]
