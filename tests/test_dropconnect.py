"""DropConnect (docs/contract/ops.md) against PyTorch autograd in float64 with masks built from
the stream.

The oracle masks come from ``fastreg.random_bits(..., salt=1)`` and the threshold formula of
docs/contract/random-stream.md, applied to ``W`` explicitly (a ``(K, N)`` mask per batch, a
``(B, K, N)`` one per example) and
differentiated by PyTorch; fastreg's kernels never build either.
"""

from __future__ import annotations

import functools
import inspect
import math
import tracemalloc

import numpy as np
import pytest
from helpers import layouts, tolerance

import fastreg
from fastreg._kernels.dropconnect import ref_numpy

torch = pytest.importorskip("torch")

SEED = 2**40 + 12345  # exercises both key words
OFFSET = 7

#: (leading dims of x, K, N): 1x1, sizes not divisible by 4, N across column tiles (1024) and
#: batches across example blocks (4), a multiple of 4, leading dims flattened.
SHAPES = [
    ((1,), 1, 1),
    ((3,), 5, 7),
    ((2, 3), 4, 6),
    ((11,), 9, 300),
    ((17,), 13, 4),
    ((1,), 3, 513),
    ((6,), 2, 2053),
]


def _threshold(p: float) -> int:
    return min(math.floor(p * 2.0**32), 2**32 - 1)


def _oracle(x, W, b, dy, p, per_example, seed=SEED, offset=OFFSET):
    """Forward and gradients by PyTorch autograd in float64 with an explicit mask tensor."""
    K, N = W.shape
    B = x.size // K if K else math.prod(x.shape[:-1])
    shape = (B, K, N) if per_example else (K, N)
    bits = fastreg.random_bits(shape, seed=seed, offset=offset, salt=1)
    keep = torch.from_numpy(bits.astype(np.int64) >= _threshold(p))
    xt = torch.tensor(x.reshape(B, K), dtype=torch.float64, requires_grad=True)
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    masked = torch.where(keep, Wt / (1.0 - p), torch.zeros((), dtype=torch.float64))
    if per_example:
        y = torch.einsum("bk,bkn->bn", xt, masked) + bt
    else:
        y = xt @ masked + bt
    y.backward(torch.tensor(dy.reshape(B, N), dtype=torch.float64))
    return (
        y.detach().numpy().reshape(*x.shape[:-1], N),
        xt.grad.numpy().reshape(x.shape),
        Wt.grad.numpy(),
        bt.grad.numpy(),
    )


def _inputs(lead, K, N, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, K)).astype(dtype)
    W = rng.standard_normal((K, N)).astype(dtype)
    b = rng.standard_normal(N).astype(dtype)
    dy = rng.standard_normal((*lead, N)).astype(dtype)
    return x, W, b, dy


