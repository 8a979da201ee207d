"""The vector (quad) accesses of the elementwise kernels, on the host emulator of the device.

Each thread of the dropout and prox kernels moves its four elements as one 16-byte (float32,
float64 as two halves) or 8-byte (16-bit types) access where every array of the launch is
aligned, element by element otherwise. The emulator (tests/cuda_emulator.h) fails a launch whose
vector access is misaligned, as a GPU does, and counts vector accesses; so these tests show which
path a launch took, that both give the NumPy twin's bits, and that no kernel issues a misaligned
vector access whatever the arrays' offsets. (tests/test_cuda_compile.py checks that nvcc turns
the quads into ld/st.v4 instructions.)
"""

from __future__ import annotations

import sys

import cuda_emulator
import numpy as np
import pytest

from fastreg._kernels import cuda_launch as cl
from fastreg._kernels.dropout import ref_numpy as dropout_ref
from fastreg._kernels.prox import ref_numpy as prox_ref
from fastreg.random import dropout_scale, kernel_threshold

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(cuda_emulator.compiler() is None, reason="no host C++ compiler"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the emulator needs ucontext"),
]

FLOATS = list(cl.FLOATS)
#: Unit roundoff of each dtype (half an ulp of 1).
ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8, "float32": 2.0**-24, "float64": 2.0**-53}


@pytest.fixture(scope="module")
def module():
    """``family -> EmulatedModule`` of the vectorized families."""
    return {family: cuda_emulator.EmulatedModule(cl.source(family)) for family in ("dropout",
                                                                                    "prox")}


def _placed(a, shift):
    """A copy of ``a`` that starts ``shift`` elements after a 64-byte boundary."""
    itemsize = a.dtype.itemsize
    raw = np.empty(a.nbytes + 64 + shift * itemsize, np.uint8)
    start = -raw.ctypes.data % 64 + shift * itemsize
    placed = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    placed[...] = a
    return placed


def _quad_aligned(dtype, shift):
    """Whether an array ``shift`` elements past a 64-byte boundary takes the vector path: quads
    align to their size, at most 16 bytes (float64 quads move as two 16-byte halves)."""
    return shift * dtype.itemsize % min(16, 4 * dtype.itemsize) == 0


