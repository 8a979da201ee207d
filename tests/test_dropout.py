"""The dropout family (docs/contract/ops.md) on every CPU backend, against oracles built from
the stream."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_gaussian_close, layouts, tolerance

import fastreg

SHAPES = [(1,), (7,), (3, 5), (2, 3, 5), (64, 33)]


def explicit_mask(shape, p, seed, offset=0):
    """The keep mask written from docs/contract/random-stream.md with the raw bits: an oracle for
    every op."""
    if p == 1.0:
        return np.zeros(shape, bool)
    bits = fastreg.random_bits(shape, seed=seed, offset=offset, backend="numpy")
    return bits >= min(math.floor(p * 2**32), 2**32 - 1)


def _data(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_equals_explicit_mask(backend, dtype, shape, p):
    x = _data(shape, dtype)
    y = fastreg.dropout(x, p, seed=11, offset=2, backend=backend)
    keep = explicit_mask(shape, p, 11, 2)
    scale = dtype.type(1.0 / (1.0 - p))
    assert y.dtype == dtype and y.shape == shape and y.flags.c_contiguous
    np.testing.assert_array_equal(y != 0, keep & (x != 0))
    np.testing.assert_array_equal(y, np.where(keep, x * scale, 0))  # same float ops: exact


def test_masks_identical_across_backends():
    for shape in [(1,), (5,), (1001,), (17, 9)]:
        masks = [
            fastreg.dropout_mask(shape, 0.3, seed=9, offset=4, backend=b)
            for b in ("numpy", "numba")
        ]
        assert masks[0].dtype == np.bool_ and masks[0].shape == shape
        np.testing.assert_array_equal(masks[0], masks[1])
        np.testing.assert_array_equal(masks[0], explicit_mask(shape, 0.3, 9, 4))


@pytest.mark.parametrize("n", [1, 7, 4096, 70_001])
@pytest.mark.parametrize("p", [0.3, 1.0])
def test_twin_apply_pair_masks_both_arrays_with_one_mask(backend, dtype, n, p):
    # The per-batch DropConnect backward's pass: W into a new buffer, its gradient in place.
    from fastreg import _backends
    from fastreg.random import derive_key, dropout_scale, kernel_threshold

    twin = _backends.twin("dropout", backend)
    x, g = _data(n, dtype, seed=1), _data(n, dtype, seed=2)
    x[:1] = np.nan  # dropped NaN is +0.0, kept NaN stays NaN
    out, g_before = np.full_like(x, 9.0), g.copy()
    twin.dropout_apply_pair(
        x, out, g, *derive_key(4), 1, 6, kernel_threshold(p), dropout_scale(p, dtype)
    )
    bits = fastreg.random_bits((n,), seed=4, offset=6, salt=1, backend="numpy")
    keep = bits >= min(math.floor(p * 2**32), 2**32 - 1) if p < 1.0 else np.zeros(n, bool)
    scale = dtype.type(1.0 / (1.0 - p)) if p < 1.0 else dtype.type(0)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(out, np.where(keep, x * scale, 0))
        np.testing.assert_array_equal(g, np.where(keep, g_before * scale, 0))
    assert not np.signbit(out[~keep]).any() and not np.signbit(g[~keep]).any()


@pytest.mark.parametrize("side", ["below", "above"])
def test_serial_and_parallel_numba_paths_match_numpy_bitwise(side):
    """Small arrays run on the calling thread, large ones in parallel tasks: both give the
    reference twin's bits (dropout, mask) and its normals to within a few ulp."""
    from fastreg._kernels.dropout import cpu_numba

    n = cpu_numba.SERIAL_WORK + (-3 if side == "below" else 5)
    x = _data(n, np.float32, seed=4)
    kw = dict(seed=2**33 + 9, offset=1)
    for op in (
        lambda b: fastreg.dropout(x, 0.4, backend=b, **kw),
        lambda b: fastreg.dropout_mask((n,), 0.4, backend=b, **kw),
    ):
        np.testing.assert_array_equal(op("numba"), op("numpy"))
    # a normal counts as 8 units of work: these sizes straddle the gaussian threshold too
    small = x[: n // 8 + (-3 if side == "below" else 5)]
    got = fastreg.gaussian_noise(small, 0.5, backend="numba", **kw)
    want = fastreg.gaussian_noise(small, 0.5, backend="numpy", **kw)
    assert_gaussian_close(got, want, small)


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_layouts_do_not_change_the_mask(backend, dtype, layout):
    x = _data((9, 14), dtype)
    reference = fastreg.dropout(x, 0.4, seed=5, backend="numpy")
    arranged = layouts(x)[layout]
    np.testing.assert_array_equal(
        fastreg.dropout(arranged, 0.4, seed=5, backend=backend), reference
    )
    np.testing.assert_array_equal(
        fastreg.dropout_backward(arranged, 0.4, seed=5, backend=backend), reference
    )


def test_out_of_any_layout_and_in_place(backend, dtype):
    x = _data((6, 10), dtype)
    expected = fastreg.dropout(x, 0.5, seed=3, backend="numpy")
    for out in layouts(np.zeros_like(x)).values():
        result = fastreg.dropout(x, 0.5, seed=3, out=out, backend=backend)
        assert result is out
        np.testing.assert_array_equal(out, expected)
    in_place = x.copy()
    assert fastreg.dropout(in_place, 0.5, seed=3, out=in_place, backend=backend) is in_place
    np.testing.assert_array_equal(in_place, expected)


def test_overlapping_out_reads_the_input_before_writing(backend):
    x = np.arange(1.0, 40_002.0)
    expected = fastreg.dropout(x[:-1].copy(), 0.5, seed=3, backend="numpy")
    shifted = fastreg.dropout(x[:-1], 0.5, seed=3, out=x[1:], backend=backend)
    np.testing.assert_array_equal(shifted, expected)
    a = np.arange(1.0, 40_001.0)
    view = a[:]  # the same memory through another view object
    np.testing.assert_array_equal(fastreg.dropout(a, 0.5, seed=3, out=view, backend=backend),
                                  fastreg.dropout(np.arange(1.0, 40_001.0), 0.5, seed=3))


def test_dropped_nan_and_inf_become_plus_zero(backend, dtype):
    x = np.array([np.nan, np.inf, -np.inf, -1.0] * 50, dtype)
    y = fastreg.dropout(x, 0.5, seed=1, backend=backend)
    keep = explicit_mask(x.shape, 0.5, 1)
    dropped = y[~keep]
    assert dropped.size > 0 and np.all(dropped == 0) and not np.any(np.signbit(dropped))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x) & keep)


