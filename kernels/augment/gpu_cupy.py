"""Augmentation GPU twin (CuPy): one launch per op, the per-sample tables from the host.

Same names and signatures as ``ref_numpy``; the kernels are ``kernels/augment/augment.cu``. A
work item is one output element (grid-stride), so nothing depends on the launch configuration.
The tables (computed on the host in float64, :mod:`.params`) are copied to the device, a few
bytes per sample: every backend moves or samples exactly the same pixels. Flip, translate,
cutout and nearest move bits (every dtype as the unsigned integer of its width); the bilinear
blend computes in float32 (float64 for float64 data) and rounds once to the storage type.
"""

from __future__ import annotations

import cupy
import numpy as np

from .. import cuda_launch as cl

__all__ = ["affine", "move"]

_BITS = {1: ("u8", np.uint8), 2: ("u16", np.uint16), 4: ("u32", np.uint32),
         8: ("u64", np.uint64)}
#: Bilinear kernel suffix and compute type of each dtype, by name (bfloat16 is ml_dtypes').
_BLEND = {"uint8": ("u8", np.float32), "float16": ("f16", np.float32),
          "bfloat16": ("bf16", np.float32), "float32": ("f32", np.float32),
          "float64": ("f64", np.float64)}


def _bits(a):
    """``a`` as the unsigned words of its width (the kernels of pure data movement)."""
    return a.view(_BITS[a.dtype.itemsize][1])


def _storage(a):
    """``a`` as the pointer type of its bilinear kernel: 16-bit types as their bits."""
    return _bits(a) if a.dtype.itemsize == 2 else a


def _fill_bits(fill, dtype):
    return np.array(fill, dtype=dtype).view(_BITS[np.dtype(dtype).itemsize][1])[()]


def _image_args(x):
    _, p, h, w, c = x.shape
    return (cl.u64(x.size), np.int64(p), np.int64(h), np.int64(w), np.int64(c))


def _launch(name, x, out, table, fill, table_dtype):
    cl.check_contiguous(x=x, out=out)
    device_table = cupy.asarray(np.ascontiguousarray(table, dtype=table_dtype))
    kernel = cl.kernel("augment", name[0], suffix=name[1])
    cl.launch(kernel, x.size, (x, out, device_table, *_image_args(x), fill))


def move(x, out, table, fill) -> None:
    """``out = cutout(translate(flip(x)))`` with the per-sample ``table`` (MOVE_COLUMNS:
    vflip, hflip, dy, dx, row0, row1, col0, col1)."""
    suffix = _BITS[x.dtype.itemsize][0]
    _launch(("augment_move", suffix), _bits(x), _bits(out), table,
            _fill_bits(fill, x.dtype), np.int64)


def affine(x, out, table, fill, nearest) -> None:
    """``out[n, i, j]`` sampled at ``q`` (AFFINE_COLUMNS: A00, A01, b0, A10, A11, b1), as in
    ``ref_numpy.affine``: nearest moves bits, bilinear blends in the compute type."""
    if nearest:
        suffix = _BITS[x.dtype.itemsize][0]
        _launch(("affine_nearest", suffix), _bits(x), _bits(out), table,
                _fill_bits(fill, x.dtype), np.float64)
        return
    suffix, compute = _BLEND[x.dtype.name]
    _launch(("affine_bilinear", suffix), _storage(x), _storage(out), table,
            compute(np.array(fill, dtype=x.dtype).astype(compute)), np.float64)
