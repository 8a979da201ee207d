"""The cupy backend against the NumPy twins: bit-equal streams and masks, values by dtype.

Skipped unless ``cupy`` is in ``fastreg.available_backends()`` (CuPy imports and sees a device).
Without a GPU, tests/test_gpu_emulated.py runs this module on a CuPy stand-in that executes the
real kernels on the host, and tests/test_cuda_compile.py compiles the same CUDA code with nvcc.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_gaussian_close

import fastreg
from fastreg.random import dropout_scale, kernel_threshold

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "cupy" not in fastreg.available_backends(), reason="no usable CuPy device"
    ),
]

if "cupy" in fastreg.available_backends():
    import cupy as cp

    from fastreg._kernels import cuda_launch as cl
    from fastreg._kernels.dropout import gpu_cupy as dropout_gpu
    from fastreg._kernels.dropout import ref_numpy as dropout_ref
    from fastreg._kernels.philox import gpu_cupy as philox_gpu
    from fastreg._kernels.philox import ref_numpy as philox_ref

#: (threads per block, block cap): default, one block, tiny blocks, odd sizes, many blocks.
LAUNCHES = [(256, None), (32, 1), (64, 3), (96, 7), (1024, 2), (128, 10_000)]
SHAPES = [(1,), (3,), (5,), (7, 9), (2, 3, 5), (1001,), (64, 33)]


def _bfloat16():
    """ml_dtypes.bfloat16 where this CuPy can hold it (CuPy 14 with ml_dtypes), else None."""
    try:
        import ml_dtypes

        cp.asarray(np.zeros(4, ml_dtypes.bfloat16)).get()
    except Exception:  # no ml_dtypes, or a CuPy without bfloat16 arrays
        return None
    return np.dtype(ml_dtypes.bfloat16)


BF16 = _bfloat16() if "cupy" in fastreg.available_backends() else None
FLOATS = [np.float16, np.float32, np.float64] + ([BF16] if BF16 is not None else [])
#: bfloat16 tolerances are float16's times the ratio of their unit roundoffs, 2**-8 / 2**-11.
_BF16_FACTOR = 8.0


def _tolerances(f16, f32, f64):
    table = {np.dtype(np.float16): f16, np.dtype(np.float32): f32, np.dtype(np.float64): f64}
    if BF16 is not None:
        table[BF16] = f16 * _BF16_FACTOR
    return table


#: Gaussian values: double transcendentals differ by an ulp, then one cast to the dtype.
GAUSS_RTOL = _tolerances(1e-3, 1e-6, 1e-12)


@pytest.fixture(params=LAUNCHES, ids=lambda c: f"block{c[0]}-cap{c[1]}")
def launch(request):
    with cl.launch_config(*request.param):
        yield request.param


def _host(a):
    return cp.asnumpy(a)


def _cpu_dtype(dtype):
    """CPU backends take float32/float64: 16-bit references are computed in float32."""
    return np.dtype(np.float32) if np.dtype(dtype).itemsize == 2 else np.dtype(dtype)


def _assert_same_bits(got, expected):
    """Bit-equal, except that a NaN may be any NaN: a GPU's float arithmetic returns the canonical
    NaN where the host's keeps the operand's payload."""
    got, expected = np.asarray(got), np.asarray(expected)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(got), nan)
    assert got[~nan].tobytes() == expected[~nan].tobytes()


def _dropout_expected(x, p, seed, offset=0, mask_shape=None):
    """Dropout written from the numpy-backend mask, in x's own dtype (float16 included)."""
    keep = fastreg.dropout_mask(mask_shape or x.shape, p, seed=seed, offset=offset, backend="numpy")
    return np.where(keep, x * dropout_scale(p, x.dtype), x.dtype.type(0))


def _data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_philox_known_answers_on_device():
    counter = np.array(
        [[0, 0, 0, 0], [0xFFFFFFFF] * 4, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344]],
        np.uint32,
    )
    key = np.array([[0, 0], [0xFFFFFFFF] * 2, [0xA4093822, 0x299F31D0]], np.uint32)
    got = _host(philox_gpu.philox4x32(cp.asarray(counter), cp.asarray(key), 10))
    expected = [
        [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8],
        [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ]
    np.testing.assert_array_equal(got, np.array(expected, np.uint32))
    for rounds in (0, 7):
        np.testing.assert_array_equal(
            _host(philox_gpu.philox4x32(cp.asarray(counter), cp.asarray(key), rounds)),
            philox_ref.philox4x32(counter, key, rounds),
        )


@pytest.mark.parametrize("n", [1, 2, 5, 4099, 100_003])
@pytest.mark.parametrize("start", [0, 3, 4 * 2**32 - 6, 2**62 + 1])
def test_random_bits_equal_numpy(launch, n, start):
    args = (0xDEADBEEF, 0x12345678, 0xABC, 0xFFFFFFFF)
    np.testing.assert_array_equal(
        _host(philox_gpu.random_bits(n, *args, start)), philox_ref.random_bits(n, *args, start)
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("salt", "offset"), [(0, 0), (1, 7), (2, 2**32 - 1)])
def test_public_random_bits_equal_cpu(launch, shape, salt, offset):
    seed = 2**64 - 3
    gpu = fastreg.random_bits(shape, seed=seed, offset=offset, salt=salt, backend="cupy")
    assert isinstance(gpu, cp.ndarray) and gpu.dtype == np.uint32 and gpu.shape == shape
    for cpu in fastreg.available_backends():
        if cpu != "cupy":
            expected = fastreg.random_bits(shape, seed=seed, offset=offset, salt=salt, backend=cpu)
            np.testing.assert_array_equal(_host(gpu), expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.0, 1e-9, 0.3, 0.5, 1 - 2.0**-33, 1.0])
def test_masks_bit_equal_to_cpu(launch, shape, p):
    gpu = fastreg.dropout_mask(shape, p, seed=9, offset=4, backend="cupy")
    assert gpu.dtype == np.bool_ and gpu.shape == shape
    for cpu in fastreg.available_backends():
        if cpu != "cupy":
            cpu_mask = fastreg.dropout_mask(shape, p, seed=9, offset=4, backend=cpu)
            np.testing.assert_array_equal(_host(gpu), cpu_mask)
    if p == 1.0:
        assert not gpu.any()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("n", [1, 6, 4097])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 1.0])
