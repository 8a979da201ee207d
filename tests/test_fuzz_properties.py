"""Property-based tests (hypothesis): the numba backend against the numpy twin, the oracle.

Streams, masks, dropout values and the exact image ops must agree bit for bit; everything
computed with floating point reductions, GEMMs or transcendentals within its error bound.
Inputs range over shapes (0-size, odd, more than 2-D), layouts (C, F, negative strides, offset
views), dtypes, ``p`` including 0, 2**-32, 1 - 2**-32 and 1, seeds and offsets at their limits,
``noise_shape`` and ``out=`` aliasing. The example counts come from the hypothesis profile
(tests/conftest.py: a bounded ``ci`` default, ``--hypothesis-profile=long`` for a deeper run).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_gaussian_close, tolerance

import fastreg

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = pytest.mark.skipif("numba" not in fastreg.available_backends(), reason="no numba")

DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
PROBABILITIES = st.one_of(
    st.sampled_from([0.0, 2.0**-32, 0.5, 1.0 - 2.0**-32, 1.0, np.nextafter(1.0, 0.0)]),
    st.floats(0.0, 1.0),
)
SEEDS = st.one_of(st.sampled_from([0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1]),
                  st.integers(0, 2**64 - 1))
OFFSETS = st.one_of(st.sampled_from([0, 1, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
_NONEMPTY = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)
# Three in four shapes have no zero dimension: hypothesis favours 0, and a 0-size array tells
# little about masks and layouts; the fourth branch still reaches every 0-size case.
SHAPES = st.one_of(_NONEMPTY, _NONEMPTY, _NONEMPTY,
                   st.lists(st.integers(0, 7), min_size=1, max_size=4).map(tuple))
TRAINING = st.sampled_from([True, True, True, False])
LAYOUTS = st.sampled_from(["C", "F", "reversed", "offset"])
SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30]


def _arrange(a: np.ndarray, layout: str) -> np.ndarray:
    """The same logical array in another memory layout (values and shape unchanged)."""
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "reversed":  # negative strides on every axis
        flipped = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
        return flipped[tuple(slice(None, None, -1) for _ in a.shape)]
    if layout == "offset":  # a view that starts inside a bigger buffer, with gaps
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    return np.ascontiguousarray(a)


@st.composite
def arrays(draw, shape=None, dtype=None, specials=True):
    """A float array of a drawn shape, dtype and layout, with a few NaN/Inf/-0.0 entries."""
    shape = draw(SHAPES) if shape is None else shape
    dtype = draw(DTYPES) if dtype is None else dtype
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = (rng.standard_normal(shape) * 3).astype(dtype)
    if specials and a.size:
        flat = a.reshape(-1)
        for value in draw(st.lists(st.sampled_from(SPECIALS), max_size=3)):
            flat[rng.integers(a.size)] = value
    return _arrange(a, draw(LAYOUTS))


@given(shape=SHAPES, seed=SEEDS, offset=OFFSETS, salt=st.integers(0, 3))
def test_random_bits_bit_for_bit(shape, seed, offset, salt):
    kw = dict(seed=seed, offset=offset, salt=salt)
    got = fastreg.random_bits(shape, backend="numba", **kw)
    want = fastreg.random_bits(shape, backend="numpy", **kw)
    assert got.dtype == np.uint32 and got.shape == shape
    np.testing.assert_array_equal(got, want)


@given(shape=SHAPES, p=PROBABILITIES, seed=SEEDS, offset=OFFSETS)
def test_dropout_mask_bit_for_bit_and_the_keep_rule(shape, p, seed, offset):
    kw = dict(seed=seed, offset=offset)
    got = fastreg.dropout_mask(shape, p, backend="numba", **kw)
    np.testing.assert_array_equal(got, fastreg.dropout_mask(shape, p, backend="numpy", **kw))
    threshold = min(math.floor(p * 2**32), 2**32 - 1)  # random-stream.md's keep rule, exact ints
    bits = fastreg.random_bits(shape, backend="numpy", **kw).astype(np.int64)
    want = np.zeros(shape, bool) if p == 1.0 else bits >= threshold
    np.testing.assert_array_equal(got, want)


def _noise_shape(draw, shape):
    if not draw(st.booleans()):
        return None
    return tuple(draw(st.sampled_from([1, None, s])) for s in shape)


@given(data=st.data(), p=PROBABILITIES, seed=SEEDS, offset=OFFSETS)
def test_dropout_and_backward_bit_for_bit(data, p, seed, offset):
    x = data.draw(arrays())
    noise_shape = _noise_shape(data.draw, x.shape)
    training = data.draw(TRAINING)
    kw = dict(seed=seed, offset=offset, noise_shape=noise_shape)
    got = fastreg.dropout(x.copy(), p, training=training, backend="numba", **kw)
    want = fastreg.dropout(x.copy(), p, training=training, backend="numpy", **kw)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert got.tobytes() == want.tobytes()  # bit for bit, NaN payloads and signed zeros too
    # the formula of docs/contract/ops.md from the mask: a select of x * scale
    if training and p > 0.0:
        mask_shape = tuple(s if n is None else n for s, n in
                           zip(x.shape, noise_shape or x.shape, strict=True))
        keep = np.broadcast_to(fastreg.dropout_mask(mask_shape, p, seed=seed, offset=offset),
                               x.shape)
        scale = x.dtype.type(1.0 / (1.0 - p)) if p < 1.0 else x.dtype.type(0)
        assert got.flags.c_contiguous
        np.testing.assert_array_equal(got, np.where(keep, x * scale, x.dtype.type(0)))
        back = fastreg.dropout_backward(x, p, backend="numba", **kw)
        assert back.tobytes() == got.tobytes()


@given(data=st.data(), p=PROBABILITIES, seed=SEEDS)
def test_dropout_out_aliasing(data, p, seed):
    x = data.draw(arrays(specials=False))
    kind = data.draw(st.sampled_from(["self", "fresh", "F", "overlap"]))
    expected = fastreg.dropout(x.copy(), p, seed=seed, backend="numpy")
    for backend in ("numpy", "numba"):
        source = x.copy()
        if kind == "self":
            out = source
        elif kind == "fresh":
            out = np.full(x.shape, 7, x.dtype)
        elif kind == "F":
            out = np.asfortranarray(np.full(x.shape, 7, x.dtype))
        else:  # out overlaps x, shifted by one element of a shared buffer
            buffer = np.zeros(x.size + 1, x.dtype)
            buffer[:-1] = x.reshape(-1)
            source, out = buffer[:-1].reshape(x.shape), buffer[1:].reshape(x.shape)
        result = fastreg.dropout(source, p, seed=seed, out=out, backend=backend)
        assert result is out or (p == 0.0 and kind == "self" and result is source)
        np.testing.assert_array_equal(out, expected)


@given(data=st.data(), seed=SEEDS, offset=OFFSETS)
def test_gaussian_ops_within_the_error_bound(data, seed, offset):
    x = data.draw(arrays())
    stddev = data.draw(st.sampled_from([0.0, 1e-3, 0.5, 3.0, 1e6]))
    p = data.draw(st.sampled_from([0.0, 2.0**-32, 0.3, 1.0 - 2.0**-32]))
    kw = dict(seed=seed, offset=offset)
    for op, arg in ((fastreg.gaussian_noise, stddev), (fastreg.gaussian_dropout, p)):
        got = op(x, arg, backend="numba", **kw)
        want = op(x, arg, backend="numpy", **kw)
        assert got.shape == x.shape and got.dtype == x.dtype
        assert_gaussian_close(np.ascontiguousarray(got), np.ascontiguousarray(want), x)


def _close(got, want, dtype):
    rtol = tolerance(dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True)


@given(data=st.data())
def test_prox_sgd_and_adam_match_numpy(data):
    dtype = data.draw(DTYPES)
    shape = data.draw(SHAPES)
    w, g, buf, m = (data.draw(arrays(shape, dtype, specials=False)) for _ in range(4))
    v = np.abs(data.draw(arrays(shape, dtype, specials=False)))
    mask = np.random.default_rng(1).random(shape) < 0.7 if data.draw(st.booleans()) else None
    same = data.draw(st.booleans())  # the same array as w and grad: defined, elementwise
    sgd = dict(lr=data.draw(st.sampled_from([0.0, 0.01, 0.5])),
               l1=data.draw(st.sampled_from([0.0, 0.1])), l2=data.draw(st.sampled_from([0.0, 2.0])),
               momentum=data.draw(st.sampled_from([0.0, 0.9])), mask=mask)
    sgd["nesterov"] = sgd["momentum"] > 0 and data.draw(st.booleans())
    results = {}
    for backend in ("numpy", "numba"):
        wk, bk = w.copy(), buf.copy()
        gk = wk if same else g
        fastreg.prox_sgd_(wk, gk, buf=bk if sgd["momentum"] else None, backend=backend, **sgd)
        results[backend] = (wk, bk)
    for got, want in zip(results["numba"], results["numpy"], strict=True):
        _close(got, want, dtype)
    adam = dict(step=data.draw(st.integers(1, 10**6)), lr=0.01, l1=sgd["l1"], l2=sgd["l2"],
                weight_decay=data.draw(st.sampled_from([0.0, 0.01])), mask=mask)
    results = {}
    for backend in ("numpy", "numba"):
        wk, mk, vk = w.copy(), m.copy(), v.copy()
        fastreg.prox_adam_(wk, g, mk, vk, backend=backend, **adam)
        results[backend] = (wk, mk, vk)
    for got, want in zip(results["numba"], results["numpy"], strict=True):
        _close(got, want, dtype)


@given(data=st.data())
def test_group_ops_and_penalty_match_numpy(data):
    w = data.draw(arrays(specials=False))
    w = w * w.dtype.type(data.draw(st.sampled_from([1.0, 1e-30, 1e30])))
    if w.dtype == np.float64:
        w = w * data.draw(st.sampled_from([1.0, 1e200, 1e-200]))
    axis = data.draw(st.one_of(st.none(), st.integers(-w.ndim, w.ndim - 1)))
    for op, kwargs in ((fastreg.max_norm_, {"max_norm": 1.0}),
                       (fastreg.prox_group_lasso_, {"t": 0.5})):
        got, want = w.copy(), w.copy()
        op(got, axis=axis, backend="numba", **kwargs)
        op(want, axis=axis, backend="numpy", **kwargs)
        _close(got, want, w.dtype)
        assert np.isfinite(got).all()
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(fastreg.penalty(w, 0.5, 0.25, backend="numba"),
                                   fastreg.penalty(w, 0.5, 0.25, backend="numpy"), rtol=1e-9)


@given(data=st.data(), p=PROBABILITIES, seed=SEEDS, offset=OFFSETS)
def test_dense_dropout_matches_numpy(data, p, seed, offset):
    dtype = data.draw(DTYPES)
    lead = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple))
    k, n = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    x = data.draw(arrays((*lead, k), dtype, specials=False))
    W = data.draw(arrays((k, n), dtype, specials=False))
    b = data.draw(arrays((n,), dtype, specials=False)) if data.draw(st.booleans()) else None
    activation = data.draw(st.sampled_from(["identity", "relu", "tanh", "sigmoid"]))
    kw = dict(p=p, seed=seed, offset=offset, activation=activation)
    got = fastreg.dense_dropout(x, W, b, backend="numba", **kw)
    want = fastreg.dense_dropout(x, W, b, backend="numpy", **kw)
    np.testing.assert_array_equal(got == 0, want == 0)  # the same mask (and the same relu zeros)
    _close(got, want, dtype)
    dy = np.ones_like(want)
    grads = [fastreg.dense_dropout_backward(dy, x, W, want, backend=be, **kw)
             for be in ("numba", "numpy")]
    for g_numba, g_numpy in zip(*grads, strict=True):
        _close(g_numba, g_numpy, dtype)


@given(data=st.data(), p=PROBABILITIES, seed=SEEDS, offset=OFFSETS)
def test_dropconnect_matches_numpy(data, p, seed, offset):
    dtype = data.draw(DTYPES)
    batch, k, n = (data.draw(st.integers(1, 6)) for _ in range(3))
    x = data.draw(arrays((batch, k), dtype, specials=False))
    W = data.draw(arrays((k, n), dtype, specials=False))
    kw = dict(p=p, seed=seed, offset=offset, per_example=data.draw(st.booleans()))
    got = fastreg.dropconnect(x, W, backend="numba", **kw)
    want = fastreg.dropconnect(x, W, backend="numpy", **kw)
    _close(got, want, dtype)
    dy = data.draw(arrays((batch, n), dtype, specials=False))
    grads = [fastreg.dropconnect_backward(dy, x, W, backend=be, **kw) for be in ("numba", "numpy")]
    for g_numba, g_numpy in zip(*grads, strict=True):
        _close(g_numba, g_numpy, dtype)


@given(counter=st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=4),
       key=st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=2),
       rounds=st.integers(0, 12))
def test_philox4x32_bit_for_bit(counter, key, rounds):
    c, k = np.array(counter, np.uint32), np.array(key, np.uint32)
    got = fastreg.philox4x32(c, k, rounds, backend="numba")
    np.testing.assert_array_equal(got, fastreg.philox4x32(c, k, rounds, backend="numpy"))


IMAGE_DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8)])


@given(data=st.data(), seed=SEEDS, offset=OFFSETS)
def test_exact_image_ops_bit_for_bit(data, seed, offset):
    """random_flip/translate/cutout and augment are exact (docs/contract/ops.md): bit for bit."""
    dtype = data.draw(IMAGE_DTYPES)
    rank = data.draw(st.sampled_from([3, 4]))
    shape = tuple(data.draw(st.integers(0 if axis == 0 else 1, 7)) for axis in range(rank))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = (rng.integers(0, 256, shape).astype(dtype) if dtype == np.uint8
         else rng.standard_normal(shape).astype(dtype))
    x = _arrange(x, data.draw(LAYOUTS))
    ids = (np.asarray(data.draw(st.lists(st.integers(0, 2**61 - 1), min_size=shape[0],
                                         max_size=shape[0])), np.int64)
           if data.draw(st.booleans()) else None)
    kw = dict(seed=seed, offset=offset, sample_ids=ids, fill=data.draw(st.sampled_from([0, 7])),
              data_format=data.draw(st.sampled_from(["channels_last", "channels_first"])))
    shift = data.draw(st.one_of(st.integers(0, 8), st.tuples(st.integers(0, 3), st.integers(0, 9))))
    size = data.draw(st.one_of(st.integers(1, 9), st.tuples(st.integers(1, 3), st.integers(1, 9))))
    ops = (lambda b: fastreg.random_flip(x, horizontal=True, vertical=True, backend=b, **kw),
           lambda b: fastreg.random_translate(x, shift, backend=b, **kw),
           lambda b: fastreg.random_cutout(x, size, backend=b, **kw),
           lambda b: fastreg.augment(x, horizontal_flip=True, max_shift=shift, cutout=size,
                                     backend=b, **kw))
    for op in ops:
        got, want = op("numba"), op("numpy")
        assert got.shape == x.shape and got.dtype == x.dtype and got.flags.c_contiguous
        assert got.tobytes() == want.tobytes()