def test_identity_cases_return_x_itself(backend):
    x = _data((4, 4), np.float32)
    assert fastreg.dropout(x, 0.0, seed=1, backend=backend) is x
    assert fastreg.dropout(x, 0.7, seed=1, training=False, backend=backend) is x
    out = np.empty_like(x)
    assert fastreg.dropout(x, 0.7, seed=1, training=False, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, x)


def test_p_one_drops_everything(backend, dtype):
    x = _data((37,), dtype)
    assert not np.any(fastreg.dropout(x, 1.0, seed=1, backend=backend))
    assert not np.any(fastreg.dropout_backward(x, 1.0, seed=1, backend=backend))
    assert not np.any(fastreg.dropout_mask(37, 1.0, seed=1, backend=backend))
    assert np.all(fastreg.dropout_mask(37, 0.0, seed=1, backend=backend))


def test_noise_shape_drops_whole_rows(backend, dtype):
    x = _data((40, 7), dtype) + 10  # no zeros in x
    y = fastreg.dropout(x, 0.5, seed=8, noise_shape=(40, 1), backend=backend)
    rows = explicit_mask((40, 1), 0.5, 8)  # mask index = flat index in noise_shape
    np.testing.assert_array_equal(y != 0, np.broadcast_to(rows, x.shape))
    same = fastreg.dropout(x, 0.5, seed=8, noise_shape=(None, 1), backend=backend)
    np.testing.assert_array_equal(same, y)
    columns = fastreg.dropout(x[None], 0.5, seed=8, noise_shape=(1, 1, 7), backend=backend)
    np.testing.assert_array_equal(
        columns[0] != 0, np.broadcast_to(explicit_mask((1, 1, 7), 0.5, 8)[0], x.shape)
    )
    full = fastreg.dropout(x, 0.5, seed=8, noise_shape=x.shape, backend=backend)
    np.testing.assert_array_equal(full, fastreg.dropout(x, 0.5, seed=8, backend=backend))
    grad = fastreg.dropout_backward(
        np.ones_like(x), 0.5, seed=8, noise_shape=(40, 1), backend=backend
    )
    np.testing.assert_array_equal(grad != 0, y != 0)


