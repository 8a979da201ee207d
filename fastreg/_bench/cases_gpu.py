"""GPU benchmark cases (issue 18): CuPy device inputs, PyTorch CUDA and unfused CuPy as peers.

Run by ``python -m fastreg bench --backend cupy`` (cases whose ``arrays`` is ``"cupy"``); timed
by CUDA events with the L2 flushed between samples (:mod:`.device`). Sizes are past launch
overhead: 64M-element dropout (256 MB of float32 each way), an 8192x4096 -> 4096 dense layer,
per-example DropConnect 1024 -> 1024 at batch 128, optimizer steps on 64M-element tensors.

Peers: ``torch`` is PyTorch's eager CUDA op on tensors sharing the CuPy buffers (DLPack):
``F.dropout``, ``F.dropout(F.relu(F.linear(...)))`` and its autograd backward, and, for
per-example DropConnect, the materialized ``(B, K, N)`` masks with ``bmm``; for the optimizers
``torch_foreach`` and ``torch_fused`` are ``torch.optim.SGD``/``AdamW`` with ``foreach=True`` and
``fused=True``. ``cupy`` is the unfused CuPy a user writes without fastreg (a uniform draw,
compare, multiply; GEMM then elementwise passes). GEMMs are full float32 on every side (CuPy and
PyTorch default to no TF32). Limits: ``copy`` (``cudaMemcpyAsync`` of the same bytes, or a
vector kernel reading and writing the same arrays as an optimizer step) and ``gemm`` (the cuBLAS
GEMMs of the same shapes, ``cupy.matmul``).

:func:`gpu_cases` builds the table; ``tiny=True`` shrinks every size (the test suite runs the
cases so on the emulated CuPy) and ``torch_device`` places the PyTorch peers ("cpu" there).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .cases import Case, torch_or_none
from .device import copy_limit, cupy_module, traffic_limit

_P = 0.5
_SEED = 7
_LR, _L1, _L2, _MOMENTUM, _WD = 1e-3, 1e-4, 1e-4, 0.9, 1e-2
Contenders = dict[str, Callable[[], Any]]


class Sizes(NamedTuple):
    elementwise: int  # dropout and optimizer elements
    dense: tuple[int, int, int]  # (M, K, N)
    dropconnect: tuple[int, int, int]  # (B, K, N)
    list_shapes: tuple[tuple[int, ...], ...]  # the multi-tensor optimizer case


FULL = Sizes(1 << 26, (8192, 4096, 4096), (128, 1024, 1024), ((64, 64), (64,)) * 100)
TINY = Sizes(4099, (33, 17, 70), (9, 13, 70), ((5, 6), (6,)) * 3)


def _torch(device: str | None) -> Any:
    """PyTorch when it can run on ``device`` (None: the peers are absent)."""
    torch = torch_or_none()
    if torch is None or device is None:
        return None
    if device.startswith("cuda") and not torch.cuda.is_available():
        return None
    return torch


def _torch_tensor(torch: Any, a: Any, device: str) -> Any:
    """``a`` as a tensor: the same memory by DLPack on CUDA (bfloat16 crossing as int16),
    a host copy elsewhere."""
    if device.startswith("cuda"):
        if a.dtype.name == "bfloat16":
            return torch.from_dlpack(a.view("int16")).view(torch.bfloat16)
        return torch.from_dlpack(a)
    host = cupy_module().asnumpy(a)
    if host.dtype.name == "bfloat16":
        return torch.from_numpy(host.view(np.int16)).view(torch.bfloat16).to(device)
    return torch.from_numpy(host).to(device)


def _normal(shape: Any, dtype: Any, seed: int = 0, scale: float = 1.0) -> Any:
    host = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * scale
    return cupy_module().asarray(host.astype(dtype))


# ----------------------------------------------------------------------------------- dropout
def _dropout_setup(n: int, dtype: Any, device: str | None, backward: bool) -> Callable:
    def setup(backend: str) -> Contenders:
        from ..dropout import dropout, dropout_backward

        cupy = cupy_module()
        x = _normal(n, dtype)
        op = dropout_backward if backward else dropout
        contenders: Contenders = {"fastreg": lambda: op(x, _P, seed=_SEED, backend=backend)}
        if (torch := _torch(device)) is not None:
            xt = _torch_tensor(torch, x, device)
            if backward:  # autograd's backward: the stored mask times the scale
                keep = torch.rand(xt.shape, device=xt.device) >= _P
                native = torch.ops.aten.native_dropout_backward
                contenders["torch"] = lambda: native(xt, keep, 1.0 / (1.0 - _P))
            else:
                contenders["torch"] = lambda: torch.nn.functional.dropout(xt, _P, training=True)
        rng = cupy.random.default_rng(1)
        scale = np.dtype(dtype).type(1.0 / (1.0 - _P))
        contenders["cupy"] = lambda: x * (rng.random(x.shape, dtype=np.float32) >= _P) * scale
        contenders["copy"] = copy_limit(x)
        return contenders

    return setup


def _gaussian_setup(n: int, device: str | None) -> Callable:
    def setup(backend: str) -> Contenders:
        from ..dropout import gaussian_dropout

        cupy = cupy_module()
        x = _normal(n, np.float32)
        alpha = float(np.sqrt(_P / (1.0 - _P)))
        contenders: Contenders = {
            "fastreg": lambda: gaussian_dropout(x, _P, seed=_SEED, backend=backend)
        }
        if (torch := _torch(device)) is not None:
            xt = _torch_tensor(torch, x, device)
            contenders["torch"] = lambda: xt * (1.0 + alpha * torch.randn_like(xt))
        rng = cupy.random.default_rng(1)
        contenders["cupy"] = lambda: x * (1.0 + alpha * rng.standard_normal(n, dtype=np.float32))
        contenders["copy"] = copy_limit(x)
        return contenders

    return setup


# ------------------------------------------------------------------------------------- dense
def _dense_inputs(m: int, k: int, n: int) -> tuple[Any, ...]:
    return (_normal((m, k), np.float32), _normal((k, n), np.float32, 1, 1 / np.sqrt(k)),
            _normal(n, np.float32, 2), _normal((m, n), np.float32, 3))


def _cupy_dense_forward(x: Any, W: Any, b: Any, rng: Any) -> tuple[Any, Any]:
    cupy = cupy_module()
    y = cupy.matmul(x, W)
    y += b
    cupy.maximum(y, 0, out=y)
    keep = rng.random(y.shape, dtype=np.float32) >= _P
    y *= keep
    y *= np.float32(1.0 / (1.0 - _P))
    return y, keep


def _dense_setup(shape: tuple[int, int, int], device: str | None, training: bool) -> Callable:
    def setup(backend: str) -> Contenders:
        from ..dense import dense_dropout, dense_dropout_backward

        cupy = cupy_module()
        x, W, b, dy = _dense_inputs(*shape)
        kw = dict(p=_P, seed=_SEED, backend=backend)
        rng = cupy.random.default_rng(1)
        contenders: Contenders = {}
        if training:
            def step() -> Any:
                y = dense_dropout(x, W, b, **kw)
                return y, dense_dropout_backward(dy, x, W, y, **kw)

            def cupy_step() -> Any:
                y, keep = _cupy_dense_forward(x, W, b, rng)
                dz = dy * keep
                dz *= np.float32(1.0 / (1.0 - _P))
                dz *= y > 0
                return y, cupy.matmul(dz, W.T), cupy.matmul(x.T, dz), dz.sum(axis=0)

            contenders["fastreg"] = step
        else:
            contenders["fastreg"] = lambda: dense_dropout(x, W, b, **kw)
        if (torch := _torch(device)) is not None:
            F = torch.nn.functional
            xt, Wt, bt, dyt = (_torch_tensor(torch, a, device) for a in (x, W, b, dy))
            if training:
                for t in (xt, Wt, bt):
                    t.requires_grad_()

                def torch_step() -> Any:
                    for t in (xt, Wt, bt):
                        t.grad = None
                    y = F.dropout(F.relu(F.linear(xt, Wt.T, bt)), _P)
                    y.backward(dyt)
                    return y

                contenders["torch"] = torch_step
            else:
                contenders["torch"] = lambda: F.dropout(F.relu(F.linear(xt, Wt.T, bt)), _P)
        if training:
            contenders["cupy"] = cupy_step
            contenders["gemm"] = lambda: (cupy.matmul(x, W), cupy.matmul(dy, W.T),
                                          cupy.matmul(x.T, dy))
        else:
            contenders["cupy"] = lambda: _cupy_dense_forward(x, W, b, rng)[0]
            out = cupy.empty((shape[0], shape[2]), np.float32)
            contenders["gemm"] = lambda: cupy.matmul(x, W, out=out)
        return contenders

    return setup


# ------------------------------------------------------------------------------- dropconnect
def _dropconnect_setup(shape: tuple[int, int, int], device: str | None, training: bool) -> Callable:
    def setup(backend: str) -> Contenders:
        from ..dropconnect import dropconnect, dropconnect_backward

        cupy = cupy_module()
        B, K, N = shape
        x, W, b, dy = (_normal((B, K), np.float32), _normal((K, N), np.float32, 1, 1 / np.sqrt(K)),
                       _normal(N, np.float32, 2), _normal((B, N), np.float32, 3))
        kw = dict(p=_P, seed=_SEED, per_example=True, backend=backend)

        def step() -> Any:
            y = dropconnect(x, W, b, **kw)
            return (y, dropconnect_backward(dy, x, W, **kw)) if training else y

        contenders: Contenders = {"fastreg": step}
        if (torch := _torch(device)) is not None:
            xt, Wt, bt, dyt = (_torch_tensor(torch, a, device) for a in (x, W, b, dy))
            scale = 1.0 / (1.0 - _P)
            if training:
                for t in (xt, Wt, bt):
                    t.requires_grad_()

            def torch_step() -> Any:
                # The (B, K, N) masks and masked weights, materialized: what PyTorch offers.
                keep = torch.rand((B, K, N), device=xt.device) >= _P
                y = torch.bmm(xt[:, None, :], Wt * keep * scale)[:, 0] + bt
                if training:
                    for t in (xt, Wt, bt):
                        t.grad = None
                    y.backward(dyt)
                return y

            contenders["torch"] = torch_step
        if training:
            contenders["gemm"] = lambda: (cupy.matmul(x, W), cupy.matmul(dy, W.T),
                                          cupy.matmul(x.T, dy))
        else:
            contenders["gemm"] = lambda: cupy.matmul(x, W)
        return contenders

    return setup


# -------------------------------------------------------------------------------------- prox
def _torch_optimizers(torch: Any, device: str, ws: list[Any], gs: list[Any], adam: bool,
                      momentum: float = 0.0) -> Contenders:
    """``torch_foreach`` and ``torch_fused`` steps over parameters holding copies of ``ws``."""
    found: Contenders = {}
    for label, flag in (("torch_foreach", "foreach"), ("torch_fused", "fused")):
        params = []
        for w, g in zip(ws, gs, strict=True):
            p = torch.nn.Parameter(_torch_tensor(torch, w, device).clone())
            p.grad = _torch_tensor(torch, g, device)
            params.append(p)
        if adam:
            opt = torch.optim.AdamW(params, lr=_LR, weight_decay=_WD, **{flag: True})
        else:
            opt = torch.optim.SGD(params, lr=_LR, momentum=momentum, weight_decay=_WD,
                                  **{flag: True})
        found[label] = opt.step
    return found


def _sgd_setup(n: int, device: str | None, momentum: bool) -> Callable:
    def setup(backend: str) -> Contenders:
        from ..prox import prox_sgd_

        cupy = cupy_module()
        w, g = _normal(n, np.float32), _normal(n, np.float32, 1)
        mu = _MOMENTUM if momentum else 0.0
        buf = cupy.zeros_like(w) if momentum else None
        contenders: Contenders = {
            "fastreg": lambda: prox_sgd_(w, g, lr=_LR, l1=_L1, l2=_L2, momentum=mu, buf=buf,
                                         backend=backend),
        }
        if (torch := _torch(device)) is not None:
            contenders.update(_torch_optimizers(torch, device, [w], [g], False, mu))
        w_cp, buf_cp = w.copy(), cupy.zeros_like(w)
        t = np.float32

        def cupy_step() -> None:
            d = g
            if momentum:
                buf_cp[...] = t(mu) * buf_cp + g
                d = buf_cp
            v = w_cp - t(_LR) * d
            w_cp[...] = cupy.sign(v) * cupy.maximum(cupy.abs(v) - t(_LR * _L1), 0) / t(
                1 + 2 * _LR * _L2)

        contenders["cupy"] = cupy_step
        contenders["copy"] = traffic_limit([w.copy() for _ in range(2 if momentum else 1)], g)
        return contenders

    return setup


def _adam_setup(n: int, device: str | None) -> Callable:
    def setup(backend: str) -> Contenders:
        from ..prox import prox_adam_

        cupy = cupy_module()
        w, g = _normal(n, np.float32), _normal(n, np.float32, 1)
        m, v = cupy.zeros_like(w), cupy.zeros_like(w)
        steps = itertools.count(1)
        contenders: Contenders = {
            "fastreg": lambda: prox_adam_(w, g, m, v, step=next(steps), lr=_LR, weight_decay=_WD,
                                          l1=_L1, backend=backend),
        }
        if (torch := _torch(device)) is not None:
            contenders.update(_torch_optimizers(torch, device, [w], [g], True))
        w_cp, m_cp, v_cp = w.copy(), cupy.zeros_like(w), cupy.zeros_like(w)
        cp_steps = itertools.count(1)
        t = np.float32

        def cupy_step() -> None:
            k = next(cp_steps)
            m_cp[...] = t(0.9) * m_cp + t(0.1) * g
            v_cp[...] = t(0.999) * v_cp + t(0.001) * g * g
            psi = cupy.sqrt(v_cp / t(1 - 0.999**k)) + t(1e-8)
            z = w_cp * t(1 - _LR * _WD) - t(_LR) * (m_cp / t(1 - 0.9**k)) / psi
            w_cp[...] = cupy.sign(z) * cupy.maximum(cupy.abs(z) - t(_LR * _L1) / psi, 0)

        contenders["cupy"] = cupy_step
        contenders["copy"] = traffic_limit([w.copy() for _ in range(3)], g)
        return contenders

    return setup


def _list_setup(shapes: tuple[tuple[int, ...], ...], device: str | None) -> Callable:
    def setup(backend: str) -> Contenders:
        from ..prox import prox_sgd_

        cupy = cupy_module()
        ws = [_normal(s, np.float32, 2 * i) for i, s in enumerate(shapes)]
        gs = [_normal(s, np.float32, 2 * i + 1) for i, s in enumerate(shapes)]
        ws_each = [w.copy() for w in ws]

        def per_tensor() -> None:
            for w, g in zip(ws_each, gs, strict=True):
                prox_sgd_(w, g, lr=_LR, l1=_L1, l2=_L2, backend=backend)

        contenders: Contenders = {
            "fastreg": lambda: prox_sgd_(ws, gs, lr=_LR, l1=_L1, l2=_L2, backend=backend),
            "per_tensor": per_tensor,
        }
        if (torch := _torch(device)) is not None:
            contenders.update(_torch_optimizers(torch, device, ws, gs, False))
        flat_w = cupy.concatenate([w.ravel() for w in ws])
        contenders["copy"] = traffic_limit([flat_w], cupy.concatenate([g.ravel() for g in gs]))
        return contenders

    return setup


# ------------------------------------------------------------------------------------- table
def gpu_cases(tiny: bool = False, torch_device: str | None = "cuda") -> list[Case]:
    """The GPU case table (full sizes unless ``tiny``; PyTorch peers on ``torch_device``)."""
    sizes = TINY if tiny else FULL
    dev = torch_device
    n = sizes.elementwise
    label = "64M" if not tiny else str(n)
    bf16 = _bfloat16()
    f32 = 4
    m, k, nn = sizes.dense
    B, K, N = sizes.dropconnect
    list_elements = sum(int(np.prod(s)) for s in sizes.list_shapes)
    opt_peers = ("torch_foreach", "torch_fused", "cupy")
    # Issue 18: memory-bound ops at >= 80% of the copy bandwidth (time <= 1/0.8 of the copy's)
    # and faster than PyTorch's eager op.
    bandwidth = {"copy": 1 / 0.8}

    def case(name: str, family: str, setup: Callable, limit: str, peers: tuple[str, ...],
             **fields: Any) -> Case:
        return Case(name=f"gpu {name}", family=family, setup=setup, limit=limit, peers=peers,
                    arrays="cupy", **fields)

    cases = [
        case(f"dropout {label} f32", "dropout", _dropout_setup(n, np.float32, dev, False),
             "copy", ("torch", "cupy"), bytes_moved=2 * n * f32,
             goals={**bandwidth, "torch": 1.0}),
    ]
    if bf16 is not None:
        cases.append(case(f"dropout {label} bf16", "dropout", _dropout_setup(n, bf16, dev, False),
                          "copy", ("torch", "cupy"), bytes_moved=2 * n * 2,
                          goals={**bandwidth, "torch": 1.0}))
    cases += [
        case(f"dropout_backward {label} f32", "dropout", _dropout_setup(n, np.float32, dev, True),
             "copy", ("torch", "cupy"), bytes_moved=2 * n * f32,
             goals={**bandwidth, "torch": 1.0}),
        case(f"gaussian_dropout {label} f32", "dropout", _gaussian_setup(n, dev), "copy",
             ("torch", "cupy"), bytes_moved=2 * n * f32, quick=False,
             goals={**bandwidth, "torch": 1.0}),
        case(f"dense_dropout relu fwd {m}x{k}->{nn} f32", "dense",
             _dense_setup(sizes.dense, dev, False), "gemm", ("torch", "cupy"),
             flops=2 * m * k * nn, goals={"gemm": 1.10, "torch": 1.0}),
        case(f"dense_dropout relu fwd+bwd {m}x{k}->{nn} f32", "dense",
             _dense_setup(sizes.dense, dev, True), "gemm", ("torch", "cupy"),
             flops=3 * 2 * m * k * nn, goals={"torch": 1.0}),
        case(f"dropconnect per_example fwd+bwd {B}x{K}->{N} f32", "dropconnect",
             _dropconnect_setup(sizes.dropconnect, dev, True), "gemm", ("torch",),
             flops=3 * 2 * B * K * N, goals={"fastreg": 2e-3, "torch": 1.0}),
        case(f"dropconnect per_example fwd {B}x{K}->{N} f32", "dropconnect",
             _dropconnect_setup(sizes.dropconnect, dev, False), "gemm", ("torch",),
             flops=2 * B * K * N, quick=False),
        case(f"prox_sgd_ {label} f32", "prox", _sgd_setup(n, dev, False), "copy", opt_peers,
             bytes_moved=3 * n * f32, goals={**bandwidth, "torch_foreach": 1.0}),
        case(f"prox_sgd_ momentum {label} f32", "prox", _sgd_setup(n, dev, True), "copy",
             opt_peers, bytes_moved=5 * n * f32, quick=False, goals=dict(bandwidth)),
        case(f"prox_adam_ {label} f32", "prox", _adam_setup(n, dev), "copy", opt_peers,
             bytes_moved=7 * n * f32, goals={**bandwidth, "torch_fused": 1.0}),
        case(f"prox_sgd_ list {len(sizes.list_shapes)} small f32", "prox",
             _list_setup(sizes.list_shapes, dev), "copy",
             ("per_tensor", "torch_foreach", "torch_fused"), bytes_moved=3 * list_elements * f32,
             goals={"per_tensor": 3.0}),
    ]
    return cases


def _bfloat16() -> np.dtype | None:
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


CASES: list[Case] = gpu_cases()