def test_dropout_twin_equals_numpy_twin_bitwise(launch, dtype, n, p):
    x = _data(n, dtype)
    x[: min(n, 3)] = [np.nan, np.inf, -np.inf][: min(n, 3)]
    args = (77, 3, 0, 5, kernel_threshold(p), dropout_scale(p, dtype))
    expected = np.empty_like(x)
    with np.errstate(invalid="ignore"):
        dropout_ref.dropout_apply(x, expected, *args)
    out = cp.full(n, 7, dtype)
    dropout_gpu.dropout_apply(cp.asarray(x), out, *args)
    # One multiply, no FMA contraction: 16-bit types round their exact float32 product once, as
    # NumPy (and ml_dtypes) do.
    _assert_same_bits(_host(out), expected)


def _shifted(a, shift, fill=7):
    """A C-contiguous device copy of ``a`` that starts ``shift`` elements into its allocation
    (CuPy allocations are 256-byte aligned, so shifts 1-3 defeat the kernels' vector path)."""
    padded = cp.full(a.size + shift, fill, a.dtype)
    view = padded[shift:]
    view[...] = cp.asarray(a)
    return view


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("x_shift", "out_shift"), [(0, 0), (1, 1), (0, 3), (2, 1)])
def test_dropout_twins_any_alignment(dtype, x_shift, out_shift):
    """Vector (quad) accesses where both arrays are aligned, element by element elsewhere: the
    same bits either way, and no misaligned access (a fault on the device)."""
    n = 4099
    x, g = _data(n, dtype), _data(n, dtype, seed=1)
    args = (77, 3, 1, 5, kernel_threshold(0.4), dropout_scale(0.4, dtype))
    expected, expected_g = np.empty_like(x), g.copy()
    dropout_ref.dropout_apply_pair(x, expected, expected_g, *args)
    gx, out = _shifted(x, x_shift), _shifted(np.full(n, 7, dtype), out_shift)
    dropout_gpu.dropout_apply(gx, out, *args)
    assert _host(out).tobytes() == expected.tobytes()
    out, gg = _shifted(np.full(n, 7, dtype), out_shift), _shifted(g, x_shift)
    dropout_gpu.dropout_apply_pair(gx, out, gg, *args)
    assert _host(out).tobytes() == expected.tobytes()
    assert _host(gg).tobytes() == expected_g.tobytes()
    dropout_gpu.dropout_apply(gx, gx, *args)  # in place
    assert _host(gx).tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("n", [1, 6, 4097])
