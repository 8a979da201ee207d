"""float16 and bfloat16 on the CPU backends (SPEC §4): float32 compute, one rounding.

Oracles are the SPEC formulas evaluated in float64 on the 16-bit inputs (widening is exact), with
masks from ``fastreg.random_bits``. Tolerances follow from the error bound: a result computed in
float32 with absolute error at most ``E`` and rounded once to the storage type is within
``0.5 ulp(|exact| + E) + E`` of the exact value (``ulp`` of the storage type). Where float32 is
exact (dropout: a 16-bit value times a 16-bit scale has at most 22 significant bits), ``E = 0``
and the result must equal ml_dtypes'/NumPy's rounding of the exact value bit for bit.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import fastreg
from fastreg._dtypes import compute_dtype, is_float, is_storage

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
#: float32's unit roundoff: each float32 operation errs by at most U relative.
U = 2.0**-24
#: (mantissa bits, smallest normal exponent) of each storage type.
_FORMAT = {F16: (10, -14), BF16: (7, -126)}


@pytest.fixture(params=[F16, BF16], ids=["f16", "bf16"])
def dtype16(request):
    return request.param


def ulp(values, dtype) -> np.ndarray:
    """The spacing of ``dtype`` (float16/bfloat16) at each ``|value|`` (float64)."""
    bits, emin = _FORMAT[np.dtype(dtype)]
    _, exponent = np.frexp(np.abs(np.asarray(values, np.float64)))
    return np.ldexp(1.0, np.maximum(exponent - 1, emin) - bits)


def assert_rounded_once(actual, exact, dtype, error=0.0) -> None:
    """``actual`` (of ``dtype``) is ``exact`` computed with absolute error <= ``error`` and then
    rounded once: ``|actual - exact| <= 0.5 ulp(|exact| + error) + error`` everywhere."""
    assert actual.dtype == np.dtype(dtype)
    got = np.asarray(actual, np.float64)
    exact = np.asarray(exact, np.float64)
    bound = 0.5 * ulp(np.abs(exact) + error, dtype) + error
    both_nan = np.isnan(got) & np.isnan(exact)
    excess = np.where(both_nan, 0.0, np.abs(got - exact) - bound)
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else None
    assert not (excess > 0).any(), (
        f"{np.count_nonzero(excess > 0)} elements off; worst at {worst}: got {got[worst]!r}, "
        f"exact {exact[worst]!r}, bound {bound[worst]!r}"
    )


def data(shape, dtype, seed=0, scale=1.0) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal(shape) * scale
    return values.astype(dtype)


def wide(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def keep_of(shape, p, seed, offset=0, salt=0) -> np.ndarray:
    """SPEC §3.3-3.4: ``bits(i) >= min(floor(p * 2**32), 2**32 - 1)``; nothing kept at p = 1."""
    bits = fastreg.random_bits(shape, seed=seed, offset=offset, salt=salt, backend="numpy")
    if p >= 1.0:
        return np.zeros(shape, bool)
    return bits.astype(np.uint64) >= min(math.floor(p * 2.0**32), 2**32 - 1)


def storage_scale(p, dtype) -> float:
    """SPEC §3.5: ``1/(1-p)`` computed in float64 and cast once to the array dtype."""
    return 0.0 if p >= 1.0 else float(np.asarray(1.0 / (1.0 - p)).astype(dtype))


# --- the dtype table -------------------------------------------------------------------------


def test_dtype_table():
    for dtype in (F16, BF16):
        assert is_float(dtype) and is_storage(dtype) and compute_dtype(dtype) == np.float32
    for dtype in (np.float32, np.float64):
        assert is_float(dtype) and not is_storage(dtype) and compute_dtype(dtype) == dtype
    for dtype in (np.int16, np.uint16, np.int32, np.bool_, np.complex64, ml_dtypes.float8_e4m3fn):
        assert not is_float(dtype) and not is_storage(dtype)


# --- the Numba conversions -------------------------------------------------------------------


def _conversion_kernels(portable):
    """Loops over the Numba conversions; ``portable`` picks float16's integer forms instead of
    the F16C instructions a machine with F16C compiles (both must be exact)."""
    numba = pytest.importorskip("numba")
    from fastreg._kernels import storage16 as s

    to32 = s.f16_to_f32_portable if portable else s.f16_to_f32
    to16 = s.f32_to_f16_portable if portable else s.f32_to_f16

    @numba.njit
    def widen(h, out, bf16):
        for t in range(h.size):
            out[t] = s.bf16_to_f32(h[t]) if bf16 else to32(h[t])

    @numba.njit
    def narrow(f, out, bf16):
        for t in range(f.size):
            out[t] = s.f32_to_bf16(f[t]) if bf16 else to16(f[t])

    @numba.njit
    def narrow_from_f64(d, out, bf16):
        for t in range(d.size):
            f = s.f64_to_f32_odd(d[t])
            out[t] = s.f32_to_bf16(f) if bf16 else to16(f)

    return widen, narrow, narrow_from_f64


def _same_bits_or_both_nan(got_bits, expected, dtype):
    got = got_bits.view(dtype)
    nan = np.isnan(expected.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), nan)
    np.testing.assert_array_equal(got_bits[~nan], expected.view(np.uint16)[~nan])


# bfloat16 has one form (integer arithmetic on every CPU); float16 has two.
@pytest.mark.parametrize(("dtype16", "portable"), [(F16, False), (F16, True), (BF16, False)],
                         ids=["f16-native", "f16-portable", "bf16"])
def test_conversions_match_numpy_and_ml_dtypes(dtype16, portable):
    widen, narrow, narrow_from_f64 = _conversion_kernels(portable)
    bf16 = dtype16 == BF16
    # Widening: all 2**16 inputs, bit for bit (NaN stays NaN).
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    out = np.empty(h.size, np.float32)
    widen(h, out, bf16)
    expected = h.view(dtype16).astype(np.float32)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(out.view(np.uint32)[~nan], expected.view(np.uint32)[~nan])
    assert np.isnan(out[nan]).all()
    # Rounding: every upper half of a float32 with the lower halves that decide nearest-even
    # (ties at bit 15 for bfloat16, at bit 12 for float16 normals, below/above them), plus
    # random words: subnormal ranges, overflow, inf and every NaN class are all covered.
    lows = np.array([0, 1, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000, 0x2FFF, 0x7FFF, 0x8000,
                     0x8001, 0xBFFF, 0xC000, 0xFFFF], np.uint32)
    highs = np.arange(2**16, dtype=np.uint32)
    words = np.concatenate([
        ((highs[:, None] << 16) | lows[None, :]).reshape(-1),
        np.random.default_rng(0).integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32),
    ])
    f = words.view(np.float32)
    got = np.empty(f.size, np.uint16)
    narrow(f, got, bf16)
    with np.errstate(over="ignore", invalid="ignore"):
        _same_bits_or_both_nan(got, f.astype(dtype16), dtype16)
    # From float64: one rounding (round to odd, then nearest even), ties broken by a far bit.
    d = np.random.default_rng(1).standard_normal(1 << 18) * 2.0 ** np.random.default_rng(2)\
        .integers(-30, 20, 1 << 18)
    bits, _ = _FORMAT[dtype16]
    tie = 1.0 + 2.0 ** -(bits + 1)
    d[:8] = [tie + 2.0**-40, tie - 2.0**-40, -tie - 2.0**-40, tie, 65519.99, 7e4, np.nan, -np.inf]
    got = np.empty(d.size, np.uint16)
    narrow_from_f64(d, got, bf16)
    with np.errstate(over="ignore", invalid="ignore"):
        _same_bits_or_both_nan(got, d.astype(dtype16), dtype16)


# --- the dropout family ----------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9, 1.0])
def test_dropout_rounds_once_and_keeps_float32_masks(backend, dtype16, p):
    x = data((37, 53), dtype16, scale=30.0)
    x[x == 0] = 1  # so a zero output means dropped
    keep = keep_of(x.shape, p, seed=5, offset=3)
    exact = np.where(keep, wide(x) * storage_scale(p, dtype16), 0.0)
    y = fastreg.dropout(x, p, seed=5, offset=3, backend=backend)
    assert y.dtype == dtype16 and y.shape == x.shape and y.flags.c_contiguous
    # A 16-bit value times a 16-bit scale is exact in float32: only the one rounding remains.
    assert_rounded_once(y, exact, dtype16)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(y.view(np.uint16), exact.astype(dtype16).view(np.uint16))
    y32 = fastreg.dropout(x.astype(np.float32), p, seed=5, offset=3, backend=backend)
    np.testing.assert_array_equal(y != 0, y32 != 0)
    np.testing.assert_array_equal(y != 0, keep)
    dx = fastreg.dropout_backward(x, p, seed=5, offset=3, backend=backend)
    np.testing.assert_array_equal(dx.view(np.uint16), y.view(np.uint16))


def test_dropout_layouts_out_in_place_and_noise_shape(backend, dtype16):
    x = data((9, 14), dtype16, seed=1, scale=4.0)
    expected = fastreg.dropout(x, 0.3, seed=2, backend="numpy")
    exact = np.where(keep_of(x.shape, 0.3, seed=2), wide(x) * storage_scale(0.3, dtype16), 0.0)
    assert_rounded_once(expected, exact, dtype16)
    for view in (np.asfortranarray(x), np.repeat(x, 2, axis=1)[:, ::2]):
        y = fastreg.dropout(view, 0.3, seed=2, backend=backend)
        np.testing.assert_array_equal(y.view(np.uint16), expected.view(np.uint16))
    out = np.asfortranarray(np.full_like(x, 7))
    assert fastreg.dropout(x, 0.3, seed=2, out=out, backend=backend) is out
    np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))
    inplace = x.copy()
    fastreg.dropout(inplace, 0.3, seed=2, out=inplace, backend=backend)
    np.testing.assert_array_equal(inplace.view(np.uint16), expected.view(np.uint16))
    rows = fastreg.dropout(x, 0.5, seed=2, noise_shape=(9, 1), backend=backend)
    keep_rows = keep_of((9, 1), 0.5, seed=2)
    assert_rounded_once(rows, np.where(keep_rows, wide(x) * 2.0, 0.0), dtype16)


def test_dropped_nan_inf_are_plus_zero_and_overflow_is_inf(backend, dtype16):
    big = float(np.finfo(dtype16).max)
    x = np.array([np.nan, np.inf, -np.inf, big, -big, 1.0] * 40, dtype16)
    keep = keep_of(x.shape, 0.5, seed=9)
    y = fastreg.dropout(x, 0.5, seed=9, backend=backend)
    np.testing.assert_array_equal(y.view(np.uint16)[~keep], 0)  # +0.0: no sign bit
    kept = wide(x)[keep] * 2.0
    got = wide(y)[keep]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(kept))
    finite = ~np.isnan(kept)
    np.testing.assert_array_equal(got[finite], np.where(np.abs(kept[finite]) > big,
                                                        np.sign(kept[finite]) * np.inf,
                                                        kept[finite]))


def _normals(shape, seed, offset):
    """SPEC §3 Gaussian draws: Box-Muller on the salt-2 stream, in float64."""
    n = math.prod(shape)
    i = np.arange(n, dtype=np.uint64)
    block = i >> np.uint64(1)
    counter = np.stack([block & np.uint64(0xFFFFFFFF), block >> np.uint64(32),
                        np.full(n, 2, np.uint64), np.full(n, offset, np.uint64)], axis=-1)
    key = np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint64)
    w = fastreg.philox4x32(counter.astype(np.uint32), key.astype(np.uint32)).astype(np.float64)
    h = (i & np.uint64(1)).astype(np.intp)
    rows = np.arange(n)
    u1 = (w[rows, 2 * h] + 0.5) * 2.0**-32
    u2 = (w[rows, 2 * h + 1] + 0.5) * 2.0**-32
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).reshape(shape)


def test_gaussian_noise_and_dropout_round_once_from_float64(backend, dtype16):
    x = data((256, 1024), dtype16, seed=3, scale=3.0)
    n = _normals(x.shape, seed=11, offset=4)
    # Float64 evaluation with a few ulp of libm error (~1e-15 relative), then one rounding:
    # double rounding through float32 would miss the half-ulp bound on some of 262k elements
    # (a few for bfloat16, whose float32 results land on a tie once in 2**16).
    for y, exact in (
        (fastreg.gaussian_noise(x, 0.7, seed=11, offset=4, backend=backend), wide(x) + 0.7 * n),
        (fastreg.gaussian_dropout(x, 0.3, seed=11, offset=4, backend=backend),
         wide(x) * (1.0 + math.sqrt(0.3 / 0.7) * n)),
    ):
        assert y.dtype == dtype16 and y.shape == x.shape
        assert_rounded_once(y, exact, dtype16, error=1e-13 * (np.abs(exact) + np.abs(wide(x))))


# --- dense + activation + dropout ------------------------------------------------------------


def _act(z, activation):
    from scipy.special import erf  # noqa: PLC0415 - scipy comes with scikit-learn

    return {
        "identity": lambda: z,
        "relu": lambda: np.maximum(z, 0.0),
        "tanh": lambda: np.tanh(z),
        "sigmoid": lambda: 1.0 / (1.0 + np.exp(-z)),
        "gelu": lambda: 0.5 * z * (1.0 + erf(z / math.sqrt(2.0))),
    }[activation]()


def _slope(a, z, activation):
    from scipy.special import erf  # noqa: PLC0415

    return {
        "identity": lambda: np.ones_like(a),
        "relu": lambda: (a > 0).astype(np.float64),
        "tanh": lambda: 1.0 - a * a,
        "sigmoid": lambda: a * (1.0 - a),
        "gelu": lambda: 0.5 * (1.0 + erf(z / math.sqrt(2.0)))
        + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi),
    }[activation]()


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh", "sigmoid", "gelu"])
def test_dense_dropout_forward_and_backward(backend, dtype16, activation):
    pytest.importorskip("scipy")
    M, K, N, p = 33, 40, 27, 0.3
    x, W, b = data((3, 11, K), dtype16, 1), data((K, N), dtype16, 2, 0.2), data(N, dtype16, 3)
    y, z = fastreg.dense_dropout(x, W, b, p=p, seed=4, offset=1, activation=activation,
                                 return_preact=True, backend=backend)
    assert y.dtype == z.dtype == dtype16 and y.shape == z.shape == (3, 11, N)
    x2 = wide(x).reshape(M, K)
    keep = keep_of((M, N), p, seed=4, offset=1)
    scale = storage_scale(p, dtype16)
    z_exact = x2 @ wide(W) + wide(b)
    # Float32 GEMM: |error| <= (K + 1) u (|x| @ |W| + |b|); act is 1-Lipschitz here (gelu's
    # slope stays below 1.13) and evaluated with a few ulp of float32 error.
    gemm = (K + 1) * U * (np.abs(x2) @ np.abs(wide(W)) + np.abs(wide(b)))
    a_exact = _act(z_exact, activation)
    act_error = 1.13 * gemm + 8 * U * (np.abs(a_exact) + 1.0) * (activation != "identity")
    assert_rounded_once(z.reshape(M, N), z_exact, dtype16, error=gemm)
    assert_rounded_once(y.reshape(M, N), np.where(keep, a_exact * scale, 0.0), dtype16,
                        error=np.where(keep, act_error * scale, 0.0))
    # Masks are float32's: the fused op on float32 inputs drops the same elements.
    y32 = fastreg.dense_dropout(x.astype(np.float32), W.astype(np.float32), b.astype(np.float32),
                                p=p, seed=4, offset=1, activation=activation, backend=backend)
    np.testing.assert_array_equal((y32 != 0) & ~keep.reshape(y32.shape), False)

    dy = data((3, 11, N), dtype16, 5)
    dx, dW, db = fastreg.dense_dropout_backward(dy, x, W, y, p=p, seed=4, offset=1,
                                                activation=activation, z=z, backend=backend)
    assert dx.dtype == dW.dtype == db.dtype == dtype16
    assert dx.shape == x.shape and dW.shape == (K, N) and db.shape == (N,)
    # The derivative comes from the stored y (a = y (1 - p), in float32) or the stored z.
    a = wide(y).reshape(M, N) / scale
    slope = _slope(a, wide(z).reshape(M, N), activation)
    g = wide(dy).reshape(M, N) * scale
    dz = np.where(keep, g * slope, 0.0)
    # Each dz element errs by a few u relative to |g| max(1, |slope|) (1 - a*a cancels);
    # then float32 GEMMs of length N (dx), M (dW, db).
    dz_bound = np.where(keep, np.abs(g) * np.maximum(1.0, np.abs(slope)), 0.0)
    assert_rounded_once(dx.reshape(M, K), dz @ wide(W).T, dtype16,
                        error=(N + 16) * U * (dz_bound @ np.abs(wide(W)).T))
    assert_rounded_once(dW, x2.T @ dz, dtype16, error=(M + 16) * U * (np.abs(x2).T @ dz_bound))
    assert_rounded_once(db, dz.sum(axis=0), dtype16, error=(M + 16) * U * dz_bound.sum(axis=0))


# --- DropConnect -----------------------------------------------------------------------------


@pytest.mark.parametrize("per_example", [False, True])
def test_dropconnect_forward_and_backward(backend, dtype16, per_example):
    B, K, N, p = 13, 24, 19, 0.4
    x, W, b = data((B, K), dtype16, 1), data((K, N), dtype16, 2), data(N, dtype16, 3)
    scale = storage_scale(p, dtype16)
    shape = (B, K, N) if per_example else (K, N)
    keep = keep_of(shape, p, seed=8, offset=2, salt=1)
    masked = np.where(keep, wide(W) * scale, 0.0)  # (K, N) or (B, K, N)
    xw = wide(x)
    if per_example:
        exact = np.einsum("bk,bkn->bn", xw, masked) + wide(b)
        bound = np.einsum("bk,bkn->bn", np.abs(xw), np.abs(masked))
    else:
        exact = xw @ masked + wide(b)
        bound = np.abs(xw) @ np.abs(masked)
    y = fastreg.dropconnect(x, W, b, p=p, seed=8, offset=2, per_example=per_example,
                            backend=backend)
    assert_rounded_once(y, exact, dtype16, error=(K + 2) * U * (bound + np.abs(wide(b))))

    dy = data((B, N), dtype16, 4)
    dx, dW, db = fastreg.dropconnect_backward(dy, x, W, p=p, seed=8, offset=2,
                                              per_example=per_example, backend=backend)
    assert dx.dtype == dW.dtype == db.dtype == dtype16
    g = wide(dy)
    m = masked if per_example else np.broadcast_to(masked, (B, K, N))
    dx_exact = np.einsum("bn,bkn->bk", g, m)
    dx_bound = np.einsum("bn,bkn->bk", np.abs(g), np.abs(m))
    dW_exact = np.einsum("bk,bn,bkn->kn", xw, g, np.where(np.broadcast_to(keep, m.shape),
                                                             scale, 0.0))
    dW_bound = np.abs(xw).T @ np.abs(g) * scale
    assert_rounded_once(dx, dx_exact, dtype16, error=(N + 2) * U * dx_bound)
    assert_rounded_once(dW, dW_exact, dtype16, error=(B + 2) * U * dW_bound)
    assert_rounded_once(db, g.sum(axis=0), dtype16, error=(B + 2) * U * np.abs(g).sum(axis=0))


def test_dropconnect_moments_and_inference(backend, dtype16):
    x, W, b = data((7, 12), dtype16, 1), data((12, 5), dtype16, 2), data(5, dtype16, 3)
    mean, var = fastreg.dropconnect_moments(x, W, b, p=0.25, backend=backend)
    xw, Ww = wide(x), wide(W)
    mean_exact, var_exact = xw @ Ww + wide(b), (xw**2) @ (Ww**2) / 3.0
    assert_rounded_once(mean, mean_exact, dtype16,
                        error=14 * U * (np.abs(xw) @ np.abs(Ww) + np.abs(wide(b))))
    assert_rounded_once(var, var_exact, dtype16, error=16 * U * var_exact)
    y = fastreg.dropconnect_inference(x, W, b, p=0.25, backend=backend)
    assert y.dtype == dtype16 and y.shape == (7, 5)
    # Sampled inference: the float32 op on the widened inputs (its own tests hold it to the
    # formula), rounded once.
    args = dict(p=0.25, activation="tanh", samples=4, seed=3, backend=backend)
    y = fastreg.dropconnect_inference(x, W, b, **args)
    y32 = fastreg.dropconnect_inference(*(a.astype(np.float32) for a in (x, W, b)), **args)
    np.testing.assert_array_equal(y.view(np.uint16), y32.astype(dtype16).view(np.uint16))


# --- proximal updates ------------------------------------------------------------------------


def _soft(v, t):
    return np.where(np.abs(v) <= t, 0.0, v - np.copysign(t, v))


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_prox_sgd_rounds_once_per_step(backend, dtype16, layout):
    lr, l1, l2, mom = 0.05, 0.3, 0.2, 0.9

    def arrange(a):
        if layout == "F":
            return np.asfortranarray(a)
        if layout == "strided":
            big = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
            big[:, ::2] = a
            return big[:, ::2]
        return a

    w = arrange(data((40, 30), dtype16, 1))
    buf = arrange(np.zeros((40, 30), dtype16))
    mask = np.random.default_rng(9).random((40, 30)) > 0.2
    for step in range(3):
        grad = arrange(data((40, 30), dtype16, 10 + step))
        w0, b0, g = wide(w), wide(buf), wide(grad)
        buf_exact = mom * b0 + g
        d = g + mom * buf_exact  # nesterov
        v = w0 - lr * d
        w_exact = np.where(mask, _soft(v, lr * l1) / (1 + 2 * lr * l2), 0.0)
        fastreg.prox_sgd_(w, grad, lr=lr, l1=l1, l2=l2, momentum=mom, nesterov=True, buf=buf,
                          mask=mask, backend=backend)
        assert w.dtype == buf.dtype == dtype16
        # A handful of float32 operations on terms no larger than |w| + lr |d| + lr l1.
        e = 8 * U * (np.abs(w0) + lr * (np.abs(g) + 2 * np.abs(b0)) + lr * l1)
        assert_rounded_once(buf, buf_exact, dtype16, error=4 * U * (np.abs(b0) + np.abs(g)))
        assert_rounded_once(w, w_exact, dtype16, error=np.where(mask, e, 0.0))
        assert (w.view(np.uint16)[~mask] == 0).all()  # +0.0


#: SPEC §4.4's penalty_metric="adam" where this build has the option (the prox in the Adam
#: metric is then no longer the default).
_ADAM_METRIC = (
    {"penalty_metric": "adam"}
    if "penalty_metric" in inspect.signature(fastreg.prox_adam_).parameters
    else {}
)


def test_prox_adam_rounds_once_per_step(backend, dtype16):
    lr, b1, b2, eps, l1, l2, wd = 0.01, 0.9, 0.999, 1e-8, 0.02, 0.01, 0.1
    w = data((50, 20), dtype16, 1)
    m, v = np.zeros_like(w), np.zeros_like(w)
    ws, ms, vs = [w, w[:7].copy()], [m, m[:7].copy()], [v, v[:7].copy()]
    for step in range(1, 4):
        grads = [data(a.shape, dtype16, 20 + step + k) for k, a in enumerate(ws)]
        before = [(wide(a), wide(b), wide(c), wide(g)) for a, b, c, g in zip(ws, ms, vs, grads,
                                                                             strict=True)]
        fastreg.prox_adam_(ws, grads, ms, vs, step=step, lr=lr, beta1=b1, beta2=b2, eps=eps,
                           l1=l1, l2=l2, weight_decay=wd, backend=backend, **_ADAM_METRIC)
        for (w0, m0, v0, g), wk, mk, vk in zip(before, ws, ms, vs, strict=True):
            m_exact = b1 * m0 + (1 - b1) * g
            v_exact = b2 * v0 + (1 - b2) * g * g
            assert_rounded_once(mk, m_exact, dtype16, error=4 * U * (np.abs(m0) + np.abs(g)))
            assert_rounded_once(vk, v_exact, dtype16, error=4 * U * (v0 + g * g))
            sq = np.sqrt(v_exact / (1 - b2**step))
            psi = sq + eps
            z = w0 - lr * wd * w0 - lr * (m_exact / (1 - b1**step)) / psi
            inv = 1.0 / psi
            # The step lr m_hat / psi and the threshold lr l1 / psi carry relative error of a
            # few u, plus psi's own error: sqrt of v's (4 u) and the rounding of eps.
            step_size = lr * (np.abs(m_exact) / (1 - b1**step) + l1) * inv
            e = 16 * U * (np.abs(w0) + step_size * (1 + sq * inv))
            w_exact = _soft(z, lr * l1 * inv) / (1 + 2 * lr * l2 * inv)  # the Adam metric
            assert_rounded_once(wk, w_exact, dtype16, error=e)


def test_group_prox_max_norm_and_penalty(backend, dtype16):
    w = data((12, 9), dtype16, 1)
    w[:, 3] = 0  # a zero group stays zero
    norms = np.sqrt((wide(w) ** 2).sum(axis=0))
    for name, scale in (("lasso", np.where(norms <= 1.5, 0.0, 1 - 1.5 / np.where(norms, norms, 1))),
                        ("max_norm", np.where(norms > 2.0, 2.0 / np.where(norms, norms, 1), 1.0))):
        a = w.copy()
        if name == "lasso":
            fastreg.prox_group_lasso_(a, t=1.5, axis=0, backend=backend)
        else:
            fastreg.max_norm_(a, max_norm=2.0, axis=0, backend=backend)
        exact = wide(w) * scale
        assert_rounded_once(a, exact, dtype16, error=3 * U * np.abs(exact))
        assert not np.isnan(wide(a)).any()
    expected = 0.3 * np.abs(wide(w)).sum() + 0.2 * (wide(w) ** 2).sum()
    assert fastreg.penalty(w, 0.3, 0.2, backend=backend) == pytest.approx(expected, rel=1e-12)
    t = np.asfortranarray(data((6, 5), dtype16, 2))  # an F-ordered group view, written back
    exact = wide(t) * np.minimum(1.0, 0.5 / np.sqrt((wide(t) ** 2).sum(axis=1)))[:, None]
    fastreg.max_norm_(t, max_norm=0.5, axis=1, backend=backend)
    assert_rounded_once(t, exact, dtype16, error=3 * U * np.abs(exact))


# --- errors ----------------------------------------------------------------------------------


def test_mixed_and_integer_dtypes_raise_type_error(backend, dtype16):
    other = BF16 if dtype16 == F16 else F16
    x, W, b = data((4, 3), dtype16), data((3, 2), dtype16), data(2, dtype16)
    kw = dict(backend=backend)
    with pytest.raises(TypeError, match="dtype"):
        fastreg.dropout(x, 0.5, seed=1, out=np.empty((4, 3), np.float32), **kw)
    with pytest.raises(TypeError, match="x must have dtype"):
        fastreg.dropout(x.view(np.uint16), 0.5, seed=1, **kw)
    with pytest.raises(TypeError, match="x must have dtype"):
        fastreg.gaussian_noise(x.astype(np.int16), 0.5, seed=1, **kw)
    with pytest.raises(TypeError, match="dtype"):
        fastreg.dense_dropout(x, W.astype(other), b, p=0.5, seed=1, **kw)
    with pytest.raises(TypeError, match="dtype"):
        fastreg.dense_dropout(x, W, b.astype(np.float32), p=0.5, seed=1, **kw)
    with pytest.raises(TypeError, match="dtype"):
        fastreg.dropconnect(x, W.astype(np.float32), p=0.5, seed=1, **kw)
    with pytest.raises(TypeError, match="dtype"):
        fastreg.dropconnect_backward(np.ones((4, 2), other), x, W, p=0.5, seed=1, **kw)
    w = data((3, 3), dtype16)
    before = w.copy()
    with pytest.raises(TypeError, match="grad"):
        fastreg.prox_sgd_(w, np.ones((3, 3), np.float32), lr=0.1, **kw)
    with pytest.raises(TypeError, match=r"buf\[1\]"):
        fastreg.prox_sgd_([w, w.copy()], [w.copy(), w.copy()], lr=0.1, momentum=0.9,
                          buf=[np.zeros_like(w), np.zeros((3, 3), other)], **kw)
    with pytest.raises(TypeError, match="w must have dtype"):
        fastreg.prox_group_lasso_(w.view(np.uint16), t=0.1, **kw)
    np.testing.assert_array_equal(w.view(np.uint16), before.view(np.uint16))  # untouched