def _close(got, ref, dtype):
    tol = tolerance(dtype)
    assert got.dtype == dtype and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("per_example", [False, True], ids=["batch", "example"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_torch_autograd(backend, dtype, shape, per_example):
    lead, K, N = shape
    x, W, b, dy = _inputs(lead, K, N, dtype)
    p = 0.3
    y_ref, dx_ref, dW_ref, db_ref = _oracle(x, W, b, dy, p, per_example)
    kw = dict(p=p, seed=SEED, offset=OFFSET, per_example=per_example, backend=backend)
    y = fastreg.dropconnect(x, W, b, **kw)
    dx, dW, db = fastreg.dropconnect_backward(dy, x, W, **kw)
    _close(y, y_ref, dtype)
    _close(dx, dx_ref, dtype)
    _close(dW, dW_ref, dtype)
    _close(db, db_ref, dtype)
    assert y.flags.c_contiguous and dx.flags.c_contiguous and dW.flags.c_contiguous


@pytest.mark.parametrize("per_example", [False, True], ids=["batch", "example"])
def test_masks_exact(backend, per_example):
    """One-hot rows of x pick rows of the masked weight exactly; unit x and dy give dW = mask."""
    K, N, p = 6, 37, 0.5
    W = np.random.default_rng(1).uniform(1.0, 2.0, (K, N))  # never zero: y != 0 iff kept
    x = np.eye(K)  # example e selects row e of its mask
    shape = (K, K, N) if per_example else (K, N)
    bits = fastreg.random_bits(shape, seed=SEED, offset=OFFSET, salt=1)
    keep = bits.astype(np.int64) >= _threshold(p)
    rows = keep[np.arange(K), np.arange(K)] if per_example else keep
    kw = dict(p=p, seed=SEED, offset=OFFSET, per_example=per_example, backend=backend)
    y = fastreg.dropconnect(x, W, **kw)
    np.testing.assert_array_equal(y != 0, rows)
    np.testing.assert_array_equal(y, np.where(rows, W * 2.0, 0.0))
    # dW with one example of ones: dW = keep * scale exactly
    _, dW, _ = fastreg.dropconnect_backward(np.ones((1, N)), np.ones((1, K)), W, **kw)
    np.testing.assert_array_equal(dW, np.where(keep[0] if per_example else keep, 2.0, 0.0))


def test_per_example_masks_differ_and_per_batch_shares(backend):
    K, N = 8, 16
    W = np.ones((K, N))
    x = np.ones((2, K))
    kw = dict(p=0.5, seed=SEED, backend=backend)
    y = fastreg.dropconnect(x, W, per_example=False, **kw)
    np.testing.assert_array_equal(y[0], y[1])
    y = fastreg.dropconnect(x, W, per_example=True, **kw)
    assert not np.array_equal(y[0], y[1])
    y_other = fastreg.dropconnect(x, W, per_example=True, offset=1, **kw)
    assert not np.array_equal(y, y_other)


def test_keep_rate(backend):
    """The kept fraction is within 5 sigma of the binomial expectation."""
    K, N, p = 64, 96, 0.3
    _, dW, _ = fastreg.dropconnect_backward(
        np.ones((1, N)), np.ones((1, K)), np.ones((K, N)), p=p, seed=3, backend=backend,
        per_example=True,
    )
    n = K * N
    kept = np.count_nonzero(dW)
    assert abs(kept - n * (1 - p)) < 5 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("per_example", [False, True], ids=["batch", "example"])
def test_layouts_give_the_same_result(backend, per_example):
    x, W, b, dy = _inputs((5,), 6, 9, np.float64, seed=2)
    kw = dict(p=0.4, seed=1, per_example=per_example, backend=backend)
    y = fastreg.dropconnect(x, W, b, **kw)
    grads = fastreg.dropconnect_backward(dy, x, W, **kw)
    for name in ("F", "strided"):
        xs, Ws, dys = layouts(x)[name], layouts(W)[name], layouts(dy)[name]
        np.testing.assert_array_equal(fastreg.dropconnect(xs, Ws, b, **kw), y)
        for got, ref in zip(fastreg.dropconnect_backward(dys, xs, Ws, **kw), grads, strict=True):
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("per_example", [False, True], ids=["batch", "example"])
def test_mean_network_and_edge_probabilities(backend, dtype, per_example):
    x, W, b, dy = _inputs((4,), 5, 6, dtype, seed=3)
    kw = dict(seed=1, per_example=per_example, backend=backend)
    xd, Wd, bd, dyd = (a.astype(np.float64) for a in (x, W, b, dy))
    mean = xd @ Wd + bd
    _close(fastreg.dropconnect(x, W, b, p=0.5, training=False, **kw), mean, dtype)
    _close(fastreg.dropconnect(x, W, b, p=0.0, **kw), mean, dtype)
    dx, dW, db = fastreg.dropconnect_backward(dy, x, W, p=0.0, **kw)
    _close(dx, dyd @ Wd.T, dtype)
    _close(dW, xd.T @ dyd, dtype)
    _close(db, dyd.sum(0), dtype)
    # p == 1 drops every weight: y is the bias, gradients of x and W are zeros
    np.testing.assert_array_equal(fastreg.dropconnect(x, W, b, p=1.0, **kw), np.tile(b, (4, 1)))
    np.testing.assert_array_equal(fastreg.dropconnect(x, W, p=1.0, **kw), np.zeros((4, 6)))
    dx, dW, db = fastreg.dropconnect_backward(dy, x, W, p=1.0, **kw)
    assert not dx.any() and not dW.any() and dx.dtype == dtype
    _close(db, dyd.sum(0), dtype)


def test_twin_p_one_threshold():
    """The twins themselves handle threshold 2**32 (p == 1): nothing kept."""
    x, W, b, dy = _inputs((3,), 4, 5, np.float64)
    for twin in _twins():
        y = twin.example_forward(x, W, b, 1, 2, 1, 0, 2**32, 0.0)
        np.testing.assert_array_equal(y, np.tile(b, (3, 1)))
        dx, dW = twin.example_backward(dy, x, W, 1, 2, 1, 0, 2**32, 0.0)
        assert not dx.any() and not dW.any()


def _twins():
    twins = [ref_numpy]
    if "numba" in fastreg.available_backends():
        from fastreg._kernels.dropconnect import cpu_numba

        twins.append(cpu_numba)
    return twins


def test_twins_share_names_and_signatures():
    pytest.importorskip("numba")
    from fastreg._kernels.dropconnect import cpu_numba

    public = ("example_forward", "example_backward", "relu_gaussian_mean")
    for name in public:
        assert inspect.signature(getattr(ref_numpy, name)) == inspect.signature(
            getattr(cpu_numba, name)
        )


def test_per_example_independent_of_thread_count():
    numba = pytest.importorskip("numba")
    x, W, b, dy = _inputs((19,), 7, 1030, np.float32, seed=4)
    kw = dict(p=0.5, seed=9, per_example=True, backend="numba")
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            results.append(
                (fastreg.dropconnect(x, W, b, **kw), *fastreg.dropconnect_backward(dy, x, W, **kw))
            )
    finally:
        numba.set_num_threads(before)
    for got, ref in zip(results[-1], results[0], strict=True):
        np.testing.assert_array_equal(got, ref)


def test_per_example_memory_is_o_tile(backend):
    """A (B, K, N) float64 array here is 32 MiB; forward + backward may allocate at most 4 MiB
    (tracemalloc sees NumPy's and Numba's allocations)."""
    B, K, N = 64, 256, 256
    x, W, b, dy = _inputs((B,), K, N, np.float64, seed=5)
    kw = dict(p=0.5, seed=1, per_example=True, backend=backend)
    small = _inputs((2,), 4, 8, np.float64)  # compile before measuring
    fastreg.dropconnect(*small[:3], **kw)
    fastreg.dropconnect_backward(small[3], *small[:2], **kw)
    tracemalloc.start()
    try:
        fastreg.dropconnect(x, W, b, **kw)
        fastreg.dropconnect_backward(dy, x, W, **kw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outputs = (B * N + B * K + K * N + N) * 8
    limit = 4 * 2**20
    assert 8 * limit <= B * K * N * 8  # a (B, K, N) array could not hide under the limit
    assert peak - outputs < limit, f"peak {peak} B beyond outputs {outputs} B"


# ---------------------------------------------------------------------------------------------
# Gaussian moment-matching inference (Wan et al. 2013)


@functools.cache
def _mc_problem(backend):
    """A small layer, its per-example DropConnect outputs for R copies of each input row."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 20))
    W = rng.standard_normal((20, 8)) / math.sqrt(20)
    b = -(x @ W).mean(0)  # pre-activations near 0, where relu's curvature matters most
    R = 3000
    y = fastreg.dropconnect(
        np.tile(x, (R, 1)), W, b, p=0.5, seed=11, per_example=True, backend=backend
    )
    return x, W, b, y.reshape(R, 5, 8)


def test_moments_match_sampled_masks(backend):
    x, W, b, y = _mc_problem(backend)
    mean, var = fastreg.dropconnect_moments(x, W, b, p=0.5, backend=backend)
    R = y.shape[0]
    np.testing.assert_allclose(y.mean(0), mean, atol=6 * np.sqrt(var.max() / R))
    np.testing.assert_allclose(y.var(0), var, rtol=0.15)


def test_moment_matching_beats_mean_network(backend):
    x, W, b, y = _mc_problem(backend)
    mc = np.maximum(y, 0.0).mean(0)  # Monte-Carlo E[relu(u)] over sampled masks
    matched = fastreg.dropconnect_inference(x, W, b, p=0.5, backend=backend)
    mean_net = np.maximum(x @ W + b, 0.0)
    err_matched = np.abs(matched - mc).mean()
    err_mean = np.abs(mean_net - mc).mean()
    assert err_matched < 0.25 * err_mean
    sampled = fastreg.dropconnect_inference(x, W, b, p=0.5, samples=1000, seed=3, backend=backend)
    assert np.abs(sampled - mc).mean() < 0.25 * err_mean
    assert np.abs(sampled - matched).mean() < 0.03


def test_relu_closed_form_against_scipy(backend):
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(7)
    x, W = rng.standard_normal((3, 2, 6)), rng.standard_normal((6, 5))
    x[0, 0] = 0.0  # sigma == 0 rows: relu(mu)
    mean, var = fastreg.dropconnect_moments(x, W, p=0.3, backend=backend)
    sigma = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sigma
        ref = mean * special.ndtr(z) + sigma * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    ref = np.where(sigma > 0, ref, np.maximum(mean, 0.0))
    got = fastreg.dropconnect_inference(x, W, p=0.3, backend=backend)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert got.shape == (3, 2, 5)
    ident = fastreg.dropconnect_inference(x, W, p=0.3, activation="identity", backend=backend)
    np.testing.assert_array_equal(ident, mean)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_sampled_inference_other_activations(backend, activation):
    rng = np.random.default_rng(8)
    x, W = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    mean, var = fastreg.dropconnect_moments(x, W, p=0.5, backend=backend)
    z = np.random.default_rng(9).standard_normal((20000, 1, 1))
    act = np.tanh if activation == "tanh" else (lambda u: 1 / (1 + np.exp(-u)))
    ref = act(mean + np.sqrt(var) * z).mean(0)
    got = fastreg.dropconnect_inference(
        x, W, p=0.5, activation=activation, samples=4000, seed=1, backend=backend
    )
    np.testing.assert_allclose(got, ref, atol=0.03)


# ---------------------------------------------------------------------------------------------
# Bad input (docs/contract/errors.md)

X, Wt, B_, DY = _inputs((3,), 4, 5, np.float64)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(p=1.5), ValueError, "p must be in"),
        (dict(p=-0.1), ValueError, "p must be in"),
        (dict(p="a"), TypeError, "p must be a real"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=2**64), ValueError, "seed"),
        (dict(seed=None), TypeError, "seed"),
        (dict(offset=2**32), ValueError, "offset"),
        (dict(per_example=1), TypeError, "per_example must be a bool"),
        (dict(W=np.ones((5, 5))), ValueError, r"W must have shape \(4, 5\)"),
        (dict(W=np.ones(4)), ValueError, "W must be 2-dimensional"),
        (dict(b=np.ones(4)), ValueError, r"b must have shape \(5,\)"),
        (dict(x=np.ones((3, 4), np.int64)), TypeError, "x must have dtype"),
        (dict(x=[[1.0] * 4] * 3), TypeError, "x must be a NumPy or CuPy array"),
        (dict(b=np.ones(5, np.float32)), TypeError, "b=float32"),
        (dict(backend="nope"), ValueError, "backend must be one of"),
    ],
)
def test_forward_bad_input(kwargs, error, match):
    args = dict(x=X, W=Wt, b=B_, p=0.5, seed=1, per_example=True)
    args.update(kwargs)
    x, W, b = args.pop("x"), args.pop("W"), args.pop("b")
    with pytest.raises(error, match=match):
        fastreg.dropconnect(x, W, b, **args)


def test_training_flag_checked():
    with pytest.raises(TypeError, match="training must be a bool"):
        fastreg.dropconnect(X, Wt, p=0.5, seed=1, training="no")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(dy=np.ones((3, 4))), ValueError, r"dy must have shape \(3, 5\)"),
        (dict(dy=np.ones((2, 5))), ValueError, r"dy must have shape \(3, 5\)"),
        (dict(dy=np.ones((3, 5), np.float32)), TypeError, "dy=float32"),
        (dict(W=np.ones((3, 5))), ValueError, r"W must have shape \(4, 5\)"),
        (dict(p=2.0), ValueError, "p must be in"),
        (dict(offset=-1), ValueError, "offset"),
    ],
)
def test_backward_bad_input(kwargs, error, match):
    args = dict(dy=DY, x=X, W=Wt, p=0.5, seed=1, per_example=False)
    args.update(kwargs)
    dy, x, W = args.pop("dy"), args.pop("x"), args.pop("W")
    with pytest.raises(error, match=match):
        fastreg.dropconnect_backward(dy, x, W, **args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(activation="gelu"), ValueError, "activation must be one of"),
        (dict(activation="tanh"), ValueError, "samples must be an int >= 1"),
        (dict(samples=0), ValueError, "samples must be an int >= 1"),
        (dict(samples=2.5), TypeError, "samples must be an int"),
        (dict(samples=3, offset=2**32), ValueError, "offset must be in"),
        (dict(samples=3, seed=-2), ValueError, "seed must be in"),
        (dict(p=1.2), ValueError, "p must be in"),
    ],
)
def test_inference_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastreg.dropconnect_inference(X, Wt, B_, **{"p": 0.5, **kwargs})


@pytest.mark.parametrize("per_example", [False, True], ids=["batch", "example"])
@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 0, 4), (2, 3, 0)], ids=str)
def test_empty_dimensions(backend, shape, per_example):
    B, K, N = shape
    x, W, b, dy = np.ones((B, K)), np.ones((K, N)), np.arange(N, dtype=np.float64), np.ones((B, N))
    kw = dict(p=0.5, seed=1, per_example=per_example, backend=backend)
    np.testing.assert_array_equal(fastreg.dropconnect(x, W, b, **kw), np.tile(b, (B, 1)))
    dx, dW, db = fastreg.dropconnect_backward(dy, x, W, **kw)
    assert dx.shape == (B, K) and dW.shape == (K, N) and db.shape == (N,)
    assert not dx.any() and not dW.any()
    np.testing.assert_array_equal(db, np.full(N, float(B)))