@pytest.mark.parametrize("p", [0.5, 1.0])
def test_dropout_pair_twin_equals_numpy_twin_bitwise(launch, dtype, n, p):
    x, g = _data(n, dtype), _data(n, dtype, seed=1)
    args = (77, 3, 1, 5, kernel_threshold(p), dropout_scale(p, dtype))
    expected_out, expected_g = np.empty_like(x), g.copy()
    dropout_ref.dropout_apply_pair(x, expected_out, expected_g, *args)
    out, g_gpu = cp.full(n, 7, dtype), cp.asarray(g)
    dropout_gpu.dropout_apply_pair(cp.asarray(x), out, g_gpu, *args)
    assert _host(out).tobytes() == expected_out.tobytes()
    assert _host(g_gpu).tobytes() == expected_g.tobytes()


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_dropout_any_layout_and_out(dtype, layout):
    x = _data((9, 14), dtype)
    padded = np.zeros((18, 28), dtype)
    padded[::2, ::2] = x
    arranged = {"C": cp.asarray(x), "F": cp.asfortranarray(cp.asarray(x)),
                "strided": cp.asarray(padded)[::2, ::2]}[layout]
    reference = _dropout_expected(x, 0.4, 5, 1)
    y = fastreg.dropout(arranged, 0.4, seed=5, offset=1)  # the array type picks cupy
    assert isinstance(y, cp.ndarray) and y.flags.c_contiguous and y.dtype == dtype
    np.testing.assert_array_equal(_host(y), reference)
    grad = fastreg.dropout_backward(arranged, 0.4, seed=5, offset=1, backend="cupy")
    np.testing.assert_array_equal(_host(grad), reference)
    out = cp.zeros((18, 28), dtype)[::2, ::2]
    assert fastreg.dropout(arranged, 0.4, seed=5, offset=1, out=out) is out
    np.testing.assert_array_equal(_host(out), reference)
    in_place = cp.asarray(x)
    assert fastreg.dropout(in_place, 0.4, seed=5, offset=1, out=in_place) is in_place
    np.testing.assert_array_equal(_host(in_place), reference)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_noise_shape_and_identity_cases(dtype):
    x = _data((40, 7), dtype) + 10
    y = fastreg.dropout(cp.asarray(x), 0.5, seed=8, noise_shape=(40, 1))
    expected = _dropout_expected(x, 0.5, 8, mask_shape=(40, 1))
    assert y.dtype == dtype
    np.testing.assert_array_equal(_host(y), expected)
    gx = cp.asarray(x)
    assert fastreg.dropout(gx, 0.0, seed=1) is gx
    assert fastreg.dropout(gx, 0.5, seed=1, training=False) is gx


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", [(1,), (7,), (33, 65)])
def test_gaussian_ops_match_numpy(launch, dtype, shape):
    x = _data(shape, dtype)
    rtol = GAUSS_RTOL[np.dtype(dtype)]
    for op, arg in ((fastreg.gaussian_noise, 0.7), (fastreg.gaussian_dropout, 0.3)):
        gpu = op(cp.asarray(x), arg, seed=4, offset=2)
        assert isinstance(gpu, cp.ndarray) and gpu.dtype == dtype
        ref = op(x.astype(np.float64), arg, seed=4, offset=2, backend="numpy")
        np.testing.assert_allclose(_host(gpu).astype(np.float64), ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize(("additive", "multiplicative"), [(0.25, 0.0), (0.0, 1.5)])
def test_gaussian_twin_within_the_error_bound_in_float64(launch, additive, multiplicative):
    n = 50_001
    x = _data(n, np.float64)
    x[:4] = [np.inf, -np.inf, np.nan, -0.0]
    expected = np.empty_like(x)
    dropout_ref.gaussian_apply(x, expected, 5, 6, 3, additive, multiplicative)
    out = cp.empty(n, np.float64)
    dropout_gpu.gaussian_apply(cp.asarray(x), out, 5, 6, 3, additive, multiplicative)
    # the formula's bound (libdevice's log/cos differ from NumPy's by a few ulp), not an ulp
    # bound on x + s*n, which is ill-conditioned where the two cancel
    assert_gaussian_close(_host(out), expected, x)


def test_keep_rate_is_binomial():
    n, p = 1_000_003, 0.3
    kept = int(fastreg.dropout_mask(n, p, seed=123, backend="cupy").sum())
    assert abs(kept - n * (1 - p)) < 5 * math.sqrt(n * p * (1 - p))


def test_array_kinds_never_cross():
    with pytest.raises(TypeError, match=r"cupy.*numpy"):
        fastreg.dropout(np.ones(4, np.float32), 0.5, seed=1, backend="cupy")
    with pytest.raises(TypeError, match=r"numpy.*cupy"):
        fastreg.dropout(cp.ones(4, np.float32), 0.5, seed=1, backend="numpy")
    with pytest.raises(TypeError, match="out must be a cupy array"):
        fastreg.dropout(cp.ones(4, np.float32), 0.5, seed=1, out=np.ones(4, np.float32))
    with pytest.raises(TypeError, match="dtype"):
        fastreg.dropout(cp.ones(4, np.int32), 0.5, seed=1)


def test_empty_arrays():
    assert fastreg.dropout(cp.ones((0, 3), np.float32), 0.5, seed=1).shape == (0, 3)
    assert fastreg.dropout_mask((0,), 0.5, seed=1, backend="cupy").shape == (0,)
    assert fastreg.random_bits(0, seed=1, backend="cupy").shape == (0,)


# ------------------------------------------------------------------------------------- prox

PROX_RTOL = _tolerances(2e-2, 0.0, 0.0)


def _prox_tensors(dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(1,), (7, 5), (3, 4, 6), (70_001,)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes], rng


def _close(gpu, cpu, dtype):
    # float32/float64: the same operations without FMA, so the same bits; float16 rounds once.
    rtol = PROX_RTOL[np.dtype(dtype)]
    if rtol == 0.0:
        np.testing.assert_array_equal(_host(gpu), cpu)
    else:
        np.testing.assert_allclose(_host(gpu).astype(np.float64), cpu.astype(np.float64),
                                   rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("nesterov", [False, True])
def test_prox_sgd_list_in_one_call_matches_numpy(launch, dtype, nesterov):
    ws, rng = _prox_tensors(dtype)
    grads = [rng.standard_normal(w.shape).astype(dtype) for w in ws]
    bufs = [rng.standard_normal(w.shape).astype(dtype) for w in ws]
    masks = [None, rng.random((7, 5)) < 0.5, None, rng.random(70_001) < 0.9]
    gpu = [[cp.asarray(a) if a is not None else None for a in col]
           for col in (ws, grads, bufs, masks)]
    wide = _cpu_dtype(dtype)
    cpu = [[a.astype(wide if a.dtype != np.bool_ else a.dtype) if a is not None else None
            for a in col] for col in (ws, grads, bufs, masks)]
    kwargs = dict(lr=0.1, l1=0.05, l2=0.01, momentum=0.9, nesterov=nesterov)
    fastreg.prox_sgd_(gpu[0], gpu[1], buf=gpu[2], mask=gpu[3], **kwargs)
    fastreg.prox_sgd_(cpu[0], cpu[1], buf=cpu[2], mask=cpu[3], backend="numpy", **kwargs)
    for g, c in zip(gpu[0] + gpu[2], cpu[0] + cpu[2], strict=True):
        _close(g, c, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("shift", "mask_shift"), [(0, 0), (1, 0), (0, 1), (3, 2)])
def test_prox_twins_any_alignment(dtype, shift, mask_shift):
    """Offset (contiguous) views take the element-by-element path, aligned arrays the vector one:
    the same results as the NumPy twin either way, and no misaligned access."""
    rng = np.random.default_rng(3)
    n = 70_001
    w, grad, buf, m = (rng.standard_normal(n).astype(dtype) for _ in range(4))
    v = np.abs(m)
    mask = rng.random(n) < 0.8
    gpu = [_shifted(a, shift) for a in (w, grad, buf, m, v)]
    gmask = _shifted(mask, mask_shift, fill=False)
    cpu = [a.astype(_cpu_dtype(dtype)) for a in (w, grad, buf, m, v)]
    kwargs = dict(lr=0.1, l1=0.05, l2=0.01, momentum=0.9)
    fastreg.prox_sgd_(gpu[0], gpu[1], buf=gpu[2], mask=gmask, **kwargs)
    fastreg.prox_sgd_(cpu[0], cpu[1], buf=cpu[2], mask=mask, backend="numpy", **kwargs)
    for g, c in zip(gpu[:3:2], cpu[:3:2], strict=True):
        _close(g, c, dtype)
    kwargs = dict(step=2, lr=0.01, l1=0.1, weight_decay=0.01, eps=1e-3)
    fastreg.prox_adam_(gpu[0], gpu[1], gpu[3], gpu[4], mask=gmask, **kwargs)
    fastreg.prox_adam_(cpu[0], cpu[1], cpu[3], cpu[4], mask=mask, backend="numpy", **kwargs)
    for g, c in zip(gpu[0:1] + gpu[3:], cpu[0:1] + cpu[3:], strict=True):
        _close(g, c, dtype)


@pytest.mark.parametrize("shift", [0, 1], ids=["vector", "elementwise"])
@pytest.mark.parametrize(("op", "same"), [
    ("sgd", ("w", "grad")), ("sgd", ("grad", "buf")), ("sgd", ("w", "buf")),
    ("adam", ("w", "grad")), ("adam", ("grad", "m")), ("adam", ("m", "v")), ("adam", ("w", "m")),
    ("adam", ("w", "v"))])
def test_prox_same_array_twice_matches_numpy(op, same, shift):
    """Arguments that are the same array (docs/contract/errors.md): every value is read before
    any write, the states are stored before w; the NumPy twin (checked against the formula in
    tests/test_prox.py) is the reference, on both the vector and the element-by-element path."""
    names = ("w", "grad", "buf") if op == "sgd" else ("w", "grad", "m", "v")
    found = {name: np.random.default_rng(k).uniform(0.1, 2.0, 4099).astype(np.float32)
             for k, name in enumerate(names)}
    gpu = {name: _shifted(found[name], shift) for name in names}
    cpu = {name: found[name].copy() for name in names}
    for arrays in (gpu, cpu):
        for name in same[1:]:
            arrays[name] = arrays[same[0]]
    for arrays, backend in ((gpu, None), (cpu, "numpy")):
        if op == "sgd":
            fastreg.prox_sgd_(arrays["w"], arrays["grad"], buf=arrays["buf"], lr=0.1,
                              momentum=0.9, nesterov=True, backend=backend)
        else:
            fastreg.prox_adam_(arrays["w"], arrays["grad"], arrays["m"], arrays["v"], step=2,
                               lr=0.01, eps=1e-3, backend=backend)
    for name in names:
        _close(gpu[name], cpu[name], np.float32)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_prox_adam_any_layout_matches_numpy(dtype, layout):
    rng = np.random.default_rng(1)
    w, grad = (rng.standard_normal((9, 14)).astype(dtype) for _ in range(2))
    if np.dtype(dtype) == np.float16:
        # float16 state underflows where (1 - beta2) * g**2 < 2**-25 (|g| < ~0.008 here), and then
        # r = 1/eps is 1000, not ~100: a true float16 effect the float32 reference cannot show.
        grad = (np.sign(grad) * rng.uniform(0.5, 2.0, grad.shape)).astype(dtype)
    m, v = np.zeros_like(w), np.zeros_like(w)

    def arrange(a):
        g = cp.asarray(a)
        if layout == "F":
            return cp.asfortranarray(g)
        if layout == "strided":
            padded = cp.zeros((18, 28), dtype)
            padded[::2, ::2] = g
            return padded[::2, ::2]
        return g
    gw, gg, gm, gv = (arrange(a) for a in (w, grad, m, v))
    kwargs = dict(step=1, lr=0.01, l1=0.1, l2=0.01, weight_decay=0.01, eps=1e-3)
    assert fastreg.prox_adam_(gw, gg, gm, gv, **kwargs) is gw
    w, grad, m, v = (a.astype(_cpu_dtype(dtype)) for a in (w, grad, m, v))
    fastreg.prox_adam_(w, grad, m, v, backend="numpy", **kwargs)
    for g, c in ((gw, w), (gm, m), (gv, v)):
        _close(g, c, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("axis", [0, 1, None, (0, 2)])
def test_group_ops_match_numpy(launch, dtype, axis):
    w = np.random.default_rng(2).standard_normal((6, 5, 4)).astype(dtype)
    w[:, 0, :] = 0  # a zero group stays zero
    tol = _tolerances(2e-3, 1e-6, 1e-13)
    ops = ((fastreg.prox_group_lasso_, {"t": 1.0}), (fastreg.max_norm_, {"max_norm": 1.5}))
    for op, kwargs in ops:
        gpu = cp.asarray(w)[:, :, ::-1]  # negative strides: walked in place
        cpu = w[:, :, ::-1].astype(_cpu_dtype(dtype))
        op(gpu, axis=axis, **kwargs)
        op(cpu, axis=axis, backend="numpy", **kwargs)
        # Norms are summed in another order: a few ulp, then scaled.
        np.testing.assert_allclose(_host(gpu).astype(cpu.dtype), cpu, rtol=tol[np.dtype(dtype)],
                                   atol=1e-30)
        assert not np.isnan(_host(gpu)).any()


@pytest.mark.parametrize("magnitude", [1e200, 1e-200, 1e300])
def test_group_norms_are_scaled_where_squares_overflow_or_underflow(launch, magnitude):
    # Squares of 1e200 overflow to inf (the group was zeroed); of 1e-200, underflow to 0.
    col = np.array([3.0, 4.0, 0.0]) * magnitude
    norm = 5.0 * magnitude
    for op, kwargs, want in ((fastreg.max_norm_, {"max_norm": norm / 2}, col / 2),
                             (fastreg.prox_group_lasso_, {"t": 0.0}, col)):
        gpu = cp.asarray(np.stack([col, col], axis=1))
        op(gpu, axis=0, **kwargs)
        np.testing.assert_allclose(_host(gpu), np.stack([want, want], axis=1), rtol=1e-15,
                                   atol=0)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_penalty_matches_numpy(dtype):
    ws, _ = _prox_tensors(dtype)
    gpu = fastreg.penalty([cp.asarray(w) for w in ws], l1=0.5, l2=0.25)
    cpu = fastreg.penalty([w.astype(_cpu_dtype(dtype)) for w in ws], l1=0.5, l2=0.25,
                          backend="numpy")  # 16-bit -> float32 is exact
    assert gpu == pytest.approx(cpu, rel=1e-12)


# ------------------------------------------------------------------------------ dropconnect
# The cupy twin against the numpy backend (itself checked against PyTorch autograd in
# tests/test_dropconnect.py): the same masks, values by dtype. float16 references are computed in
# float64 from the float16 values.

DC_TOL = _tolerances(1e-2, 1e-5, 1e-10)
#: (leading dims of x, K, N): 1x1, sizes not divisible by 4 or by the tiles (8 x 16 x 64), leading
#: dims flattened, several tiles each way, a batch that splits dW into segments.
DC_SHAPES = [((1,), 1, 1), ((3,), 5, 7), ((2, 3), 4, 6), ((17,), 13, 4), ((11,), 33, 130),
             ((6,), 2, 2053), ((300,), 3, 5)]


def _dc_inputs(lead, K, N, dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = ((*lead, K), (K, N), (N,), (*lead, N))
    return tuple(rng.standard_normal(s).astype(dtype) for s in shapes)


def _dc_close(got, ref):
    assert isinstance(got, cp.ndarray) and got.flags.c_contiguous
    tol = DC_TOL[got.dtype]
    ref = np.asarray(ref, np.float64)
    np.testing.assert_allclose(_host(got).astype(np.float64), ref, rtol=tol,
                               atol=tol * max(1.0, np.abs(ref).max(initial=0.0)))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("per_example", [False, True], ids=["batch", "example"])
@pytest.mark.parametrize("shape", DC_SHAPES, ids=str)
def test_dropconnect_matches_numpy(dtype, shape, per_example):
    x, W, b, dy = _dc_inputs(*shape, dtype)
    kw = dict(p=0.3, seed=2**40 + 5, offset=7, per_example=per_example)
    wide = [a.astype(np.float64) for a in (x, W, b, dy)]
    y_ref = fastreg.dropconnect(*wide[:3], backend="numpy", **kw)
    grads_ref = fastreg.dropconnect_backward(wide[3], *wide[:2], backend="numpy", **kw)
    gx, gW, gb, gdy = (cp.asarray(a) for a in (x, W, b, dy))
    y = fastreg.dropconnect(gx, gW, gb, **kw)
    assert y.dtype == dtype and y.shape == y_ref.shape
    _dc_close(y, y_ref)
    for got, ref in zip(fastreg.dropconnect_backward(gdy, gx, gW, **kw), grads_ref, strict=True):
        assert got.dtype == dtype and got.shape == ref.shape
        _dc_close(got, ref)


@pytest.mark.parametrize("per_example", [False, True], ids=["batch", "example"])
def test_dropconnect_masks_exact(launch, per_example):
    """One-hot rows of x pick rows of the masked weight exactly; unit x and dy give dW = mask."""
    K, N, p = 6, 37, 0.5
    W = np.random.default_rng(1).uniform(1.0, 2.0, (K, N))  # never zero: y != 0 iff kept
    kw = dict(p=p, seed=3, offset=1, per_example=per_example)
    bits = fastreg.random_bits((K, K, N) if per_example else (K, N), seed=3, offset=1, salt=1,
                               backend="numpy")
    keep = bits.astype(np.int64) >= kernel_threshold(p)
    rows = keep[np.arange(K), np.arange(K)] if per_example else keep
    y = fastreg.dropconnect(cp.eye(K), cp.asarray(W), **kw)
    np.testing.assert_array_equal(_host(y), np.where(rows, W * 2.0, 0.0))
    _, dW, _ = fastreg.dropconnect_backward(cp.ones((1, N)), cp.ones((1, K)), cp.asarray(W), **kw)
    np.testing.assert_array_equal(_host(dW), np.where(keep[0] if per_example else keep, 2.0, 0.0))


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_dropconnect_per_example_independent_of_launch(dtype):
    x, W, b, dy = (cp.asarray(a) for a in _dc_inputs((203,), 37, 130, dtype, seed=4))
    kw = dict(p=0.5, seed=9, per_example=True)
    results = set()
    for config in LAUNCHES:
        with cl.launch_config(*config):
            outputs = (fastreg.dropconnect(x, W, b, **kw),
                       *fastreg.dropconnect_backward(dy, x, W, **kw))
        results.add(b"".join(_host(a).tobytes() for a in outputs))
    assert len(results) == 1


@pytest.mark.parametrize("layout", ["F", "strided"])
def test_dropconnect_layouts(layout):
    x, W, b, dy = _dc_inputs((5,), 6, 9, np.float64, seed=2)
    kw = dict(p=0.4, seed=1, per_example=True)
    y_ref = fastreg.dropconnect(x, W, b, backend="numpy", **kw)
    grads_ref = fastreg.dropconnect_backward(dy, x, W, backend="numpy", **kw)

    def arrange(a):
        g = cp.asarray(a)
        if layout == "F":
            return cp.asfortranarray(g)
        padded = cp.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = padded[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = g
        return view

    gx, gW, gb, gdy = (arrange(a) for a in (x, W, b, dy))
    _dc_close(fastreg.dropconnect(gx, gW, gb, **kw), y_ref)
    for got, ref in zip(fastreg.dropconnect_backward(gdy, gx, gW, **kw), grads_ref, strict=True):
        _dc_close(got, ref)


def test_dropconnect_edges_and_twin_threshold():
    x, W, b, dy = (cp.asarray(a) for a in _dc_inputs((4,), 5, 6, np.float32, seed=3))
    kw = dict(seed=1, per_example=True)
    y = fastreg.dropconnect(x, W, b, p=1.0, **kw)
    np.testing.assert_array_equal(_host(y), np.tile(_host(b), (4, 1)))
    mean = _host(x).astype(np.float64) @ _host(W) + _host(b)
    _dc_close(fastreg.dropconnect(x, W, b, p=0.5, training=False, **kw), mean)
    from fastreg._kernels.dropconnect import gpu_cupy as dc_gpu

    # The twin itself: threshold 2**32 (p == 1) keeps nothing.
    y = dc_gpu.example_forward(x, W, b, 1, 2, 1, 0, 2**32, 0.0)
    np.testing.assert_array_equal(_host(y), np.tile(_host(b), (4, 1)))
    dx, dW = dc_gpu.example_backward(dy, x, W, 1, 2, 1, 0, 2**32, 0.0)
    assert not dx.any() and not dW.any()
    for B, K, N in [(0, 3, 4), (3, 0, 4), (3, 4, 0)]:
        args = (cp.ones((B, K), np.float32), cp.ones((K, N), np.float32))
        y = fastreg.dropconnect(*args, p=0.5, seed=1, per_example=True)
        dx, dW, db = fastreg.dropconnect_backward(cp.ones((B, N), np.float32), *args, p=0.5,
                                                  seed=1, per_example=True)
        assert y.shape == (B, N) and dx.shape == (B, K) and dW.shape == (K, N)
        assert not y.any() and not dx.any() and not dW.any()


def test_dropconnect_never_allocates_b_k_n():
    """A (B, K, N) float32 array here is 64 MiB; no single device allocation may reach 1/16 of
    it (the outputs are B*N, B*K and K*N; dW's partial sums stay O(tile))."""
    from cupy.cuda import memory_hook

    class Largest(memory_hook.MemoryHook):
        name = "fastreg_largest"

        def __init__(self):
            self.largest = 0

        def malloc_preprocess(self, **kwargs):
            self.largest = max(self.largest, kwargs["size"])

    B, K, N = 4096, 64, 64
    x, W, b, dy = (cp.asarray(a) for a in _dc_inputs((B,), K, N, np.float32, seed=5))
    kw = dict(p=0.5, seed=1, per_example=True)
    fastreg.dropconnect(x[:2], W, b, **kw)  # compile before measuring
    hook = Largest()
    with hook:
        fastreg.dropconnect(x, W, b, **kw)
        fastreg.dropconnect_backward(dy, x, W, **kw)
    assert hook.largest < B * K * N * 4 // 16, hook.largest


def test_dropconnect_inference_matches_numpy():
    rng = np.random.default_rng(7)
    x, W = rng.standard_normal((3, 2, 6)), rng.standard_normal((6, 5))
    x[0, 0] = 0.0  # sigma == 0 rows: relu(mu)
    ref = fastreg.dropconnect_inference(x, W, p=0.3, backend="numpy")
    got = fastreg.dropconnect_inference(cp.asarray(x), cp.asarray(W), p=0.3)
    np.testing.assert_allclose(_host(got), ref, rtol=1e-12, atol=1e-12)
    for dtype in (np.float16, np.float32):
        low = fastreg.dropconnect_inference(cp.asarray(x, dtype), cp.asarray(W, dtype), p=0.3)
        assert low.dtype == dtype
        _dc_close(low, ref.astype(dtype))


# ------------------------------------------------------------------------------------ dense
# The cupy twin against the numpy backend (checked against PyTorch autograd in
# tests/test_dense.py). The backward reference is fed the GPU's own y and z, widened to float64,
# so both sides differentiate the same forward.

DENSE_ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "gelu")
#: (batch shape, K, N): 1x1x1, a 3-D batch, sizes not divisible by 4, rows straddling Philox
#: blocks, and backward chunks of two rows (m * ceil(N/4) > BACKWARD_ITEMS).
DENSE_SHAPES = [((1,), 1, 1), ((3, 5), 7, 9), ((37,), 13, 5), ((2,), 3, 130), ((67,), 33, 129),
                ((4099,), 3, 70)]


def _dense_inputs(batch, k, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, k)).astype(dtype)
    W = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    return x, W, b, rng.standard_normal((*batch, n)).astype(dtype)


def _dense_both(x, W, b, dy, **kw):
    """``(gpu, cpu)``: forward (y, z) and backward (dx, dW, db) on cupy, and on numpy in float64
    from the same inputs (and the GPU's y, z for the backward)."""
    gx, gW, gb, gdy = (cp.asarray(a) for a in (x, W, b, dy))
    y, z = fastreg.dense_dropout(gx, gW, gb, return_preact=True, **kw)
    grads = fastreg.dense_dropout_backward(gdy, gx, gW, y, z=z, **kw)
    wide = [a.astype(np.float64) for a in (x, W, b, dy)]
    cpu_y, cpu_z = fastreg.dense_dropout(*wide[:3], return_preact=True, backend="numpy", **kw)
    cpu_grads = fastreg.dense_dropout_backward(
        wide[3], *wide[:2], _host(y).astype(np.float64), z=_host(z).astype(np.float64),
        backend="numpy", **kw)
    return (y, z, *grads), (cpu_y, cpu_z, *cpu_grads)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("activation", DENSE_ACTIVATIONS)
@pytest.mark.parametrize(("batch", "k", "n"), DENSE_SHAPES, ids=str)
def test_dense_matches_numpy(dtype, activation, batch, k, n):
    x, W, b, dy = _dense_inputs(batch, k, n, dtype)
    kw = dict(p=0.3, seed=12345, offset=6, activation=activation)
    gpu, cpu = _dense_both(x, W, b, dy, **kw)
    for got, want in zip(gpu, cpu, strict=True):
        assert got.dtype == dtype and got.shape == want.shape
        _dc_close(got, want)
    keep = fastreg.dropout_mask((*batch, n), 0.3, seed=12345, offset=6, backend="numpy")
    y = _host(gpu[0])
    assert not y[~keep].any() and not np.signbit(y[~keep]).any()


def test_dense_identity_mask_exact(launch):
    x, W, b, _ = _dense_inputs((50,), 20, 70, np.float64, seed=1)
    y = fastreg.dense_dropout(cp.asarray(x), cp.asarray(W), cp.asarray(b), p=0.5, seed=3,
                              activation="identity")
    keep = fastreg.dropout_mask((50, 70), 0.5, seed=3, backend="numpy")
    np.testing.assert_array_equal(_host(y) != 0, keep)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_dense_independent_of_launch(dtype, activation):
    x, W, b, dy = (cp.asarray(a) for a in _dense_inputs((301,), 17, 139, dtype, seed=5))
    kw = dict(p=0.3, seed=7, activation=activation)
    results = set()
    for config in LAUNCHES:
        with cl.launch_config(*config):
            y, z = fastreg.dense_dropout(x, W, b, return_preact=True, **kw)
            grads = fastreg.dense_dropout_backward(dy, x, W, y, z=z, **kw)
        results.add(b"".join(_host(a).tobytes() for a in (y, z, *grads)))
    assert len(results) == 1


def test_dense_layouts():
    x, W, b, dy = _dense_inputs((6, 7), 11, 13, np.float64, seed=3)
    kw = dict(p=0.3, seed=1, activation="gelu")
    gpu, _ = _dense_both(x, W, b, dy, **kw)

    def strided(a):
        padded = cp.zeros(tuple(2 * s for s in a.shape))
        view = padded[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = cp.asarray(a)
        return view

    for change in (lambda a: cp.asfortranarray(cp.asarray(a)), strided):
        y, z = fastreg.dense_dropout(change(x), change(W), change(b), return_preact=True, **kw)
        grads = fastreg.dense_dropout_backward(change(dy), change(x), change(W), change(_host(y)),
                                               z=change(_host(z)), **kw)
        for got, want in zip((y, z, *grads), gpu, strict=True):
            assert got.flags.c_contiguous
            np.testing.assert_allclose(_host(got), _host(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_dense_training_false_p0_p1_and_nan(dtype):
    x, W, b, dy = (cp.asarray(a) for a in _dense_inputs((9,), 5, 6, dtype, seed=4))
    kw = dict(seed=2, activation="sigmoid")
    plain = fastreg.dense_dropout(x, W, b, p=0.7, training=False, **kw)
    y0 = fastreg.dense_dropout(x, W, b, p=0.0, **kw)
    np.testing.assert_array_equal(_host(y0), _host(plain))
    y1 = fastreg.dense_dropout(x, W, b, p=1.0, **kw)
    assert not y1.any() and not np.signbit(_host(y1)).any()
    for grad in fastreg.dense_dropout_backward(dy, x, W, y1, p=1.0, **kw):
        assert not grad.any()
    nan_x = cp.asarray(np.array([[np.nan, 1.0]], dtype))
    y = fastreg.dense_dropout(nan_x, cp.ones((2, 64), dtype), p=0.5, seed=1, activation="identity")
    keep = fastreg.dropout_mask((1, 64), 0.5, seed=1, backend="numpy")
    assert np.isnan(_host(y)[keep]).all() and not _host(y)[~keep].any()


def test_dense_empty():
    x, W, b, _ = (cp.asarray(a) for a in _dense_inputs((0,), 4, 3, np.float32))
    y = fastreg.dense_dropout(x, W, b, p=0.3, seed=1)
    assert y.shape == (0, 3)
    dx, dW, db = fastreg.dense_dropout_backward(y, x, W, y, p=0.3, seed=1)
    assert dx.shape == (0, 4) and not dW.any() and dW.shape == (4, 3) and not db.any()
    x0, W0 = cp.ones((5, 0), np.float32), cp.ones((0, 3), np.float32)
    y = fastreg.dense_dropout(x0, W0, cp.ones(3, np.float32), p=0.0, seed=1, activation="identity")
    np.testing.assert_array_equal(_host(y), np.ones((5, 3), np.float32))


# -------------------------------------------------------------------------------- bad input
# The same validation as on the CPU, on device arrays: an error naming the argument, and nothing
# written (in-place updates check every entry before the first launch).


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_dropout_bad_input_on_device_writes_nothing(dtype):
    x = cp.asarray(_data((3, 4), dtype))
    out = cp.full((3, 4), 7.0, dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    calls = [
        (ValueError, "p must be in", lambda: fastreg.dropout(x, 1.5, seed=1, out=out)),
        (ValueError, "offset", lambda: fastreg.dropout(x, 0.5, seed=1, offset=-3, out=out)),
        (ValueError, "seed", lambda: fastreg.dropout(x, 0.5, seed=-1, out=out)),
        (ValueError, "out must have shape",
         lambda: fastreg.dropout(x, 0.5, seed=1, out=cp.empty((4, 3), dtype))),
        (TypeError, "out must have dtype",
         lambda: fastreg.dropout(x, 0.5, seed=1, out=cp.empty((3, 4), other))),
        (ValueError, "noise_shape", lambda: fastreg.dropout(x, 0.5, seed=1, noise_shape=(2, 4))),
        (ValueError, "stddev", lambda: fastreg.gaussian_noise(x, -1.0, seed=1)),
        (ValueError, "p must be in", lambda: fastreg.gaussian_dropout(x, 1.0, seed=1)),
        (ValueError, "p must be in", lambda: fastreg.dropout_backward(x, 2.0, seed=1)),
    ]
    before = _host(x)
    for error, match, call in calls:
        with pytest.raises(error, match=match):
            call()
    np.testing.assert_array_equal(_host(x), before)
    assert bool((out == 7.0).all())


def test_dense_bad_input_on_device_modifies_nothing():
    from test_dense import _bad_backward_calls, _bad_forward_calls, make

    x, W, b, dy = (cp.asarray(a) for a in make((4, 3), 5, 6, np.float64, seed=6))
    y, z = fastreg.dense_dropout(x, W, b, p=0.5, seed=1, return_preact=True)
    arrays = (x, W, b, dy, y, z)
    before = [_host(a) for a in arrays]
    for error, word, call in _bad_forward_calls(x, W, b) + _bad_backward_calls(dy, x, W, y, z):
        with pytest.raises(error, match=word):
            call()
    for a, saved in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(_host(a), saved)


@pytest.mark.parametrize("per_example", [False, True], ids=["batch", "example"])
def test_dropconnect_bad_input_on_device(per_example):
    x, W, b, dy = (cp.asarray(a) for a in (np.ones((3, 4)), np.ones((4, 5)), np.ones(5),
                                            np.ones((3, 5))))
    kw = dict(p=0.5, seed=1, per_example=per_example)
    calls = [
        (ValueError, r"W must have shape \(4, 5\)", lambda: fastreg.dropconnect(x, W[:3], b, **kw)),
        (ValueError, r"b must have shape \(5,\)", lambda: fastreg.dropconnect(x, W, b[:4], **kw)),
        (TypeError, "b=float32", lambda: fastreg.dropconnect(x, W, b.astype(np.float32), **kw)),
        (ValueError, "p must be in", lambda: fastreg.dropconnect(x, W, b, **{**kw, "p": 1.5})),
        (ValueError, r"dy must have shape \(3, 5\)",
         lambda: fastreg.dropconnect_backward(dy[:, :4], x, W, **kw)),
        (TypeError, "x is a CuPy array, W a NumPy array",
         lambda: fastreg.dropconnect(x, np.ones((4, 5)), b, **kw)),
    ]
    for error, match, call in calls:
        with pytest.raises(error, match=match):
            call()


def test_prox_invalid_list_entry_on_device_modifies_nothing():
    rng = np.random.default_rng(20)
    shapes = [(3,), (4, 2), (5,)]
    ws = [cp.asarray(rng.standard_normal(s)) for s in shapes]
    gs = [cp.asarray(rng.standard_normal(s)) for s in shapes]
    bufs = [cp.zeros_like(w) for w in ws]
    ms, vs = [cp.zeros_like(w) for w in ws], [cp.zeros_like(w) for w in ws]
    before = [_host(a) for a in ws + bufs + ms + vs]
    calls = [
        (TypeError, r"grad\[2\]",
         lambda: fastreg.prox_sgd_(ws, [gs[0], gs[1], gs[2].astype(np.float32)], lr=0.1,
                                   momentum=0.9, buf=bufs)),
        (ValueError, r"mask\[1\] must have shape",
         lambda: fastreg.prox_sgd_(ws, gs, lr=0.1, mask=[None, cp.ones(3, bool), None])),
        (ValueError, "buf must have 3 entries",
         lambda: fastreg.prox_sgd_(ws, gs, lr=0.1, momentum=0.9, buf=bufs[:2])),
        (TypeError, r"grad\[1\] must be a cupy array like w, got a numpy array",
         lambda: fastreg.prox_sgd_(ws, [gs[0], np.ones((4, 2)), gs[2]], lr=0.1)),
        (ValueError, r"v\[2\] must have shape",
         lambda: fastreg.prox_adam_(ws, gs, ms, [vs[0], vs[1], vs[2][:4]], step=1, lr=0.1)),
        (ValueError, "lr", lambda: fastreg.prox_adam_(ws, gs, ms, vs, step=1, lr=-1.0)),
        (TypeError, r"w\[2\]",
         lambda: fastreg.prox_group_lasso_([ws[0], ws[1], ws[2].astype(np.int32)], t=0.1)),
        (ValueError, "axis", lambda: fastreg.max_norm_(ws, max_norm=1.0, axis=1)),
    ]
    for error, match, call in calls:
        with pytest.raises(error, match=match):
            call()
    for a, saved in zip(ws + bufs + ms + vs, before, strict=True):
        np.testing.assert_array_equal(_host(a), saved)


# ---------------------------------------------- augmentation (docs/contract/ops.md)
def _bf16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def _image_dtypes():
    return [np.dtype(np.uint8), np.dtype(np.float16), _bf16(), np.dtype(np.float32),
            np.dtype(np.float64)]


def _images(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    return rng.standard_normal(shape).astype(dtype)


def _device(a):
    try:
        return cp.asarray(a)
    except Exception:  # a CuPy without bfloat16 arrays
        pytest.skip(f"this CuPy holds no {a.dtype} arrays")


AUG_SHAPES = [((5, 6, 7, 3), "channels_last"), ((4, 2, 5, 6), "channels_first"),
              ((3, 7, 5), "channels_last")]
MOVE_OPS = {
    "flip": lambda x, **k: fastreg.random_flip(x, horizontal=True, vertical=True, **k),
    "translate": lambda x, **k: fastreg.random_translate(x, (2, 3), **k),
    "cutout": lambda x, **k: fastreg.random_cutout(x, (3, 2), **k),
    "augment": lambda x, **k: fastreg.augment(x, horizontal_flip=True, vertical_flip=True,
                                              max_shift=2, cutout=3, **k),
    "nearest": lambda x, **k: fastreg.random_affine(x, rotation=40, zoom=0.3, shift=0.2,
                                                    interpolation="nearest", **k),
}


@pytest.mark.parametrize("op", sorted(MOVE_OPS))
@pytest.mark.parametrize("dtype", _image_dtypes(), ids=lambda d: d.name)
@pytest.mark.parametrize(("shape", "data_format"), AUG_SHAPES, ids=["last", "first", "rank3"])
def test_augment_moves_bit_equal_to_numpy(op, dtype, shape, data_format):
    x = _images(shape, dtype)
    ids = np.array([9, 2, 2**61 - 1, 0, 7][: shape[0]], np.int64)
    kw = dict(seed=2**64 - 5, offset=3, fill=4, data_format=data_format)
    expected = MOVE_OPS[op](x, sample_ids=ids, backend="numpy", **kw)
    got = MOVE_OPS[op](_device(x), sample_ids=cp.asarray(ids), backend="cupy", **kw)
    assert isinstance(got, cp.ndarray) and got.dtype == dtype and got.shape == shape
    np.testing.assert_array_equal(_host(got).view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("op", ["augment", "nearest"])
def test_augment_moves_independent_of_the_launch(launch, op):
    x = _images((3, 5, 6, 2), np.float32)
    expected = MOVE_OPS[op](x, seed=1, backend="numpy")
    np.testing.assert_array_equal(_host(MOVE_OPS[op](cp.asarray(x), seed=1)), expected)


#: Bilinear blends: float32 weights and blend on both sides; the device may round a product
#: differently only if it fused it (--fmad=false forbids it), so a few float32 ulps of the
#: magnitude bound the difference, then one rounding to the storage type.
BLEND_ATOL = {"uint8": 1.0, "float16": 2.0**-9, "bfloat16": 2.0**-6, "float32": 1e-5,
              "float64": 1e-12}


@pytest.mark.parametrize("dtype", _image_dtypes(), ids=lambda d: d.name)
@pytest.mark.parametrize(("shape", "data_format"), AUG_SHAPES, ids=["last", "first", "rank3"])
def test_affine_bilinear_within_the_blend_tolerance(dtype, shape, data_format):
    x = _images(shape, dtype)
    kw = dict(rotation=35, zoom=0.25, shift=0.15, seed=11, fill=1, data_format=data_format)
    expected = fastreg.random_affine(x, backend="numpy", **kw)
    got = fastreg.random_affine(_device(x), backend="cupy", **kw)
    assert got.dtype == dtype
    scale = float(np.abs(x.astype(np.float64)).max()) + 1.0
    np.testing.assert_allclose(_host(got).astype(np.float64), expected.astype(np.float64),
                               rtol=0, atol=BLEND_ATOL[dtype.name] * scale)


def test_affine_identity_and_nan_fill_on_device():
    x = _images((3, 4, 5, 2), np.float32)
    same = fastreg.random_affine(cp.asarray(x), fill=float("nan"), seed=0)
    np.testing.assert_array_equal(_host(same), x)
    y = fastreg.random_affine(cp.asarray(x), shift=0.5, fill=float("nan"), seed=0)
    expected = fastreg.random_affine(x, shift=0.5, fill=float("nan"), seed=0, backend="numpy")
    np.testing.assert_allclose(_host(y), expected, rtol=0, atol=1e-5)
    assert np.isnan(expected).any()


def test_augment_device_rules():
    x = cp.asarray(_images((4, 5, 5), np.float32))
    assert fastreg.augment(x, max_shift=1, seed=0, training=False) is x
    with pytest.raises(TypeError, match="sample_ids must be a cupy array"):
        fastreg.augment(x, max_shift=1, seed=0, sample_ids=np.arange(4))
    with pytest.raises(ValueError, match="out must not overlap x"):
        fastreg.augment(x, max_shift=1, seed=0, out=x)
    with pytest.raises(TypeError, match="takes cupy arrays, got a numpy array for x"):
        fastreg.augment(_images((4, 5, 5), np.float32), seed=0, backend="cupy")
    out = cp.zeros((4, 5, 5), np.float32)
    assert fastreg.random_cutout(x, 2, seed=0, out=out) is out
    np.testing.assert_array_equal(_host(out), fastreg.random_cutout(_host(x), 2, seed=0,
                                                                    backend="numpy"))