def test_backward_matches_torch_autograd(backend):
    torch = pytest.importorskip("torch")
    x = _data((13, 11), np.float64)
    dy = _data((13, 11), np.float64, seed=1)
    p = 0.35
    mask = torch.from_numpy(explicit_mask(x.shape, p, 21, 6).astype(np.float64))
    xt = torch.from_numpy(x).requires_grad_()
    (xt * mask / (1 - p)).backward(torch.from_numpy(dy))
    got = fastreg.dropout_backward(dy, p, seed=21, offset=6, backend=backend)
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-12, atol=0)
    y = fastreg.dropout(x, p, seed=21, offset=6, backend=backend)
    np.testing.assert_allclose(y, (xt * mask / (1 - p)).detach().numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_rate_is_binomial(backend, p):
    n = 1_000_003
    kept = int(fastreg.dropout_mask(n, p, seed=123, backend=backend).sum())
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(kept - n * (1 - p)) < 5 * sigma


def _normals_by_the_book(n, seed, offset):
    key = np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32)
    i = np.arange(n)
    counters = np.stack(
        [i >> 1, np.zeros(n, int), np.full(n, 2), np.full(n, offset)], axis=-1
    ).astype(np.uint32)
    words = fastreg.philox4x32(counters, key, backend="numpy").astype(np.float64)
    h = i & 1
    u1 = (words[i, 2 * h] + 0.5) * 2.0**-32
    u2 = (words[i, 2 * h + 1] + 0.5) * 2.0**-32
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


def test_gaussian_noise_follows_box_muller(backend, dtype):
    x = _data((5, 7), dtype)
    y = fastreg.gaussian_noise(x, 0.3, seed=2**35 + 1, offset=4, backend=backend)
    n = _normals_by_the_book(35, 2**35 + 1, 4).reshape(5, 7)
    expected = (x.astype(np.float64) + 0.3 * n).astype(dtype)
    np.testing.assert_allclose(y, expected, rtol=4 * tolerance(dtype), atol=4 * tolerance(dtype))
    assert y.dtype == dtype


def test_gaussian_dropout_follows_the_formula(backend, dtype):
    x = _data((3, 9), dtype)
    p = 0.2
    y = fastreg.gaussian_dropout(x, p, seed=7, backend=backend)
    n = _normals_by_the_book(27, 7, 0).reshape(3, 9)
    expected = (x.astype(np.float64) * (1 + math.sqrt(p / (1 - p)) * n)).astype(dtype)
    np.testing.assert_allclose(y, expected, rtol=4 * tolerance(dtype), atol=4 * tolerance(dtype))


def test_gaussian_statistics_and_identity(backend):
    z = np.zeros(400_001)
    y = fastreg.gaussian_noise(z, 1.5, seed=3, backend=backend)
    assert abs(y.mean()) < 5 * 1.5 / math.sqrt(z.size)
    assert abs(y.std() - 1.5) < 0.01
    ones = np.ones(400_001)
    g = fastreg.gaussian_dropout(ones, 0.5, seed=3, backend=backend)
    assert abs(g.mean() - 1) < 0.01 and abs(g.var() - 1.0) < 0.02  # p/(1-p) = 1
    assert fastreg.gaussian_noise(z, 1.0, seed=3, training=False, backend=backend) is z
    assert fastreg.gaussian_dropout(z, 0.0, seed=3, backend=backend) is z


