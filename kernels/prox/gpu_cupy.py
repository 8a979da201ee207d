"""Proximal-update GPU twin (CuPy): single-pass, multi-tensor CUDA kernels.

Same names and signatures as ``ref_numpy``; the kernels are ``kernels/prox/prox.cu``. A list of
tensors is updated in one launch: a small table of device pointers (one row per tensor) and of
chunks (one CUDA block each) is copied to the device, then every element is read and written
once. The arrays of one tensor share one memory order (``fastreg.prox`` arranges that), so the
flat memory index addresses the same element in each. Scalars arrive cast to the arrays' dtype;
float16 and bfloat16 compute in float32 and round once. Each thread updates four consecutive
elements, loading and storing each array's four as one vector where the tensor's arrays are
aligned (CuPy's allocations always are; offset views take the element-by-element path).
"""

from __future__ import annotations

import cupy
import numpy as np

from .. import cuda_launch as cl

__all__ = [
    "abs_square_sums",
    "adam_update",
    "adam_update_many",
    "group_lasso",
    "max_norm",
    "sgd_update",
    "sgd_update_many",
]

#: Elements per chunk (one CUDA block walks a chunk): 64k elements keep a block busy for a few
#: microseconds while lists of small tensors still spread over all multiprocessors. A multiple of
#: 4, so each thread's quad of elements (one vector access per array) lies in one chunk.
CHUNK = 1 << 16


def _same_layout(w, *others) -> None:
    if not (w.flags.c_contiguous or w.flags.f_contiguous):
        raise ValueError("w must be C- or F-contiguous here (fastreg.prox stages other layouts)")
    for a in others:
        if a is None:
            continue
        if not ((w.flags.c_contiguous and a.flags.c_contiguous)
                or (w.flags.f_contiguous and a.flags.f_contiguous)):
            raise ValueError("the arrays of one tensor must share w's memory order here")


def _table(rows: list[list], sizes: list[int]):
    """The tensor table (pointers, then the size, per row) and the chunk table, on the device."""
    tensors = np.array([[*row, size] for row, size in zip(rows, sizes, strict=True)], np.uint64)
    counts = [-(-size // CHUNK) for size in sizes]
    chunks = np.empty((sum(counts), 2), np.uint64)
    position = 0
    for k, count in enumerate(counts):
        chunks[position : position + count, 0] = k
        chunks[position : position + count, 1] = np.arange(count, dtype=np.uint64) * CHUNK
        position += count
    return cupy.asarray(tensors), cupy.asarray(chunks), chunks.shape[0]


def _dtype_of(ws):
    dtypes = {w.dtype for w in ws}
    if len(dtypes) != 1:
        raise ValueError(f"one launch updates tensors of one dtype, got {sorted(map(str, dtypes))}")
    return dtypes.pop()


def sgd_update_many(ws, grads, bufs, masks, lr, thr, shrink, momentum, nesterov) -> None:
    """:func:`sgd_update` on each tensor of the lists, in one launch (``bufs`` None or a list;
    ``masks`` a list with None entries for tensors without a mask)."""
    if not ws:
        return
    dtype = _dtype_of(ws)
    rows = []
    for k, w in enumerate(ws):
        buf = None if bufs is None else bufs[k]
        _same_layout(w, grads[k], buf, masks[k])
        rows.append([cl.pointer(w), cl.pointer(grads[k]), cl.pointer(buf), cl.pointer(masks[k])])
    tensors, chunks, nchunks = _table(rows, [w.size for w in ws])
    scalars = (cl.scalar(dtype, s) for s in (lr, thr, shrink, momentum))
    args = (tensors, chunks, cl.u64(nchunks), cl.u64(CHUNK), *scalars, np.int32(bool(nesterov)))
    cl.launch_blocks(cl.kernel("prox", "prox_sgd", dtype), nchunks, args)


def sgd_update(w, grad, buf, mask, lr, thr, shrink, momentum, nesterov) -> None:
    """``buf = momentum*buf + grad``; ``d = buf`` (``grad + momentum*buf`` if nesterov; ``grad``
    if ``buf`` is None); ``w = S(w - lr*d, thr) * shrink``; ``w[~mask] = +0.0``."""
    bufs = None if buf is None else [buf]
    sgd_update_many([w], [grad], bufs, [mask], lr, thr, shrink, momentum, nesterov)


def adam_update_many(
    ws, grads, ms, vs, masks, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
    inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox
) -> None:
    """:func:`adam_update` on each tensor of the lists, in one launch."""
    if not ws:
        return
    dtype = _dtype_of(ws)
    rows = []
    for k, w in enumerate(ws):
        _same_layout(w, grads[k], ms[k], vs[k], masks[k])
        rows.append([cl.pointer(a) for a in (w, grads[k], ms[k], vs[k], masks[k])])
    tensors, chunks, nchunks = _table(rows, [w.size for w in ws])
    host = (beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_sqrt_bc2, eps, decay,
            lr_l1, two_lr_l2)
    scalars = (cl.scalar(dtype, s) for s in host)
    args = (tensors, chunks, cl.u64(nchunks), cl.u64(CHUNK), *scalars, np.int32(prox))
    cl.launch_blocks(cl.kernel("prox", "prox_adam", dtype), nchunks, args)


def adam_update(
    w, grad, m, v, mask, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_sqrt_bc2,
    eps, decay, lr_l1, two_lr_l2, prox
) -> None:
    """Adam moments in place, then with ``r = 1 / (sqrt(v)*inv_sqrt_bc2 + eps)`` (``1/psi``):
    ``z = w*decay - step_size*m*r``; ``prox`` 1: ``w = S(z, lr_l1*r) / (1 + two_lr_l2*r)``,
    ``prox`` 2: ``w = S(z, lr_l1) / (1 + two_lr_l2)``, ``prox`` 0: ``w = z``; ``w[~mask] = 0``."""
    adam_update_many([w], [grad], [m], [v], [mask], beta1, one_minus_beta1, beta2,
                     one_minus_beta2, step_size, inv_sqrt_bc2, eps, decay, lr_l1, two_lr_l2, prox)


def _group(x2, param: float, lasso: bool) -> None:
    groups, size = x2.shape
    itemsize = x2.dtype.itemsize
    s0, s1 = (np.int64(stride // itemsize) for stride in x2.strides)
    args = (x2, cl.u64(groups), cl.u64(size), s0, s1, np.float64(param), np.int32(lasso))
    cl.launch_blocks(cl.kernel("prox", "prox_group", x2.dtype), groups, args)


def group_lasso(x2, t: float) -> None:
    """Each row ``g`` of ``x2`` is scaled by ``max(0, 1 - t/||x2[g]||)``; zero rows stay zero.
    ``x2`` may be any strided 2-D view: the kernel walks it with its strides."""
    _group(x2, t, True)


def max_norm(x2, c: float) -> None:
    """Each row ``g`` of ``x2`` is scaled by ``min(1, c/||x2[g]||)``, exactly (no epsilon)."""
    _group(x2, c, False)


def abs_square_sums(x) -> tuple[float, float]:
    """``(sum |x|, sum x**2)`` accumulated in float64 (CuPy reductions)."""
    wide = x.astype(cupy.float64)
    return float(cupy.abs(wide).sum()), float((wide * wide).sum())
