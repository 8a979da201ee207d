"""Fused dense + activation + dropout (docs/contract/ops.md) against PyTorch autograd on explicit
masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastreg

torch = pytest.importorskip("torch")

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "gelu")
#: (batch shape, K, N): 1x1x1, a 3-D batch, sizes not divisible by 4, and outputs of several
#: 2048-element Philox tiles whose rows straddle 4-element Philox blocks.
SHAPES = [((1,), 1, 1), ((3, 5), 7, 9), ((37,), 13, 5), ((2,), 3, 130), ((67,), 33, 129)]
P, SEED, OFFSET = 0.3, 12345, 6
#: Relative to the largest magnitude of the reference (GEMM rounding grows with K).
TOLERANCE = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}
TORCH_ACT = {
    "identity": lambda z: z,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": lambda z: torch.nn.functional.gelu(z, approximate="none"),
}


def assert_close(got, want, dtype):
    assert got.shape == want.shape and got.dtype == dtype
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[np.dtype(dtype)] * scale)


def explicit_keep(shape, p, seed, offset):
    """The keep-mask from the raw stream and the threshold of docs/contract/random-stream.md,
    checked against ``dropout_mask``."""
    bits = fastreg.random_bits(shape, seed=seed, offset=offset, backend="numpy")
    keep = bits.astype(np.uint64) >= min(math.floor(p * 2**32), 2**32 - 1) if p < 1 else bits < 0
    assert np.array_equal(keep, fastreg.dropout_mask(shape, p, seed=seed, offset=offset))
    return keep


def torch_oracle(x, W, b, dy, keep, p, activation):
    """``y`` and ``(dx, dW, db)`` by float64 autograd of ``where(keep, act(x@W+b)/(1-p), 0)``."""
    xt, Wt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, W))
    bt = torch.tensor(b if b is not None else np.zeros(W.shape[1]), dtype=torch.float64)
    bt.requires_grad_(True)
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    y = torch.where(torch.tensor(keep), TORCH_ACT[activation](xt @ Wt + bt) * scale, 0.0)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), Wt.grad.numpy(), bt.grad.numpy()


def make(batch, k, n, dtype, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch, k)).astype(dtype)
    W = (rng.standard_normal((k, n)) / math.sqrt(k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype) if bias else None
    dy = rng.standard_normal((*batch, n)).astype(dtype)
    return x, W, b, dy


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize(("batch", "k", "n"), SHAPES)
def test_forward_backward_match_torch(backend, dtype, activation, batch, k, n):
    x, W, b, dy = make(batch, k, n, dtype, bias=n != 9)
    keep = explicit_keep((*batch, n), P, SEED, OFFSET)
    ref_y, ref_dx, ref_dW, ref_db = torch_oracle(x, W, b, dy, keep, P, activation)
    kw = dict(p=P, seed=SEED, offset=OFFSET, activation=activation, backend=backend)
    y, z = fastreg.dense_dropout(x, W, b, return_preact=True, **kw)
    assert y.flags.c_contiguous and y.shape == (*batch, n)
    assert_close(y, ref_y, dtype)
    assert np.all(y[~keep] == 0) and not np.any(np.signbit(y[~keep]))
    assert_close(z, x.astype(np.float64) @ W + (0 if b is None else b), dtype)
    dx, dW, db = fastreg.dense_dropout_backward(dy, x, W, y, z=z, **kw)
    assert_close(dx, ref_dx, dtype)
    assert_close(dW, ref_dW, dtype)
    assert_close(db, ref_db, dtype)
    assert db.shape == (n,)


@pytest.mark.parametrize("activation", ["identity", "relu", "tanh"])
def test_equals_unfused_dropout(backend, activation):
    x, W, b, _ = make((50,), 20, 70, np.float64, seed=1)
    kw = dict(seed=SEED, offset=OFFSET, backend=backend)
    y = fastreg.dense_dropout(x, W, b, p=0.5, activation=activation, **kw)
    act = fastreg.dense_dropout(x, W, b, p=0.5, activation=activation, training=False, **kw)
    np.testing.assert_allclose(act, TORCH_ACT[activation](torch.tensor(x @ W + b)).numpy())
    unfused = fastreg.dropout(act, 0.5, **kw)
    np.testing.assert_allclose(y, unfused, rtol=1e-12, atol=1e-12)
    if activation == "identity":  # nothing kept is zero, so the zero pattern is the mask
        assert np.array_equal(y != 0, fastreg.dropout_mask(y.shape, 0.5, seed=SEED, offset=6))


def test_backends_agree_on_mask(dtype):
    x, W, b, dy = make((41,), 9, 23, dtype, seed=2)
    kw = dict(p=0.6, seed=2**64 - 1, offset=2**32 - 1, activation="identity")
    ys = [fastreg.dense_dropout(x, W, b, backend=name, **kw) for name in ("numpy", "numba")]
    assert np.array_equal(ys[0] == 0, ys[1] == 0)
    assert_close(ys[1], ys[0].astype(np.float64), dtype)


def test_layouts(backend):
    x, W, b, dy = make((6, 7), 11, 13, np.float64, seed=3)
    kw = dict(p=P, seed=SEED, activation="gelu", backend=backend)
    y, z = fastreg.dense_dropout(x, W, b, return_preact=True, **kw)
    grads = fastreg.dense_dropout_backward(dy, x, W, y, z=z, **kw)

    def strided(a):
        padded = np.zeros(tuple(2 * s for s in a.shape))
        view = padded[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view

    for change in (np.asfortranarray, strided):
        ys, zs = fastreg.dense_dropout(change(x), change(W), change(b), return_preact=True, **kw)
        np.testing.assert_allclose(ys, y, rtol=1e-12, atol=1e-12)
        got = fastreg.dense_dropout_backward(
            change(dy), change(x), change(W), change(ys), z=change(zs), **kw
        )
        for g, want in zip(got, grads, strict=True):
            assert g.flags.c_contiguous
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "gelu"])
def test_training_false_p0_p1(backend, dtype, activation):
    x, W, b, dy = make((9,), 5, 6, dtype, seed=4)
    kw = dict(seed=SEED, activation=activation, backend=backend)
    plain = fastreg.dense_dropout(x, W, b, p=0.7, training=False, **kw)
    everything = np.ones((9, 6), bool)
    ref_y, ref_dx, ref_dW, ref_db = torch_oracle(x, W, b, dy, everything, 0.0, activation)
    assert_close(plain, ref_y, dtype)
    y0, z0 = fastreg.dense_dropout(x, W, b, p=0.0, return_preact=True, **kw)
    assert np.array_equal(y0, plain)
    for got, want in zip(
        fastreg.dense_dropout_backward(dy, x, W, y0, p=0.0, z=z0, **kw),
        (ref_dx, ref_dW, ref_db),
        strict=True,
    ):
        assert_close(got, want, dtype)
    y1, z1 = fastreg.dense_dropout(x, W, b, p=1.0, return_preact=True, **kw)
    assert np.array_equal(y1, np.zeros_like(y1)) and not np.any(np.signbit(y1))
    for got in fastreg.dense_dropout_backward(dy, x, W, y1, p=1.0, z=z1, **kw):
        assert np.array_equal(got, np.zeros_like(got))


def test_dropped_nan_is_zero(backend):
    x = np.array([[np.nan, 1.0]])
    W = np.ones((2, 64))
    y = fastreg.dense_dropout(x, W, p=0.5, seed=1, activation="identity", backend=backend)
    keep = fastreg.dropout_mask((1, 64), 0.5, seed=1)
    assert np.all(np.isnan(y[keep])) and np.array_equal(y[~keep], np.zeros((~keep).sum()))


def test_parallel_path_matches_reference_for_any_thread_count():
    numba = pytest.importorskip("numba")
    # 1100 x 129 outputs: past the size below which the numba twin stays on one thread.
    x, W, b, dy = make((1100,), 17, 129, np.float32, seed=5)
    kw = dict(p=P, seed=SEED, activation="relu", backend="numba")
    results = []
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            y = fastreg.dense_dropout(x, W, b, **kw)
            results.append((y, *fastreg.dense_dropout_backward(dy, x, W, y, **kw)))
    finally:
        numba.set_num_threads(before)
    for a, c in zip(results[0], results[-1], strict=True):
        assert np.array_equal(a, c)
    ref_y = fastreg.dense_dropout(x, W, b, **{**kw, "backend": "numpy"})
    assert np.array_equal(results[0][0] == 0, ref_y == 0)
    ref = (ref_y, *fastreg.dense_dropout_backward(dy, x, W, ref_y, **{**kw, "backend": "numpy"}))
    for got, want in zip(results[0], ref, strict=True):
        assert_close(got, want.astype(np.float64), np.float32)


def test_empty_batch(backend):
    x, W, b, _ = make((0,), 4, 3, np.float64)
    y = fastreg.dense_dropout(x, W, b, p=P, seed=1, backend=backend)
    assert y.shape == (0, 3)
    dx, dW, db = fastreg.dense_dropout_backward(y, x, W, y, p=P, seed=1, backend=backend)
    assert dx.shape == (0, 4) and np.array_equal(dW, np.zeros((4, 3))) and db.shape == (3,)


def _bad_forward_calls(x, W, b):
    fwd = fastreg.dense_dropout
    kw = dict(p=0.5, seed=1)
    return [
        (TypeError, "x", lambda: fwd(x.astype(np.int64), W, b, **kw)),
        (TypeError, "x", lambda: fwd(x.tolist(), W, b, **kw)),
        (TypeError, "dtype", lambda: fwd(x, W.astype(np.float32), b, **kw)),
        (TypeError, "dtype", lambda: fwd(x, W, b.astype(np.float32), **kw)),
        (ValueError, "W", lambda: fwd(x, W[0], b, **kw)),
        (ValueError, "W", lambda: fwd(x, W[1:], b, **kw)),
        (ValueError, "b", lambda: fwd(x, W, b[1:], **kw)),
        (ValueError, "b", lambda: fwd(x, W, b[None], **kw)),
        (ValueError, "x", lambda: fwd(x[0, 0, :1].reshape(()), W, b, **kw)),
        (ValueError, "activation", lambda: fwd(x, W, b, activation="swish", **kw)),
        (TypeError, "activation", lambda: fwd(x, W, b, activation=None, **kw)),
        (ValueError, "p", lambda: fwd(x, W, b, p=1.5, seed=1)),
        (ValueError, "seed", lambda: fwd(x, W, b, p=0.5, seed=-1)),
        (ValueError, "offset", lambda: fwd(x, W, b, offset=2**32, **kw)),
        (TypeError, "training", lambda: fwd(x, W, b, training="yes", **kw)),
    ]


def _bad_backward_calls(dy, x, W, y, z):
    bwd = fastreg.dense_dropout_backward
    kw = dict(p=0.5, seed=1)
    return [
        (ValueError, "z", lambda: bwd(dy, x, W, y, activation="gelu", **kw)),
        (ValueError, "dy", lambda: bwd(dy[:, :-1], x, W, y, **kw)),
        (ValueError, "y", lambda: bwd(dy, x, W, y[:-1], **kw)),
        (ValueError, "z", lambda: bwd(dy, x, W, y, z=z[:, :-1], activation="gelu", **kw)),
        (ValueError, "W", lambda: bwd(dy, x, W[:-1], y, **kw)),
        (TypeError, "dtype", lambda: bwd(dy.astype(np.float32), x, W, y, **kw)),
        (TypeError, "dtype", lambda: bwd(dy, x, W, y, z=z.astype(np.float32), **kw)),
        (ValueError, "activation", lambda: bwd(dy, x, W, y, activation="elu", **kw)),
        (ValueError, "p", lambda: bwd(dy, x, W, y, p=-0.1, seed=1)),
    ]


def test_bad_input_raises_and_modifies_nothing(backend):
    x, W, b, dy = make((4, 3), 5, 6, np.float64, seed=6)
    y, z = fastreg.dense_dropout(x, W, b, p=0.5, seed=1, return_preact=True, backend=backend)
    arrays = (x, W, b, dy, y, z)
    before = [a.copy() for a in arrays]
    calls = _bad_forward_calls(x, W, b) + _bad_backward_calls(dy, x, W, y, z)
    with fastreg.use_backend(backend):
        for error, word, call in calls:
            with pytest.raises(error, match=word):
                call()
    for a, saved in zip(arrays, before, strict=True):
        assert np.array_equal(a, saved)


def test_numpy_array_on_cupy_backend_raises():
    if "cupy" in fastreg.available_backends():
        pytest.skip("the cupy backend is available here; this checks the unavailable path")
    x, W, b, _ = make((2,), 3, 4, np.float64)
    with pytest.raises(RuntimeError, match="cupy"):
        fastreg.dense_dropout(x, W, b, p=0.5, seed=1, backend="cupy")


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_backward_allocates_one_batch_by_n_array_besides_its_gradients(activation):
    """Issue 3's memory goal on numba: beyond dx, dW and db the backward holds one (M, N) array
    (dz, the gradient BLAS multiplies), no mask and no recomputed pre-activation; a second
    (M, N) float32 array here would be 2 MiB (tracemalloc sees NumPy's allocations)."""
    import tracemalloc

    m, k, n = 512, 64, 1024
    x, W, b, dy = make((m,), k, n, np.float32, seed=3)
    kw = dict(p=0.5, seed=2, activation=activation, backend="numba")
    y, z = fastreg.dense_dropout(x, W, b, return_preact=True, **kw)
    fastreg.dense_dropout_backward(dy[:2], x[:2], W, y[:2], z=z[:2], **kw)  # compile first
    tracemalloc.start()
    try:
        dx, dW, db = fastreg.dense_dropout_backward(dy, x, W, y, z=z, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    returned = dx.nbytes + dW.nbytes + db.nbytes
    one_batch_by_n = m * n * 4
    assert peak - returned < one_batch_by_n + (1 << 20)