def _launch(mod, name, work_items, args, block=64, max_blocks=3):
    blocks = max(1, min(-(-work_items // block), max_blocks))
    before = mod.vector_accesses()
    mod.launch(name, (blocks,), (block,), args, address=lambda a: a.ctypes.data)
    return mod.vector_accesses() - before


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("x_shift", "out_shift"), [(0, 0), (1, 1), (0, 3), (2, 0)])
@pytest.mark.parametrize("n", [1, 7, 1001])
def test_dropout_quads_give_numpy_bits(module, dtype, x_shift, out_shift, n):
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    x[: min(n, 3)] = [np.nan, np.inf, -np.inf][: min(n, 3)]
    key, salt, offset, threshold = (77, 3), 0, 5, kernel_threshold(0.3)
    scale = dropout_scale(0.3, dtype)
    expected = np.empty_like(x)
    with np.errstate(invalid="ignore"):
        dropout_ref.dropout_apply(x, expected, *key, salt, offset, threshold, scale)
    gx, out = _placed(x, x_shift), _placed(np.full_like(x, 7), out_shift)
    suffix = cl.float_type(dtype).suffix
    args = (gx, out, np.uint64(n), *map(np.uint32, (*key, salt, offset)), np.uint64(threshold),
            cl.scalar(dtype, scale))
    vectors = _launch(module["dropout"], f"fastreg_dropout_apply_{suffix}", (n + 3) // 4, args)
    assert out.tobytes() == expected.tobytes()
    aligned = _quad_aligned(dtype, x_shift) and _quad_aligned(dtype, out_shift)
    # One load and one store per whole quad when both arrays are aligned; none otherwise.
    assert vectors == (2 * (n // 4) if aligned else 0)


@pytest.mark.parametrize("shift", [0, 1, 2, 3])
def test_mask_quads(module, shift):
    n = 1003
    threshold = kernel_threshold(0.5)
    out = _placed(np.zeros(n, np.uint8), shift)
    args = (out, np.uint64(n), *map(np.uint32, (1, 2, 0, 3)), np.uint64(threshold))
    vectors = _launch(module["dropout"], "fastreg_dropout_mask_bool", (n + 3) // 4, args)
    np.testing.assert_array_equal(out.astype(bool), dropout_ref.keep_mask(n, 1, 2, 0, 3,
                                                                           threshold))
    assert vectors == (n // 4 if shift == 0 else 0)


def _sgd_table(w, grad, buf, mask):
    ptr = [0 if a is None else a.ctypes.data for a in (w, grad, buf, mask)]
    tensors = np.array([[*ptr, w.size]], np.uint64)
    chunks = np.array([[0, 0]], np.uint64)
    return tensors, chunks


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("w_shift", "mask_shift"), [(0, 0), (0, 1), (1, 0), (2, 2)])
def test_prox_sgd_quads_give_numpy_bits(module, dtype, w_shift, mask_shift):
    n = 1001
    rng = np.random.default_rng(4)
    w, grad, buf = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    mask = rng.random(n) < 0.8
    compute = cl.float_type(dtype).compute
    scalars = tuple(compute(s) for s in (0.1, 0.005, 1 / 1.002, 0.9))
    # The NumPy twin in the compute type of the kernels (16-bit state rounds once per store).
    ref_w, ref_buf = w.copy(), buf.copy()
    prox_ref.sgd_update(ref_w, grad, ref_buf, mask, *(dtype.type(s) for s in scalars), False)
    gw, gg, gb = (_placed(a, w_shift) for a in (w, grad, buf))
    gm = _placed(mask.view(np.uint8), mask_shift)
    tensors, chunks = _sgd_table(gw, gg, gb, gm)
    args = (tensors, chunks, np.uint64(1), np.uint64(1 << 16), *scalars, np.int32(0))
    vectors = _launch(module["prox"], f"fastreg_prox_sgd_{cl.float_type(dtype).suffix}", 1, args)
    if dtype.itemsize == 2:  # the reference rounds each operation; the kernel once
        np.testing.assert_allclose(gw.astype(np.float64), ref_w.astype(np.float64), rtol=2e-2,
                                   atol=2e-2)
    else:
        assert gw.tobytes() == ref_w.tobytes() and gb.tobytes() == ref_buf.tobytes()
    aligned = _quad_aligned(dtype, w_shift) and mask_shift % 4 == 0
    # Per whole quad: loads of w, grad, buf and the mask, stores of w and buf.
    assert vectors == (6 * (n // 4) if aligned else 0)


def test_the_emulator_fails_a_misaligned_vector_access():
    code = cl.philox_preamble() + cl.dtype_preamble() + (
        'extern "C" __global__ void fastreg_probe_f32(float *x, fr_u64 first) {\n'
        "    fr_store_quad(x, first, fr_load_quad(x, first));\n"
        "}\n"
    )
    probe = cuda_emulator.EmulatedModule(code)
    x = _placed(np.arange(12, dtype=np.float32), 0)
    probe.launch("fastreg_probe_f32", (1,), (1,), (x, np.uint64(4)), lambda a: a.ctypes.data)
    with pytest.raises(RuntimeError, match="misaligned vector access"):
        probe.launch("fastreg_probe_f32", (1,), (1,), (x, np.uint64(1)), lambda a: a.ctypes.data)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("n", [1, 6, 1001])
def test_gaussian_quads_give_the_same_values_on_either_path(module, dtype, n):
    """Two pair blocks per thread: the vector path and the element path give the same bits
    (the same code and libm), both within a few ulp of the NumPy twin."""
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    suffix = cl.float_type(dtype).suffix
    results = []
    for shift in (0, 1):
        gx, out = _placed(x, shift), _placed(np.zeros_like(x), shift)
        args = (gx, out, np.uint64(n), *map(np.uint32, (5, 6, 3)), np.float64(0.25),
                np.float64(1.5))
        vectors = _launch(module["dropout"], f"fastreg_gaussian_apply_{suffix}", (n + 3) // 4,
                          args)
        assert vectors == (2 * (n // 4) if _quad_aligned(dtype, shift) else 0)
        results.append(out.copy())
    assert results[0].tobytes() == results[1].tobytes()
    expected = np.empty(n, np.float64)
    dropout_ref.gaussian_apply(x.astype(np.float64), expected, 5, 6, 3, 0.25, 1.5)
    # The float64 value (up to 8 float64 ulp from NumPy's libm, as tests/test_gpu_cupy.py
    # allows), cast once: one rounding of the dtype, relative to the value or, where terms
    # cancel, to the largest magnitude.
    tol = 2 * ROUNDOFF[dtype.name] + 16 * ROUNDOFF["float64"]
    np.testing.assert_allclose(results[0].astype(np.float64), expected, rtol=tol,
                               atol=tol * np.abs(expected).max())
