"""Benchmark cases of DropConnect (issue 5): forward + backward, per batch and per example.

A contender is one training step of the layer: the forward, then the backward (``dx``, ``dW``,
``db``), each allocating its outputs as a user's call does.

Peers: ``torch`` is PyTorch on CPU tensors sharing the NumPy buffers, with a materialized Bernoulli
mask and autograd for the backward: per example a ``(B, K, N)`` mask and masked weight with
``einsum("bk,bkn->bn")`` (what one writes without a fused kernel, and what fastreg never
allocates); per batch a ``(K, N)`` masked weight and ``linear``. The limit ``gemm`` is the three
bare GEMMs of the same shape (``x @ W``, ``dy @ W.T``, ``x.T @ dy``) through NumPy's BLAS: the
work a dense layer's step cannot avoid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..dropconnect import dropconnect, dropconnect_backward
from .cases import BLAS_SETTLE_SECONDS, Case, torch_or_none

_P = 0.5
_B, _K, _N = 128, 1024, 1024


def _inputs(dtype: Any) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((_B, _K)).astype(dtype)
    W = (rng.standard_normal((_K, _N)) / np.sqrt(_K)).astype(dtype)
    b = rng.standard_normal(_N).astype(dtype)
    dy = rng.standard_normal((_B, _N)).astype(dtype)
    return x, W, b, dy


def _gemm_limit(x: np.ndarray, W: np.ndarray, dy: np.ndarray) -> Callable[[], Any]:
    def gemms() -> Any:
        return x @ W, dy @ W.T, x.T @ dy

    return gemms


def _torch_step(x, W, b, dy, per_example: bool) -> Callable[[], Any] | None:
    torch = torch_or_none()
    if torch is None:
        return None
    xt = torch.from_numpy(x).requires_grad_()
    Wt = torch.from_numpy(W).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    dyt = torch.from_numpy(dy)
    keep, scale = 1.0 - _P, 1.0 / (1.0 - _P)

    def step() -> Any:
        for t in (xt, Wt, bt):
            t.grad = None
        shape = (x.shape[0], *W.shape) if per_example else W.shape
        mask = torch.empty(shape, dtype=Wt.dtype).bernoulli_(keep)
        masked = Wt * mask * scale
        if per_example:
            y = torch.einsum("bk,bkn->bn", xt, masked) + bt
        else:
            y = torch.nn.functional.linear(xt, masked.T, bt)
        y.backward(dyt)
        return y, xt.grad, Wt.grad, bt.grad

    return step


def _setup(per_example: bool, dtype: Any) -> Callable[[str], dict[str, Callable[[], Any]]]:
    def setup(backend: str) -> dict[str, Callable[[], Any]]:
        x, W, b, dy = _inputs(dtype)
        kw = dict(p=_P, seed=7, per_example=per_example, backend=backend)

        def step() -> Any:
            y = dropconnect(x, W, b, **kw)
            return y, dropconnect_backward(dy, x, W, **kw)

        contenders: dict[str, Callable[[], Any]] = {"fastreg": step}
        if (peer := _torch_step(x, W, b, dy, per_example)) is not None:
            contenders["torch"] = peer
        contenders["gemm"] = _gemm_limit(x, W, dy)
        return contenders

    return setup


def _case(name: str, per_example: bool, goals: dict[str, float], **fields: Any) -> Case:
    return Case(
        name=name,
        family="dropconnect",
        setup=_setup(per_example, np.float32),
        limit="gemm",
        peers=("torch",),
        flops=3 * 2 * _B * _K * _N,  # the three GEMMs' multiply-adds
        settle=BLAS_SETTLE_SECONDS,  # the gemm limit and fastreg call NumPy's BLAS
        goals=goals,
        **fields,
    )


CASES: list[Case] = [
    _case("dropconnect per-batch fwd+bwd 128x1024->1024 f32", False, {"gemm": 1.5}),
    # The PyTorch peer moves ~2 GB per step (seconds each): not in --quick.
    _case(
        "dropconnect per-example fwd+bwd 128x1024->1024 f32", True, {"torch": 20.0}, quick=False
    ),
]
