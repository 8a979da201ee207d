"""Benchmark cases of the dropout family (issue 2): dropout, its backward, Gaussian noise.

Every contender allocates its output, as a user's call does (``fastreg.dropout(x, p, seed=s)``,
``torch.nn.functional.dropout``); the ``copy`` limit writes into a preallocated array, so it is the
machine's bandwidth for the same bytes (read ``x``, write ``y``) and nothing more.

Peers: ``torch`` is PyTorch on CPU tensors sharing the NumPy buffers (when installed); ``numpy`` is
the unfused NumPy a user writes without fastreg: draw uniforms (or normals) with
``np.random.Generator``, compare, multiply, scale. The backward peers multiply by a stored mask,
which is what PyTorch's autograd does (``native_dropout_backward``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..dropout import dropout, dropout_backward, gaussian_dropout, gaussian_noise
from .cases import Case, torch_or_none
from .limits import copy_kernel

_P = 0.5
_STDDEV = 0.1
_M = 1 << 22  # "4M" elements: 16 MB of float32, well past the last-level cache


def _inputs(n: int, dtype: Any) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(n).astype(dtype)


def _copy_limit(x: np.ndarray) -> Callable[[], Any]:
    dst = np.empty_like(x)
    return lambda: copy_kernel(x, dst)


def _dropout_setup(n: int, dtype: Any) -> Callable[[str], dict[str, Callable[[], Any]]]:
    def setup(backend: str) -> dict[str, Callable[[], Any]]:
        x = _inputs(n, dtype)
        rng = np.random.default_rng(1)
        scale = x.dtype.type(1.0 / (1.0 - _P))
        contenders: dict[str, Callable[[], Any]] = {
            "fastreg": lambda: dropout(x, _P, seed=7, backend=backend),
        }
        if (torch := torch_or_none()) is not None:
            xt = torch.from_numpy(x)
            contenders["torch"] = lambda: torch.nn.functional.dropout(xt, _P, training=True)
        contenders["numpy"] = lambda: x * (rng.random(x.shape, dtype=x.dtype) >= _P) * scale
        contenders["copy"] = _copy_limit(x)
        return contenders

    return setup


def _dropout_backward_setup(n: int, dtype: Any) -> Callable[[str], dict[str, Callable[[], Any]]]:
    def setup(backend: str) -> dict[str, Callable[[], Any]]:
        dy = _inputs(n, dtype)
        keep = np.random.default_rng(1).random(n, dtype=dtype) >= _P
        scale = 1.0 / (1.0 - _P)
        contenders: dict[str, Callable[[], Any]] = {
            "fastreg": lambda: dropout_backward(dy, _P, seed=7, backend=backend),
        }
        if (torch := torch_or_none()) is not None:
            dyt, keept = torch.from_numpy(dy), torch.from_numpy(keep)
            backward = torch.ops.aten.native_dropout_backward
            contenders["torch"] = lambda: backward(dyt, keept, scale)
        typed_scale = dy.dtype.type(scale)
        contenders["numpy"] = lambda: dy * keep * typed_scale
        contenders["copy"] = _copy_limit(dy)
        return contenders

    return setup


def _gaussian_setup(
    n: int, dtype: Any, multiplicative: bool
) -> Callable[[str], dict[str, Callable[[], Any]]]:
    def setup(backend: str) -> dict[str, Callable[[], Any]]:
        x = _inputs(n, dtype)
        rng = np.random.default_rng(1)
        contenders: dict[str, Callable[[], Any]] = {}
        torch = torch_or_none()
        xt = None if torch is None else torch.from_numpy(x)
        if multiplicative:
            alpha = math.sqrt(_P / (1.0 - _P))
            contenders["fastreg"] = lambda: gaussian_dropout(x, _P, seed=7, backend=backend)
            if torch is not None:
                contenders["torch"] = lambda: xt * (1.0 + alpha * torch.randn_like(xt))
            contenders["numpy"] = lambda: x * (1.0 + alpha * rng.standard_normal(n, dtype=dtype))
        else:
            contenders["fastreg"] = lambda: gaussian_noise(x, _STDDEV, seed=7, backend=backend)
            if torch is not None:
                contenders["torch"] = lambda: xt + _STDDEV * torch.randn_like(xt)
            contenders["numpy"] = lambda: x + _STDDEV * rng.standard_normal(n, dtype=dtype)
        contenders["copy"] = _copy_limit(x)
        return contenders

    return setup


def _case(name: str, setup: Callable[..., Any], n: int, dtype: Any, **fields: Any) -> Case:
    return Case(
        name=name,
        family="dropout",
        setup=setup,
        limit="copy",
        peers=("torch", "numpy"),
        bytes_moved=2 * n * np.dtype(dtype).itemsize,  # read x, write y
        **fields,
    )


CASES: list[Case] = [
    _case(
        "dropout 4M f32",
        _dropout_setup(_M, np.float32),
        _M,
        np.float32,
        goals={"torch": 20.0, "copy": 3.0},
    ),
    _case("dropout 64k f32", _dropout_setup(1 << 16, np.float32), 1 << 16, np.float32),
    _case(
        "dropout_backward 4M f32",
        _dropout_backward_setup(_M, np.float32),
        _M,
        np.float32,
        quick=False,
    ),
    _case("dropout 4M f64", _dropout_setup(_M, np.float64), _M, np.float64, quick=False),
    _case(
        "gaussian_noise 4M f32",
        _gaussian_setup(_M, np.float32, multiplicative=False),
        _M,
        np.float32,
        goals={"copy": 4.0, "torch": 4.0},
        quick=False,
    ),
    _case(
        "gaussian_dropout 4M f32",
        _gaussian_setup(_M, np.float32, multiplicative=True),
        _M,
        np.float32,
        quick=False,
    ),
]
