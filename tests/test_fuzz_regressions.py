"""Regression tests for the fuzzing findings of issue 16, one per finding, on every CPU backend.

Oracles are independent of the code under test: ``fastreg.random_bits`` (held to Random123's
known answers) for masks, ``math.hypot`` for norms, and the formulas of docs/contract/
evaluated in float64 with the reference normals.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_gaussian_close

import fastreg
from fastreg._kernels.philox import ref_numpy as philox_ref
from fastreg.random import derive_key, kernel_threshold


def _normals(n, seed, offset):
    k0, k1 = derive_key(seed)
    return philox_ref.normals(n, k0, k1, 2, offset)


def test_per_example_dropconnect_backward_ignores_dropped_nan_weights(backend):
    # Finding 1: numba multiplied the masked dy by the unmasked weight, 0 * nan = nan.
    x = np.ones((2, 3))
    W = np.array([[1.0, 2.0, np.nan, 4.0], [np.inf, 1.0, -np.inf, 3.0], [5.0, np.nan, 6.0, 7.0]])
    dy = np.arange(1.0, 9.0).reshape(2, 4)
    p, seed = 0.5, 0
    bits = fastreg.random_bits((2, 3, 4), seed=seed, salt=1)
    keep = bits.astype(np.int64) >= kernel_threshold(p)
    assert not keep.all() and keep.any()
    for e in range(2):  # the fixture must drop a non-finite weight for each example
        assert (~keep[e] & ~np.isfinite(W)).any()
    dx, dW, _ = fastreg.dropconnect_backward(dy, x, W, p=p, seed=seed, per_example=True,
                                             backend=backend)
    kept_w = np.where(keep, W, 0.0)  # (B, K, N)
    with np.errstate(invalid="ignore"):
        want_dx = np.array([[np.sum(np.where(keep[e, k], W[k] * dy[e], 0.0)) / (1 - p)
                             for k in range(3)] for e in range(2)])
    want_dW = np.einsum("ek,ekn->kn", x, np.where(keep, dy[:, None, :], 0.0)) / (1 - p)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12)
    np.testing.assert_allclose(dW, want_dW, rtol=1e-12)
    assert np.isfinite(kept_w).all() == np.isfinite(dx).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_ops_keep_infinities(backend, dtype):
    # Finding 2: x + (add + mult*x)*n made 0*inf and inf-inf, NaN for every infinite input.
    x = np.array([np.inf, -np.inf, np.nan, 1.5, -0.0, 3.0] * 3, dtype=dtype)
    n = _normals(x.size, 11, 4)
    y = fastreg.gaussian_noise(x, 0.5, seed=11, offset=4, backend=backend)
    want = (x.astype(np.float64) + 0.5 * n).astype(dtype)
    np.testing.assert_array_equal(y[:3], want[:3])  # +inf, -inf, nan as the formula gives
    assert_gaussian_close(y, want, x)
    c = math.sqrt(0.3 / 0.7)
    y = fastreg.gaussian_dropout(x, 0.3, seed=11, offset=4, backend=backend)
    want = (x.astype(np.float64) * (1.0 + c * n)).astype(dtype)
    assert np.isinf(y[:2]).all() and np.isnan(y[2])
    np.testing.assert_array_equal(y[:2], want[:2])
    assert_gaussian_close(y, want, x)


@pytest.mark.parametrize(("p", "error"), [(math.nan, ValueError), (5.0, ValueError),
                                          (-0.5, ValueError), ("a", TypeError),
                                          (None, TypeError)])
def test_dropout_validates_p_when_not_training(backend, p, error):
    # Finding 3: training=False returned x without looking at p.
    with pytest.raises(error, match=r"\bp\b"):
        fastreg.dropout(np.ones(3), p, seed=0, training=False, backend=backend)


def _read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def test_read_only_out_raises_value_error_naming_out(backend):
    # Finding 4: Numba raised a TypingError, NumPy an unnamed "assignment destination".
    x = np.arange(6.0)
    for op in (lambda o: fastreg.dropout(x, 0.5, seed=1, out=o, backend=backend),
               lambda o: fastreg.dropout(x, 0.0, seed=1, out=o, backend=backend),
               lambda o: fastreg.dropout_backward(x, 0.5, seed=1, out=o, backend=backend)):
        out = _read_only(np.full(6, 7.0))
        with pytest.raises(ValueError, match=r"\bout\b.*read-only"):
            op(out)
        np.testing.assert_array_equal(out, 7.0)


@pytest.mark.parametrize("state", ["buf", "m", "v"])
def test_read_only_states_raise_value_error_naming_them(backend, state):
    w, g = np.ones(4), np.full(4, 0.5)
    arrays = {"buf": np.zeros(4), "m": np.zeros(4), "v": np.zeros(4)}
    arrays[state] = _read_only(arrays[state])
    with pytest.raises(ValueError, match=rf"\b{state}\b.*read-only"):
        if state == "buf":
            fastreg.prox_sgd_(w, g, lr=0.1, momentum=0.9, buf=arrays["buf"], backend=backend)
        else:
            fastreg.prox_adam_(w, g, arrays["m"], arrays["v"], step=1, lr=0.1, backend=backend)
    np.testing.assert_array_equal(w, 1.0)
    for a in arrays.values():
        np.testing.assert_array_equal(a, 0.0)


_HUGE = 10**400
_HUGE_CALLS = [
    ("lr", lambda b: fastreg.prox_sgd_(np.ones(3), np.ones(3), lr=_HUGE, backend=b)),
    ("l1", lambda b: fastreg.prox_sgd_(np.ones(3), np.ones(3), lr=0.1, l1=_HUGE, backend=b)),
    ("momentum", lambda b: fastreg.prox_sgd_(np.ones(3), np.ones(3), lr=0.1, momentum=_HUGE,
                                             buf=np.zeros(3), backend=b)),
    ("eps", lambda b: fastreg.prox_adam_(np.ones(3), np.ones(3), np.zeros(3), np.zeros(3),
                                         step=1, lr=0.1, eps=_HUGE, backend=b)),
    ("p", lambda b: fastreg.dropout(np.ones(3), _HUGE, seed=0, backend=b)),
    ("p", lambda b: fastreg.dropout_mask(3, -_HUGE, seed=0, backend=b)),
    ("stddev", lambda b: fastreg.gaussian_noise(np.ones(3), _HUGE, seed=0, backend=b)),
    ("t", lambda b: fastreg.prox_group_lasso_(np.ones((2, 2)), t=_HUGE, backend=b)),
    ("max_norm", lambda b: fastreg.max_norm_(np.ones((2, 2)), max_norm=_HUGE, backend=b)),
    ("l2", lambda b: fastreg.penalty(np.ones(3), l2=_HUGE, backend=b)),
]


@pytest.mark.parametrize(("name", "call"), _HUGE_CALLS, ids=[c[0] for c in _HUGE_CALLS])
def test_huge_hyper_parameters_raise_value_error(backend, name, call):
    # Finding 5: float(10**400) raised OverflowError.
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(backend)


def test_noise_shape_result_is_c_contiguous(backend):
    # Finding 6: np.where kept the F order of an F-ordered input.
    x = np.asfortranarray(np.arange(1.0, 13.0).reshape(3, 4))
    for op in (fastreg.dropout, fastreg.dropout_backward):
        y = op(x, 0.5, seed=3, noise_shape=(3, 1), backend=backend)
        assert y.flags.c_contiguous
        keep = fastreg.dropout_mask((3, 1), 0.5, seed=3)
        np.testing.assert_array_equal(y, np.where(keep, x * 2.0, 0.0))


def test_overlapping_update_arrays_raise_and_modify_nothing(backend):
    # Finding 7: prox_sgd_(a[1:], a[:-1]) depended on the order a backend visits elements.
    a = np.arange(6.0)
    with pytest.raises(ValueError, match=r"\bw\b.*\bgrad\b.*overlap"):
        fastreg.prox_sgd_(a[1:], a[:-1], lr=1.0, backend=backend)
    np.testing.assert_array_equal(a, np.arange(6.0))
    b = np.zeros(7)
    with pytest.raises(ValueError, match=r"\bbuf\b.*overlap"):
        fastreg.prox_sgd_(b[:3], np.ones(3), lr=0.1, momentum=0.5, buf=b[2:5], backend=backend)
    s = np.zeros(5)
    with pytest.raises(ValueError, match=r"\bm\b.*\bv\b.*overlap"):
        fastreg.prox_adam_(np.ones(3), np.ones(3), s[:3], s[1:4], step=1, lr=0.1,
                           backend=backend)
    np.testing.assert_array_equal(b, 0.0)
    np.testing.assert_array_equal(s, 0.0)


def test_same_array_and_interleaved_views_are_allowed(backend):
    a = np.arange(8.0)
    fastreg.prox_sgd_(a[::2], a[1::2], lr=1.0, backend=backend)  # disjoint elements
    np.testing.assert_array_equal(a[::2], np.arange(0.0, 8.0, 2) - np.arange(1.0, 8.0, 2))
    w = np.arange(4.0)
    fastreg.prox_sgd_(w, w, lr=0.25, backend=backend)  # the same array: w - lr*w
    np.testing.assert_array_equal(w, np.arange(4.0) * 0.75)


@pytest.mark.parametrize("magnitude", [1e200, 1e-200, 1e300, 1e-300])
def test_max_norm_and_group_lasso_with_extreme_norms(backend, magnitude):
    # Finding 8: squared norms of 1e200 overflowed to inf, and the group was zeroed.
    col = np.array([3.0, 4.0]) * magnitude
    norm = math.hypot(*col.tolist())
    w = col[:, None].copy()
    fastreg.max_norm_(w, max_norm=norm / 2, backend=backend)
    np.testing.assert_allclose(w[:, 0], col / 2, rtol=1e-15, atol=5e-324)
    w = col[:, None].copy()
    fastreg.prox_group_lasso_(w, t=0.0, backend=backend)  # t = 0 leaves every group as is
    np.testing.assert_array_equal(w[:, 0], col)
    w = np.stack([col, col], axis=1)  # (2, 2): axis=1 groups are rows, axis=0 columns
    fastreg.max_norm_(w, max_norm=norm / 4, axis=0, backend=backend)
    np.testing.assert_allclose(w, np.stack([col, col], axis=1) / 4, rtol=1e-15, atol=5e-324)
    inf = np.array([[np.inf], [1.0]])
    fastreg.max_norm_(inf, max_norm=1.0, backend=backend)  # scale 1/inf = 0: exact zeros
    assert (inf == 0.0).all() and not np.signbit(inf).any()