@pytest.mark.parametrize("layout", ["F", "strided"])
def test_gaussian_layouts(backend, layout):
    x = _data((6, 5), np.float64)
    ref = fastreg.gaussian_noise(x, 1.0, seed=4, backend="numpy")
    got = fastreg.gaussian_noise(layouts(x)[layout], 1.0, seed=4, backend=backend)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


BAD_CALLS = [
    (lambda x: fastreg.dropout(x, 1.5, seed=1), ValueError, "p must be in"),
    (lambda x: fastreg.dropout(x, -0.1, seed=1), ValueError, "p must be in"),
    (lambda x: fastreg.dropout(x, float("nan"), seed=1), ValueError, "p must not be NaN"),
    (lambda x: fastreg.dropout(x, "0.5", seed=1), TypeError, "p must be a real number"),
    (lambda x: fastreg.dropout(x, 0.5, seed=-1), ValueError, "seed must be in"),
    (lambda x: fastreg.dropout(x, 0.5, seed=2**64), ValueError, "seed must be in"),
    (lambda x: fastreg.dropout(x, 0.5, seed=1.5), TypeError, "seed must be an int"),
    (lambda x: fastreg.dropout(x, 0.5, seed=None), TypeError, "seed"),
    (lambda x: fastreg.dropout(x, 0.5, seed=1, offset=2**32), ValueError, "offset must be in"),
    (lambda x: fastreg.dropout(x, 0.5, seed=1, offset=-1), ValueError, "offset must be in"),
    (lambda x: fastreg.dropout(x, 0.0, seed=-1), ValueError, "seed must be in"),
    (lambda x: fastreg.dropout(x, 0.5, seed=1, training=1), TypeError, "training must be a bool"),
    (lambda x: fastreg.dropout(x, 0.5, seed=1, noise_shape=(3,)), ValueError, "noise_shape"),
    (
        lambda x: fastreg.dropout(x, 0.5, seed=1, noise_shape=(2, 1)),
        ValueError,
        r"noise_shape\[0\]",
    ),
    (lambda x: fastreg.dropout(x.astype(np.int32), 0.5, seed=1), TypeError, "x must have dtype"),
    (lambda x: fastreg.dropout(x.tolist(), 0.5, seed=1), TypeError, "x must be a NumPy or CuPy"),
    (
        lambda x: fastreg.dropout(x, 0.5, seed=1, out=np.empty((3, 4), np.float64)),
        TypeError,
        "out must have dtype",
    ),
    (
        lambda x: fastreg.dropout(x, 0.5, seed=1, out=np.empty((4, 3), np.float32)),
        ValueError,
        "out must have shape",
    ),
    (lambda x: fastreg.dropout_backward(x, 2.0, seed=1), ValueError, "p must be in"),
    (lambda x: fastreg.dropout_mask((2, -1), 0.5, seed=1), ValueError, "shape"),
    (lambda x: fastreg.gaussian_noise(x, -1.0, seed=1), ValueError, "stddev"),
    (lambda x: fastreg.gaussian_dropout(x, 1.0, seed=1), ValueError, r"p must be in \[0, 1\)"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_bad_input_raises_and_writes_nothing(call, error, message):
    x = _data((3, 4), np.float32)
    before = x.copy()
    with pytest.raises(error, match=message):
        call(x)
    np.testing.assert_array_equal(x, before)


def test_bad_out_is_not_written(backend):
    x = _data((3, 4), np.float32)
    out = np.full((3, 4), 7.0, np.float32)
    with pytest.raises(ValueError):
        fastreg.dropout(x, 0.5, seed=1, offset=-3, out=out, backend=backend)
    assert np.all(out == 7.0)
