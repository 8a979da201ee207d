"""The Numba Philox tile helpers and vector math against the NumPy reference stream and NumPy's
libm: every kernel shape the dropout, dense and DropConnect kernels rely on (odd starts and
counts, block indices past 2**32, tiles that straddle a 2**32 boundary, tile and task edges)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import NORMAL_RTOL

import fastreg

pytest.importorskip("numba")

from fastreg._kernels.philox import cpu_numba  # noqa: E402
from fastreg._kernels.philox import ref_numpy as reference  # noqa: E402

_U = np.uint64
KEYS = [(0, 0, 0, 0), (0x9ABCDEF0, 0x12345678, 1, 7), (0xFFFFFFFF, 0xFFFFFFFF, 2, 0xFFFFFFFF)]
FIRST_BLOCKS = [0, 1, 7, 2**32 - 3, 2**32, 2**33 + 11, 2**62 - 5]
COUNTS = [1, 2, 3, 5, 64, 513]


@pytest.mark.parametrize("key", KEYS, ids=["zero", "mixed", "ones"])
@pytest.mark.parametrize("first_block", FIRST_BLOCKS)
@pytest.mark.parametrize("count", COUNTS)
def test_fill_words_is_the_reference_stream(key, first_block, count):
    k0, k1, salt, offset = key
    words = np.full(4 * count + 5, 0xDEADBEEF, dtype=np.uint32)
    cpu_numba.fill_words(words, first_block, count, _U(salt), _U(offset), _U(k0), _U(k1))
    expected = reference.random_bits(4 * count, k0, k1, salt, offset, start=4 * first_block)
    np.testing.assert_array_equal(words[: 4 * count], expected)
    assert (words[4 * count :] == 0xDEADBEEF).all(), "fill_words wrote past 4*count"


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 65535, 65536 * 4 + 7])
@pytest.mark.parametrize("start", [0, 1, 2, 3, 4, 4 * (2**32 - 2) + 1])
def test_random_bits_twin_with_ragged_ends(n, start):
    got = cpu_numba.random_bits(n, 0x01234567, 0x89ABCDEF, 0, 3, start)
    np.testing.assert_array_equal(
        got, reference.random_bits(n, 0x01234567, 0x89ABCDEF, 0, 3, start)
    )


@pytest.mark.parametrize("n", [1, 3, 2049, 8191, 8192, 8193, 65535, 65536, 65537, 600003])
@pytest.mark.parametrize("seed", [5, 2**32 + 9, 2**64 - 1])
def test_dropout_and_mask_at_tile_and_task_edges(n, seed):
    # 8192 elements per tile, at most 65536 per parallel task: both edges and their neighbours
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    keep = fastreg.random_bits((n,), seed=seed, offset=1, backend="numpy") >= np.uint32(2**31)
    y = fastreg.dropout(x, 0.5, seed=seed, offset=1, backend="numba")
    np.testing.assert_array_equal(y, np.where(keep, x * np.float32(2.0), np.float32(0.0)))
    mask = fastreg.dropout_mask((n,), 0.5, seed=seed, offset=1, backend="numba")
    np.testing.assert_array_equal(mask, keep)


def test_extreme_thresholds():
    x = np.full(4099, np.nan, dtype=np.float32)
    dropped = fastreg.dropout(x, 1.0, seed=1, backend="numba")
    assert (dropped == 0).all() and not np.signbit(dropped).any()
    assert not fastreg.dropout_mask((4099,), 1.0, seed=1, backend="numba").any()
    # p = 2**-32 has threshold 1 (only the word 0 drops); p just below 1 has 2**32 - 1
    for p in (2.0**-32, np.nextafter(1.0, 0.0)):
        bits = fastreg.random_bits((4099,), seed=1, backend="numpy").astype(np.uint64)
        threshold = min(int(p * 2**32), 2**32 - 1)
        mask = fastreg.dropout_mask((4099,), p, seed=1, backend="numba")
        np.testing.assert_array_equal(mask, bits >= threshold)


def _grid_words() -> np.ndarray:
    """Random words plus the edges of the uniform grid and the words whose cos argument lies near
    a multiple of pi/4 (cos's zeros, and where cos_unit switches its reduction)."""
    words = np.random.default_rng(0).integers(0, 2**32, 6_000, dtype=np.uint64)
    edges = [0, 1, 2, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
    for eighth in range(1, 8):
        edges += [eighth * 2**29 + d for d in (-2, -1, 0, 1)]
    return np.concatenate([words, np.array(edges, dtype=np.uint64)])


def _max_ulps(got, f, args):
    """Largest ``|got - f(arg)|`` in ulps of the exact value (mpmath, 30 digits): a reference
    that depends on no libm and no SIMD path."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    worst = 0.0
    for g, a in zip(got.tolist(), args.tolist(), strict=True):
        exact = f(mpmath.mpf(a))
        worst = max(worst, float(abs(mpmath.mpf(g) - exact)) / np.spacing(abs(float(exact))))
    return worst


def test_log_and_cos_within_two_ulp_of_the_exact_values():
    from numba import njit

    mpmath = pytest.importorskip("mpmath")

    @njit(error_model="numpy")
    def both(u, x, logs, coss):
        for i in range(u.size):
            logs[i] = cpu_numba.log_unit(u[i])
            coss[i] = cpu_numba.cos_unit(x[i])

    u = (_grid_words().astype(np.float64) + 0.5) * 2.0**-32
    x = 2.0 * np.pi * u  # the argument every twin takes: fl(fl(2 pi) * u2)
    logs, coss = np.empty_like(u), np.empty_like(u)
    both(u, x, logs, coss)
    # measured: log 0.76 ulp, cos 1.8 ulp (the head subtraction below pi/4)
    assert _max_ulps(logs, mpmath.log, u) <= 1.0
    assert _max_ulps(coss, mpmath.cos, x) <= 2.0


def test_normals_match_the_reference_within_a_few_ulp():
    n = 300_001
    x = np.zeros(n)
    got = fastreg.gaussian_noise(x, 1.0, seed=2**40 + 3, offset=9, backend="numba")
    ref = reference.normals(n, 3, 2**8, 2, 9)
    # relative to n itself: the twins take cos of the same double, so near cos's zeros both are
    # within their libm's few ulp of the same value (no cancellation with x here)
    np.testing.assert_allclose(got, ref, rtol=NORMAL_RTOL, atol=0)
