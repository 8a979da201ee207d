"""A small run of every CUDA kernel of fastreg, for ``compute-sanitizer`` (bench/gpu_check.sh).

Every family's kernels are called through the public API on small arrays of every dtype (and
through the twins on deliberately misaligned views, so the element-by-element paths run too),
then the device is synchronized. CuPy's memory pool is switched off first, so each array is its
own ``cudaMalloc`` and memcheck sees its exact bounds (inside a pool chunk an overrun would be
invisible). The kernels each call launched are recorded; a kernel of a ``.cu`` file that no call
reached is reported and the exit code is 1.

    python bench/gpu_smoke.py [--families dropout,prox]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

import cupy as cp
import numpy as np

import fastreg
from fastreg._kernels import cuda_launch as cl

_MACRO_KERNEL = re.compile(r"fastreg_(\w+?)_##SUFFIX")
_PLAIN_KERNEL = re.compile(r'extern "C" __global__ void (fastreg_\w+)\s*\(')


def expected_kernels(family: str) -> set[str]:
    """The entry points of ``kernels/<family>/<family>.cu``: per-dtype kernels for every suffix
    of :data:`cl.FLOATS` (the dtypes this process can make arrays of), and the plain ones."""
    text = cl.cu_path(family).read_text()
    names = set(_PLAIN_KERNEL.findall(text))
    for op in _MACRO_KERNEL.findall(text):
        names |= {f"fastreg_{op}_{t.suffix}" for t in cl.FLOATS.values()}
    return names


def _record(launched: set[str]) -> None:
    original = cl.kernel

    def kernel(family, op_stage, dtype=None, suffix=None):
        function = original(family, op_stage, dtype, suffix)
        name = f"fastreg_{op_stage}_{suffix or cl.float_type(dtype).suffix}"
        launched.add(name)
        return function

    cl.kernel = kernel


def _data(shape, dtype, seed=0):
    return cp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _shifted(a, shift=1):
    padded = cp.zeros(a.size + shift, a.dtype)
    view = padded[shift:]
    view[...] = a
    return view


def philox(dtypes) -> None:
    fastreg.random_bits((37,), seed=1, offset=2, backend="cupy")
    counter = cp.zeros((5, 4), cp.uint32)
    from fastreg._kernels.philox import gpu_cupy

    gpu_cupy.philox4x32(counter, cp.zeros((5, 2), cp.uint32), 10)


def dropout(dtypes) -> None:
    from fastreg._kernels.dropout import gpu_cupy
    from fastreg.random import dropout_scale, kernel_threshold

    fastreg.dropout_mask((1001,), 0.3, seed=1, backend="cupy")
    for dtype in dtypes:
        x = _data(1001, dtype)
        fastreg.dropout(x, 0.3, seed=1)
        fastreg.dropout(x, 0.3, seed=1, out=x)
        fastreg.dropout_backward(x, 0.3, seed=1, backend="cupy")
        fastreg.gaussian_noise(x, 0.1, seed=1)
        fastreg.gaussian_dropout(x, 0.3, seed=1)
        args = (1, 2, 0, 3, kernel_threshold(0.3), dropout_scale(0.3, dtype))
        out, g = _shifted(cp.zeros_like(x)), _shifted(x)
        gpu_cupy.dropout_apply(_shifted(x), out, *args)
        gpu_cupy.dropout_apply_pair(_shifted(x), out, g, *args)
        gpu_cupy.dropout_apply_pair(x, cp.empty_like(x), x.copy(), *args)


def dense(dtypes) -> None:
    for dtype in dtypes:
        x, W, b, dy = (_data(s, dtype, i) for i, s in enumerate([(67, 33), (33, 129), (129,),
                                                                  (67, 129)]))
        for activation in ("identity", "relu", "tanh", "sigmoid", "gelu"):
            y, z = fastreg.dense_dropout(x, W, b, p=0.3, seed=1, activation=activation,
                                         return_preact=True)
            fastreg.dense_dropout_backward(dy, x, W, y, z=z, p=0.3, seed=1,
                                           activation=activation)


def dropconnect(dtypes) -> None:
    for dtype in dtypes:
        for B in (11, 300):  # 300 examples of a small layer split dW into segments
            x, W, b, dy = (_data(s, dtype, i) for i, s in enumerate([(B, 33), (33, 130), (130,),
                                                                      (B, 130)]))
            for per_example in (False, True):
                kw = dict(p=0.3, seed=1, per_example=per_example)
                fastreg.dropconnect(x, W, b, **kw)
                fastreg.dropconnect_backward(dy, x, W, **kw)
        fastreg.dropconnect_inference(x, W, b, p=0.3)


def prox(dtypes) -> None:
    for dtype in dtypes:
        ws = [_data(s, dtype, i) for i, s in enumerate([(7, 5), (70_001,), (3,)])]
        gs = [_data(w.shape, dtype, 10 + i) for i, w in enumerate(ws)]
        bufs = [cp.zeros_like(w) for w in ws]
        masks = [None, cp.asarray(np.random.default_rng(0).random(70_001) < 0.5), None]
        fastreg.prox_sgd_(ws, gs, lr=0.1, l1=0.01, l2=0.01, momentum=0.9, buf=bufs, mask=masks)
        ms, vs = [cp.zeros_like(w) for w in ws], [cp.zeros_like(w) for w in ws]
        fastreg.prox_adam_(ws, gs, ms, vs, step=1, lr=0.01, l1=0.01)
        w, g = _shifted(ws[1]), _shifted(gs[1])  # the element-by-element path
        fastreg.prox_sgd_(w, g, lr=0.1, l1=0.01)
        fastreg.prox_adam_(w, g, _shifted(ms[1]), _shifted(vs[1]), step=1, lr=0.01)
        fastreg.prox_group_lasso_(ws[0], t=0.1, axis=1)
        fastreg.max_norm_(ws[0], max_norm=1.0, axis=0)
        fastreg.penalty(ws, l1=0.1, l2=0.1)


FAMILIES: dict[str, Callable] = {"philox": philox, "dropout": dropout, "dense": dense,
                                 "dropconnect": dropconnect, "prox": prox}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args(argv)
    cp.cuda.set_allocator(None)  # every array its own cudaMalloc: exact bounds for memcheck
    cp.cuda.set_pinned_memory_allocator(None)
    launched: set[str] = set()
    _record(launched)
    dtypes = list(cl.FLOATS)
    missing = []
    for name in args.families.split(","):
        FAMILIES[name](dtypes)
        cp.cuda.Device().synchronize()
        family_missing = sorted(expected_kernels(name) - launched)
        missing += family_missing
        print(f"{name}: {len(expected_kernels(name) & launched)} kernels launched"
              + (f"; never launched: {family_missing}" if family_missing else ""))
    print(f"dtypes: {', '.join(map(str, dtypes))}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
