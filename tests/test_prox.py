"""Proximal updates (docs/contract/ops.md): scalar references, soft-threshold optimality,
scikit-learn's ElasticNet, PyTorch's SGD/AdamW, NumPy norms for groups; lists, layouts and bad
input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import layouts, tolerance

import fastreg
from fastreg import max_norm_, penalty, prox_adam_, prox_group_lasso_, prox_sgd_

CHUNK = 1 << 15  # the Numba twin's task size: shapes below straddle it


def _soft_ref(v: float, t: float) -> float:
    """The textbook if/else soft threshold."""
    if v > t:
        return v - t
    if v < -t:
        return v + t
    return 0.0


def _close(actual, expected, dtype) -> None:
    np.testing.assert_allclose(actual, expected, rtol=tolerance(dtype), atol=tolerance(dtype))


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- prox_sgd_ formula


@pytest.mark.parametrize("shape", [(1, 1), (7,), (3, 5, 2), (3 * CHUNK + 5,)])
def test_prox_sgd_matches_scalar_reference(backend, dtype, shape):
    rng = _rng(1)
    w0 = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    lr, l1, l2 = 0.1, 0.8, 0.3
    w = w0.copy()
    assert prox_sgd_(w, g, lr=lr, l1=l1, l2=l2, backend=backend) is w
    v = w0.astype(np.float64) - lr * g.astype(np.float64)
    expected = np.array([_soft_ref(x, lr * l1) / (1 + 2 * lr * l2) for x in v.ravel()])
    _close(w.ravel(), expected, dtype)
    # exact zeros exactly where the scalar reference gives zero (away from the threshold edge)
    clear = np.abs(np.abs(v.ravel()) - lr * l1) > 1e-4
    np.testing.assert_array_equal((w.ravel() == 0)[clear], (expected == 0)[clear])


def test_soft_threshold_edges_and_signed_zero(backend, dtype):
    # |v| == t exactly is inside the threshold; -0.0, tiny values and NaN/Inf behave as stated.
    w = np.array([0.5, -0.5, 0.25, -0.0, 0.0, 1e-30, np.inf, -np.inf, np.nan], dtype=dtype)
    prox_sgd_(w, np.zeros_like(w), lr=1.0, l1=0.5, backend=backend)
    assert w[:6].tolist() == [0.0] * 6
    assert not np.signbit(w[:6]).any()  # +0.0, never -0.0
    assert w[6] == np.inf and w[7] == -np.inf and np.isnan(w[8])


def test_soft_threshold_optimality(backend):
    # w* = argmin 0.5*(w - v)**2 + lr*l1*|w| + lr*l2*w**2: its optimality conditions
    rng = _rng(2)
    v = rng.standard_normal(1000) * 2
    lr, l1, l2 = 0.5, 1.1, 0.7
    w = v.copy()
    prox_sgd_(w, np.zeros_like(w), lr=lr, l1=l1, l2=l2, backend=backend)
    nonzero = w != 0
    residual = (w - v) + lr * l1 * np.sign(w) + 2 * lr * l2 * w
    assert np.max(np.abs(residual[nonzero])) < 1e-12
    assert np.all(np.abs(v[~nonzero]) <= lr * l1)
    assert np.all(np.sign(w[nonzero]) == np.sign(v[nonzero]))
    assert 0 < nonzero.sum() < v.size


def test_mask_zeroes_dropped_weights_exactly(backend, dtype):
    rng = _rng(3)
    w0 = rng.standard_normal((33, 17)).astype(dtype)
    w0[0, 0] = np.nan  # a dropped NaN still becomes +0.0 (select, not multiply)
    g = rng.standard_normal((33, 17)).astype(dtype)
    keep = rng.random((33, 17)) > 0.4
    keep[0, 0] = False
    w, plain = w0.copy(), w0.copy()
    prox_sgd_(w, g, lr=0.1, l1=0.2, mask=keep, backend=backend)
    prox_sgd_(plain, g, lr=0.1, l1=0.2, backend="numpy")
    assert np.all(w[~keep] == 0) and not np.signbit(w[~keep]).any()
    _close(w[keep], plain[keep], dtype)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_torch_sgd(backend, nesterov):
    torch = pytest.importorskip("torch")
    rng = _rng(4)
    w0 = rng.standard_normal((5, 9))
    grads = rng.standard_normal((6, 5, 9))
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.9, nesterov=nesterov)
    w, buf = w0.copy(), np.zeros_like(w0)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        prox_sgd_(w, g, lr=0.05, momentum=0.9, nesterov=nesterov, buf=buf, backend=backend)
        _close(w, p.detach().numpy(), np.float64)
    _close(buf, opt.state[p]["momentum_buffer"].numpy(), np.float64)


def test_momentum_zero_leaves_buf_untouched(backend):
    w, buf = np.ones(5), np.full(5, 7.0)
    prox_sgd_(w, np.ones(5), lr=0.5, buf=buf, backend=backend)
    assert buf.tolist() == [7.0] * 5 and w.tolist() == [0.5] * 5


# ---------------------------------------------------------------- oracles: ElasticNet, subgradient


def test_fista_with_prox_sgd_reaches_sklearn_elasticnet(backend):
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    rng = _rng(5)
    n, p = 60, 25
    X = rng.standard_normal((n, p))
    w_true = np.zeros(p)
    w_true[:5] = [3.0, -2.0, 1.5, 0.0, 1.0]
    y = X @ w_true + 0.1 * rng.standard_normal(n)
    alpha, l1_ratio = 0.1, 0.7
    enet = sklearn_linear.ElasticNet(
        alpha=alpha, l1_ratio=l1_ratio, fit_intercept=False, tol=1e-14, max_iter=100_000
    ).fit(X, y)
    # the mapping stated in prox_sgd_'s docstring
    lr = n / np.linalg.norm(X, 2) ** 2
    l1, l2 = alpha * l1_ratio, alpha * (1 - l1_ratio) / 2
    w, w_prev, t = np.zeros(p), np.zeros(p), 1.0
    for _ in range(3000):
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z = w + (t - 1) / t_next * (w - w_prev)
        w_prev = w
        prox_sgd_(z, X.T @ (X @ z - y) / n, lr=lr, l1=l1, l2=l2, backend=backend)
        w, t = z, t_next
    np.testing.assert_allclose(w, enet.coef_, atol=1e-8)
    np.testing.assert_array_equal(w != 0, enet.coef_ != 0)
    assert 0 < np.count_nonzero(w) < p


def test_prox_gives_exact_zeros_where_subgradient_does_not(backend):
    # Keras adds l1*sign(w) to the gradient (a subgradient step): weights oscillate around 0 and
    # are never exactly zero. The prox step lands on exact zeros.
    rng = _rng(6)
    n, p = 200, 30
    X = rng.standard_normal((n, p))
    y = X[:, :3] @ np.array([2.0, -1.0, 0.5]) + 0.05 * rng.standard_normal(n)
    lr, l1 = 0.05, 0.05
    w_sub, w_prox = np.full(p, 0.1), np.full(p, 0.1)
    for _ in range(500):
        w_sub -= lr * (X.T @ (X @ w_sub - y) / n + l1 * np.sign(w_sub))
        prox_sgd_(w_prox, X.T @ (X @ w_prox - y) / n, lr=lr, l1=l1, backend=backend)
    assert np.count_nonzero(w_sub == 0) == 0
    assert np.count_nonzero(w_prox == 0) >= p - 5
    assert np.all(w_prox[:3] != 0)

    def objective(w):
        return np.sum((X @ w - y) ** 2) / (2 * n) + penalty(w, l1=l1)

    assert objective(w_prox) <= objective(w_sub) + 1e-6


# ---------------------------------------------------------------- prox_adam_


def test_prox_adam_without_penalty_matches_torch_adamw(backend):
    torch = pytest.importorskip("torch")
    rng = _rng(7)
    w0 = rng.standard_normal((4, 11))
    grads = rng.standard_normal((8, 4, 11))
    p = torch.nn.Parameter(torch.tensor(w0))
    kw = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
    opt = torch.optim.AdamW([p], **kw)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for step, g in enumerate(grads, start=1):
        p.grad = torch.tensor(g)
        opt.step()
        prox_adam_(w, g, m, v, step=step, lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6,
                   weight_decay=0.05, backend=backend)
        _close(w, p.detach().numpy(), np.float64)
    _close(m, opt.state[p]["exp_avg"].numpy(), np.float64)
    _close(v, opt.state[p]["exp_avg_sq"].numpy(), np.float64)


@pytest.mark.parametrize("metric", ["decoupled", "adam"])
def test_prox_adam_matches_scalar_reference(backend, dtype, metric):
    rng = _rng(8)
    w0, g = rng.standard_normal((2, 3 * CHUNK + 3)).astype(dtype)
    m0 = rng.standard_normal(w0.shape).astype(dtype) * 0.1
    v0 = rng.random(w0.shape).astype(dtype) * 0.1
    keep = rng.random(w0.shape) > 0.2
    lr, b1, b2, eps, l1, l2, wd, step = 0.05, 0.9, 0.999, 1e-8, 0.02, 0.3, 0.01, 3
    w, m, v = w0.copy(), m0.copy(), v0.copy()
    prox_adam_(w, g, m, v, step=step, lr=lr, beta1=b1, beta2=b2, eps=eps, l1=l1, l2=l2,
               weight_decay=wd, mask=keep, penalty_metric=metric, backend=backend)
    W, G, M, V = (a.astype(np.float64) for a in (w0, g, m0, v0))
    M = b1 * M + (1 - b1) * G
    V = b2 * V + (1 - b2) * G * G
    psi = np.sqrt(V / (1 - b2**step)) + eps
    z = W - lr * (M / (1 - b1**step)) / psi - lr * wd * W
    scale = 1 / psi if metric == "adam" else np.ones_like(psi)  # docs/contract/ops.md
    thr = lr * l1 * scale
    expected = np.array([_soft_ref(zi, ti) for zi, ti in zip(z, thr, strict=True)])
    expected = np.where(keep, expected / (1 + 2 * lr * l2 * scale), 0.0)
    _close(m, M, dtype)
    _close(v, V, dtype)
    _close(w, expected, dtype)
    assert np.all(w[~keep] == 0) and np.count_nonzero(w[keep] == 0) > 0


def test_prox_adam_decoupled_default_keeps_unused_coordinates(backend):
    """A coordinate whose gradient is always zero has psi = eps: in the Adam metric its L1
    threshold lr*l1/eps = 1.0 zeroes it in one step; the default (decoupled) shrinks it by
    lr*l1 = 1e-8 only (docs/contract/ops.md)."""
    kw = dict(step=1, lr=1e-3, l1=1e-5, eps=1e-8, backend=backend)
    w, m, v = np.full(4, 0.5), np.zeros(4), np.zeros(4)
    prox_adam_(w, np.zeros(4), m, v, **kw)
    assert np.allclose(w, 0.5 - 1e-8, rtol=0, atol=1e-15)
    w, m, v = np.full(4, 0.5), np.zeros(4), np.zeros(4)
    prox_adam_(w, np.zeros(4), m, v, penalty_metric="adam", **kw)
    assert np.all(w == 0.0)


# ---------------------------------------------------------------- groups


def _norms(w, axis):
    return np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=axis, keepdims=True))


@pytest.mark.parametrize(
    "shape,axis", [((6, 5), 0), ((6, 5), 1), ((6, 5), -1), ((3, 4, 5), (0, 1)), ((3, 4, 5), None),
                   ((1, 1), 0), ((200, 3), 0)]
)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_group_lasso_matches_numpy_norms(backend, dtype, shape, axis, layout):
    rng = _rng(9)
    w0 = rng.standard_normal(shape).astype(dtype)
    norms = _norms(w0, axis)
    t = 0.97 * float(np.median(norms))  # no group sits on the threshold
    w = layouts(w0.copy())[layout]  # "C" may be w0 itself
    prox_group_lasso_(w, t=t, axis=axis, backend=backend)
    scale = np.where(norms <= t, 0.0, 1 - t / np.where(norms > 0, norms, 1))
    _close(w, w0 * scale, dtype)
    assert np.array_equal(w == 0, np.broadcast_to(scale == 0, shape))


@pytest.mark.parametrize("shape,axis", [((6, 5), 0), ((6, 5), 1), ((2, 3, 4, 5), (0, 1, 2))])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_max_norm_matches_numpy_norms(backend, dtype, shape, axis, layout):
    rng = _rng(10)
    w0 = rng.standard_normal(shape).astype(dtype)
    norms = _norms(w0, axis)
    bound = 0.97 * float(np.median(norms))
    w = layouts(w0.copy())[layout]  # "C" may be w0 itself
    max_norm_(w, max_norm=bound, axis=axis, backend=backend)
    _close(w, w0 * np.minimum(1.0, bound / norms), dtype)
    after = _norms(w, axis)
    assert np.all(after <= bound * (1 + 4 * tolerance(dtype)))
    untouched = np.broadcast_to(norms <= bound, shape)
    np.testing.assert_array_equal(w[untouched], w0[untouched])  # exact: no epsilon


def test_zero_groups_stay_zero_without_nan(backend):
    w = np.zeros((4, 3))
    w[:, 1] = [1.0, -2.0, 0.0, 2.0]
    prox_group_lasso_(w, t=0.0, backend=backend)
    max_norm_(w, max_norm=0.0, backend=backend)  # every group scaled to exactly +0.0
    assert not np.isnan(w).any() and np.all(w == 0) and not np.signbit(w).any()


def test_dense_kernel_axis0_prunes_whole_units(backend):
    W = np.array([[3.0, 0.1, 1.0], [4.0, 0.1, -1.0]])  # column norms 5, 0.14, 1.41
    prox_group_lasso_(W, t=1.0, backend=backend)
    assert np.all(W[:, 1] == 0) and np.all(W[:, [0, 2]] != 0)


# ---------------------------------------------------------------- penalty


def test_penalty_is_the_keras_formula(backend, dtype):
    rng = _rng(11)
    w = layouts(rng.standard_normal((37, 3)).astype(dtype))["strided"]
    expected = 0.3 * np.abs(w.astype(np.float64)).sum() + 0.2 * (w.astype(np.float64) ** 2).sum()
    assert math.isclose(penalty(w, 0.3, 0.2, backend=backend), expected, rel_tol=1e-12)
    ws = [w, np.ones(3 * CHUNK + 1, dtype)]
    assert math.isclose(penalty(ws, l1=0.3, l2=0.2, backend=backend),
                        expected + 0.5 * (3 * CHUNK + 1), rel_tol=1e-12)
    assert penalty(np.array([np.inf, 1.0]), l2=1.0, backend=backend) == np.inf
    assert penalty(np.array([np.inf, 1.0]), backend=backend) == 0.0  # no 0 * inf


# ---------------------------------------------------------------- lists


def _tensors(shapes, dtypes, seed=12):
    rng = _rng(seed)
    return [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes, strict=True)]


_SHAPES = [(3, 4), (1,), (CHUNK + 7,), (0,), (2, 2, 2), (5, 1)]
_DTYPES = [np.float32, np.float64, np.float32, np.float32, np.float64, np.float32]


def test_sgd_list_equals_one_call_per_tensor(backend):
    ws, gs = _tensors(_SHAPES, _DTYPES), _tensors(_SHAPES, _DTYPES, seed=13)
    bufs = [np.full_like(w, 0.5) for w in ws]
    rng = _rng(14)
    masks = [None if k % 2 else rng.random(w.shape) > 0.5 for k, w in enumerate(ws)]
    ws[4] = np.asfortranarray(ws[4].copy())  # layouts may differ between tensors
    each = [w.copy() for w in ws]
    each_bufs = [b.copy() for b in bufs]
    kw = dict(lr=0.1, l1=0.3, l2=0.1, momentum=0.9, nesterov=True)
    out = prox_sgd_(ws, gs, buf=bufs, mask=masks, backend=backend, **kw)
    assert out is ws
    for k in range(len(ws)):
        prox_sgd_(each[k], gs[k], buf=each_bufs[k], mask=masks[k], backend="numpy", **kw)
        _close(ws[k], each[k], ws[k].dtype)
        _close(bufs[k], each_bufs[k], ws[k].dtype)
        np.testing.assert_array_equal(ws[k] == 0, each[k] == 0)


def test_adam_list_equals_one_call_per_tensor(backend):
    ws, gs = _tensors(_SHAPES, _DTYPES), _tensors(_SHAPES, _DTYPES, seed=15)
    ms = [np.zeros_like(w) for w in ws]
    vs = [np.zeros_like(w) for w in ws]
    rng = _rng(16)
    masks = [None if k % 2 else rng.random(w.shape) > 0.5 for k, w in enumerate(ws)]
    each, each_m, each_v = ([a.copy() for a in x] for x in (ws, ms, vs))
    kw = dict(step=2, lr=0.1, l1=0.05, l2=0.1, weight_decay=0.01)
    prox_adam_(tuple(ws), gs, ms, vs, mask=masks, backend=backend, **kw)
    for k in range(len(ws)):
        prox_adam_(each[k], gs[k], each_m[k], each_v[k], mask=masks[k], backend="numpy", **kw)
        for a, b in ((ws, each), (ms, each_m), (vs, each_v)):
            _close(a[k], b[k], ws[k].dtype)


def test_list_without_data_word_uses_array_interface(monkeypatch):
    from fastreg._kernels.prox import cpu_numba

    assert cpu_numba._data_word() >= 0  # calibrated against ndarray.ctypes.data
    ws, gs = _tensors(_SHAPES, _DTYPES), _tensors(_SHAPES, _DTYPES, seed=17)
    expected = [w.copy() for w in ws]
    prox_sgd_(expected, gs, lr=0.1, l1=0.2, backend="numba")
    monkeypatch.setattr(cpu_numba, "_data_word_cache", [-1])
    prox_sgd_(ws, gs, lr=0.1, l1=0.2, backend="numba")
    for a, b in zip(ws, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_group_ops_and_penalty_take_lists(backend):
    ws = _tensors([(4, 3), (5,), (2, 3, 2)], [np.float32, np.float64, np.float32])
    each = [w.copy() for w in ws]
    prox_group_lasso_(ws, t=0.7, axis=-1, backend=backend)
    max_norm_(ws, max_norm=1.0, axis=-1, backend=backend)
    for w, e in zip(ws, each, strict=True):
        prox_group_lasso_(e, t=0.7, axis=-1, backend="numpy")
        max_norm_(e, max_norm=1.0, axis=-1, backend="numpy")
        _close(w, e, w.dtype)


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize("w_layout", ["C", "F", "strided"])
@pytest.mark.parametrize("other_layout", ["C", "F", "strided"])
def test_updates_land_in_the_callers_arrays(backend, w_layout, other_layout):
    rng = _rng(18)
    base = [rng.standard_normal((7, 5)) for _ in range(5)]
    base[4] = np.abs(base[4])  # Adam's second moment
    keep = rng.random((7, 5)) > 0.3
    w = layouts(base[0])[w_layout]
    g, buf = (layouts(a)[other_layout] for a in base[1:3])
    mask = layouts(keep)[other_layout]
    w_ref, buf_ref = base[0].copy(), base[2].copy()
    prox_sgd_(w, g, lr=0.1, l1=0.3, momentum=0.5, buf=buf, mask=mask, backend=backend)
    prox_sgd_(w_ref, base[1], lr=0.1, l1=0.3, momentum=0.5, buf=buf_ref, mask=keep,
              backend="numpy")
    _close(w, w_ref, np.float64)
    _close(buf, buf_ref, np.float64)
    w2, m, v = (layouts(a)[w_layout] for a in base[2:])
    w2_ref, m_ref, v_ref = (a.copy() for a in base[2:])
    prox_adam_(w2, g, m, v, step=1, lr=0.1, l1=0.1, backend=backend)
    prox_adam_(w2_ref, base[1], m_ref, v_ref, step=1, lr=0.1, l1=0.1, backend="numpy")
    for a, b in ((w2, w2_ref), (m, m_ref), (v, v_ref)):
        _close(a, b, np.float64)


@pytest.mark.parametrize("n", [CHUNK + 9, 2 * CHUNK + 9], ids=["serial", "parallel"])
def test_numba_agrees_with_numpy_bit_for_bit_on_elementwise_updates(dtype, n):
    pytest.importorskip("numba")
    rng = _rng(19)
    w0, g, b0 = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    results = {}
    for name in ("numpy", "numba"):
        w, buf = w0.copy(), b0.copy()
        prox_sgd_(w, g, lr=0.01, l1=0.5, l2=0.2, momentum=0.9, buf=buf, backend=name)
        results[name] = (w, buf)
    for a, b in zip(results["numpy"], results["numba"], strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- bad input


def _snapshot(arrays):
    return [a.copy() for a in arrays]


@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(lr=-0.1), ValueError),
        (dict(lr=float("inf")), ValueError),
        (dict(lr=0.1, l1=-1.0), ValueError),
        (dict(lr=0.1, l2=float("nan")), ValueError),
        (dict(lr="0.1"), TypeError),
        (dict(lr=0.1, momentum=0.9), ValueError),  # no buf
        (dict(lr=0.1, nesterov=True), ValueError),  # no momentum
        (dict(lr=0.1, nesterov=1), TypeError),
    ],
)
def test_prox_sgd_bad_scalars(backend, kwargs, error):
    w = np.ones(4)
    with pytest.raises(error):
        prox_sgd_(w, np.ones(4), backend=backend, **kwargs)
    assert w.tolist() == [1.0] * 4


def test_prox_sgd_bad_arrays(backend):
    w = np.ones((2, 3))
    with pytest.raises(TypeError, match="grad"):
        prox_sgd_(w, np.ones((2, 3), np.int64), lr=0.1, backend=backend)
    with pytest.raises(TypeError, match="float32"):
        prox_sgd_(w, np.ones((2, 3), np.float32), lr=0.1, backend=backend)
    with pytest.raises(ValueError, match=r"grad must have shape \(2, 3\)"):
        prox_sgd_(w, np.ones((3, 2)), lr=0.1, backend=backend)
    with pytest.raises(TypeError, match=r"w\[0\] must be a NumPy or CuPy array"):
        prox_sgd_([1.0, 2.0], [1.0, 2.0], lr=0.1, backend=backend)
    with pytest.raises(TypeError, match="mask must have dtype bool"):
        prox_sgd_(w, np.ones((2, 3)), lr=0.1, mask=np.ones((2, 3)), backend=backend)
    with pytest.raises(TypeError, match="grad must be one array"):
        prox_sgd_(w, [np.ones((2, 3))], lr=0.1, backend=backend)
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        prox_sgd_(frozen, np.ones(3), lr=0.1, backend=backend)
    buf = np.ones((2, 3))
    buf.flags.writeable = False
    with pytest.raises(ValueError, match="buf must be a writeable"):
        prox_sgd_(w, np.ones((2, 3)), lr=0.1, momentum=0.5, buf=buf, backend=backend)
    assert np.all(w == 1)


def test_invalid_list_entry_modifies_nothing(backend):
    ws = _tensors([(3,), (4, 2), (5,)], [np.float64] * 3)
    gs = _tensors([(3,), (4, 2), (5,)], [np.float64] * 3, seed=20)
    bufs = [np.zeros_like(w) for w in ws]
    before = _snapshot(ws + bufs)
    bad_grads = [gs[0], gs[1], gs[2].astype(np.float32)]  # the last one is wrong
    with pytest.raises(TypeError, match=r"grad\[2\]"):
        prox_sgd_(ws, bad_grads, lr=0.1, momentum=0.9, buf=bufs, backend=backend)
    with pytest.raises(ValueError, match=r"mask\[1\] must have shape"):
        prox_sgd_(ws, gs, lr=0.1, mask=[None, np.ones(3, bool), None], backend=backend)
    with pytest.raises(ValueError, match="buf must have 3 entries"):
        prox_sgd_(ws, gs, lr=0.1, momentum=0.9, buf=bufs[:2], backend=backend)
    with pytest.raises(TypeError, match=r"buf\[1\]"):
        prox_sgd_(ws, gs, lr=0.1, momentum=0.9, buf=[bufs[0], None, bufs[2]], backend=backend)
    ms, vs = [np.zeros_like(w) for w in ws], [np.zeros_like(w) for w in ws]
    vs[2] = vs[2][:4]
    with pytest.raises(ValueError, match=r"v\[2\] must have shape"):
        prox_adam_(ws, gs, ms, vs, step=1, lr=0.1, backend=backend)
    ws_bad = [ws[0], ws[1], ws[2].astype(np.int32)]
    with pytest.raises(TypeError, match=r"w\[2\]"):
        prox_group_lasso_(ws_bad, t=0.1, backend=backend)
    with pytest.raises(ValueError, match="axis"):
        max_norm_(ws, max_norm=1.0, axis=1, backend=backend)  # ws[0] and ws[2] are 1-D
    for a, b in zip(ws + bufs + ms, before + [np.zeros_like(w) for w in ws], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(step=0, lr=0.1), ValueError),
        (dict(step=1.0, lr=0.1), TypeError),
        (dict(step=1, lr=0.1, beta1=1.0), ValueError),
        (dict(step=1, lr=0.1, beta2=-0.1), ValueError),
        (dict(step=1, lr=0.1, eps=-1.0), ValueError),
        (dict(step=1, lr=0.1, weight_decay=-1.0), ValueError),
        (dict(step=1, lr=0.1, penalty_metric="euclid"), ValueError),
        (dict(step=1, lr=0.1, penalty_metric=None), TypeError),
    ],
)
def test_prox_adam_bad_scalars(backend, kwargs, error):
    w, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    with pytest.raises(error):
        prox_adam_(w, np.ones(3), m, v, backend=backend, **kwargs)
    assert w.tolist() == [1.0] * 3 and m.tolist() == [0.0] * 3


def test_group_ops_bad_input(backend):
    w = np.ones((3, 2))
    with pytest.raises(ValueError, match="t must be"):
        prox_group_lasso_(w, t=-1.0, backend=backend)
    with pytest.raises(ValueError, match="max_norm must be"):
        max_norm_(w, max_norm=-1.0, backend=backend)
    with pytest.raises(ValueError, match="axis"):
        max_norm_(w, max_norm=1.0, axis=2, backend=backend)
    with pytest.raises(ValueError, match="repeat"):
        max_norm_(w, max_norm=1.0, axis=(0, -2), backend=backend)
    with pytest.raises(TypeError, match="axis"):
        max_norm_(w, max_norm=1.0, axis=0.5, backend=backend)
    with pytest.raises(TypeError, match="dtype"):
        penalty(np.ones(3, np.int64), l1=1.0, backend=backend)
    with pytest.raises(ValueError, match="l2"):
        penalty(w, l2=-1.0, backend=backend)
    assert np.all(w == 1)


def test_top_level_exports():
    for name in ("prox_sgd_", "prox_adam_", "prox_group_lasso_", "max_norm_", "penalty"):
        assert callable(getattr(fastreg, name))


# ---------------------------------------------------------------- the same array twice
# docs/contract/errors.md: arguments that are the very same array are accepted and the result is
# the formula's: every value is computed from the arrays as the call found them, then the states
# are written (buf; m, then v), then w, so the shared array ends holding the last one written.

_WRITE_ORDER = ("grad", "buf", "m", "v", "w")  # grad is never written: first, so never "last"


def _shared_arrays(names, same, seed):
    """Found values for ``names`` (the names in ``same`` share one array), positive so that any
    of them may be ``v``, and the arrays to pass."""
    rng = _rng(seed)
    found = {name: rng.uniform(0.1, 2.0, 40) for name in names}
    for name in same[1:]:
        found[name] = found[same[0]]
    shared = found[same[0]].copy()
    arrays = {name: shared if name in same else found[name].copy() for name in names}
    return found, arrays


def _check_after(arrays, expected, same):
    last = max(same, key=_WRITE_ORDER.index)
    for name, array in arrays.items():
        want = expected[last] if name in same else expected[name]
        _close(array, want, np.dtype(np.float64))


@pytest.mark.parametrize("same", [("w", "grad"), ("grad", "buf"), ("w", "buf")])
@pytest.mark.parametrize("nesterov", [False, True])
def test_prox_sgd_same_array_twice_follows_the_formula(backend, same, nesterov):
    found, arrays = _shared_arrays(("w", "grad", "buf"), same, seed=11)
    lr, momentum = 0.1, 0.9
    new_buf = momentum * found["buf"] + found["grad"]
    d = found["grad"] + momentum * new_buf if nesterov else new_buf
    expected = {"w": found["w"] - lr * d, "buf": new_buf, "grad": found["grad"]}
    prox_sgd_(arrays["w"], arrays["grad"], lr=lr, momentum=momentum, nesterov=nesterov,
              buf=arrays["buf"], backend=backend)
    _check_after(arrays, expected, same)


@pytest.mark.parametrize("same", [("w", "grad"), ("grad", "m"), ("grad", "v"), ("m", "v"),
                                  ("w", "m"), ("w", "v")])
def test_prox_adam_same_array_twice_follows_the_formula(backend, same):
    found, arrays = _shared_arrays(("w", "grad", "m", "v"), same, seed=12)
    step, lr, beta1, beta2, eps = 3, 0.01, 0.9, 0.999, 1e-3
    g = found["grad"]
    new_m = beta1 * found["m"] + (1 - beta1) * g
    new_v = beta2 * found["v"] + (1 - beta2) * g * g
    m_hat, v_hat = new_m / (1 - beta1**step), new_v / (1 - beta2**step)
    expected = {"w": found["w"] - lr * m_hat / (np.sqrt(v_hat) + eps), "m": new_m, "v": new_v,
                "grad": g}
    prox_adam_(arrays["w"], arrays["grad"], arrays["m"], arrays["v"], step=step, lr=lr,
               beta1=beta1, beta2=beta2, eps=eps, backend=backend)
    _check_after(arrays, expected, same)
