"""The random stream of docs/contract/random-stream.md: known answers, the golden stream, and
backend agreement."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastreg
from fastreg.random import dropout_scale, keep_threshold, kernel_threshold

# Random123 tests/kat_vectors, philox4x32 10 rounds: (counter, key, expected).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_known_answers(backend, counter, key, expected):
    got = fastreg.philox4x32(
        np.array(counter, np.uint32), np.array(key, np.uint32), backend=backend
    )
    assert got.dtype == np.uint32
    assert tuple(int(w) for w in got) == expected


def test_philox_broadcasts_and_stacks(backend):
    counters = np.array([kat[0] for kat in KNOWN_ANSWERS], np.uint32)
    keys = np.array([kat[1] for kat in KNOWN_ANSWERS], np.uint32)
    got = fastreg.philox4x32(counters, keys, backend=backend)
    assert got.shape == (3, 4)
    np.testing.assert_array_equal(got, np.array([kat[2] for kat in KNOWN_ANSWERS], np.uint32))
    one_key = fastreg.philox4x32(counters[:, None, :], keys[0], backend=backend)
    assert one_key.shape == (3, 1, 4)


def test_philox_fewer_rounds_differ_and_zero_rounds_is_identity(backend):
    counter = np.array([1, 2, 3, 4], np.uint32)
    key = np.array([5, 6], np.uint32)
    np.testing.assert_array_equal(fastreg.philox4x32(counter, key, 0, backend=backend), counter)
    assert not np.array_equal(
        fastreg.philox4x32(counter, key, 7, backend=backend),
        fastreg.philox4x32(counter, key, 10, backend=backend),
    )


def test_philox_rounds_any_int_type_and_bad_values(backend):
    counter, key = np.zeros(4, np.uint32), np.zeros(2, np.uint32)
    want = [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]  # Random123 kat_vectors
    for rounds in (np.int64(10), np.uint8(10)):
        assert fastreg.philox4x32(counter, key, rounds, backend=backend).tolist() == want
    for bad, error in ((2**63, ValueError), (10**400, ValueError), (-1, ValueError),
                       (10.0, TypeError), (np.float64(10), TypeError), (True, TypeError)):
        with pytest.raises(error, match="rounds"):
            fastreg.philox4x32(counter, key, bad, backend=backend)


def _philox_by_the_book(counter, key):
    """Philox4x32-10 written from docs/contract/random-stream.md with Python ints: an independent
    oracle."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_index in range(10):
        if round_index:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (
            (p1 >> 32) ^ c1 ^ k0,
            p1 & 0xFFFFFFFF,
            (p0 >> 32) ^ c3 ^ k1,
            p0 & 0xFFFFFFFF,
        )
    return c0, c1, c2, c3


@pytest.mark.parametrize("seed", [0, 1, 2**32 + 7, 2**64 - 1])
@pytest.mark.parametrize(("offset", "salt"), [(0, 0), (3, 1), (2**32 - 1, 2)])
def test_random_bits_follow_the_index_rule(backend, seed, offset, salt):
    n = 23  # not a multiple of 4: the last block is partial
    bits = fastreg.random_bits(n, seed=seed, offset=offset, salt=salt, backend=backend)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    for i in range(n):
        words = _philox_by_the_book(((i >> 2) & 0xFFFFFFFF, i >> 34, salt, offset), key)
        assert int(bits[i]) == words[i & 3]


def test_random_bits_high_block_indices_use_the_second_counter_word():
    # Element i = 2**34 + 5 has block 2**32 + 1: lo32 = 1, hi32 = 1. Checked through the
    # reference twin's `start` (an allocation of 2**34 elements is not possible here).
    from fastreg._kernels.philox.ref_numpy import random_bits

    i = 2**34 + 5
    got = random_bits(3, 11, 12, 0, 9, start=i)
    for t in range(3):
        words = _philox_by_the_book((1, 1, 0, 9), (11, 12))
        assert int(got[t]) == words[(i + t) & 3]


# Pinned bits: a change here is a change of the stream (bump RNG_SPEC_VERSION, CHANGELOG ### RNG).
GOLDEN_HEX = ["5dff16af", "f094bb08", "7c74f63d", "453e822e", "8569f938", "844150e3"]


def test_golden_stream_is_pinned(backend):
    bits = fastreg.random_bits((2, 3), seed=2**40 + 17, offset=5, salt=0, backend=backend)
    assert bits.shape == (2, 3)
    assert [f"{int(b):08x}" for b in bits.ravel()] == GOLDEN_HEX
    assert fastreg.RNG_SPEC_VERSION == 1


def test_backends_agree_bit_for_bit():
    for shape in [(1,), (3,), (5, 7), (1000, 13)]:
        for seed, offset, salt in [(0, 0, 0), (2**33 + 1, 7, 1), (99, 2**32 - 1, 2)]:
            ref = fastreg.random_bits(shape, seed=seed, offset=offset, salt=salt, backend="numpy")
            got = fastreg.random_bits(shape, seed=seed, offset=offset, salt=salt, backend="numba")
            np.testing.assert_array_equal(got, ref)


def test_offsets_and_salts_give_independent_masks():
    n = 200_000
    base = fastreg.random_bits(n, seed=1, offset=0, salt=0)
    for other in (
        fastreg.random_bits(n, seed=1, offset=1, salt=0),
        fastreg.random_bits(n, seed=1, offset=0, salt=1),
        fastreg.random_bits(n, seed=2, offset=0, salt=0),
    ):
        a, b = base >= 2**31, other >= 2**31
        # independent fair coins agree half the time: within 5 sigma of n/2
        assert abs(int(np.sum(a == b)) - n / 2) < 5 * np.sqrt(n / 4)


def test_threshold_and_scale_helpers():
    assert keep_threshold(0.0) == 0
    assert keep_threshold(0.5) == 2**31
    assert keep_threshold(0.1) == int(np.floor(0.1 * 2**32))
    assert keep_threshold(1.0) == 2**32 - 1  # as docs/contract/random-stream.md writes it
    assert kernel_threshold(1.0) == 2**32  # what kernels use so that p == 1 keeps nothing
    assert kernel_threshold(np.nextafter(1.0, 0)) == 2**32 - 1
    assert dropout_scale(0.25, np.float32) == np.float32(1 / 0.75)
    assert dropout_scale(0.25, np.float32).dtype == np.float32


def _run(code: str, **env: str) -> str:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, check=True
    ).stdout


_STREAM_PROBE = (
    "import numpy as np, fastreg;"
    "b = fastreg.random_bits(100_003, seed=77, offset=3, backend='numba');"
    "m = fastreg.dropout(np.ones(70_001, np.float32), 0.3, seed=5, backend='numba');"
    "print(int(b.astype(np.uint64).sum()), int(np.flatnonzero(m).sum()))"
)


def test_masks_do_not_depend_on_thread_count():
    one = _run(_STREAM_PROBE, NUMBA_NUM_THREADS="1")
    two = _run(_STREAM_PROBE, NUMBA_NUM_THREADS="2")
    assert one == two


@pytest.mark.slow
def test_known_answers_without_the_jit():
    code = (
        "import numpy as np, fastreg;"
        "z = np.zeros(4, np.uint32);"
        "print(fastreg.philox4x32(z, z[:2], backend='numba'));"
        + _STREAM_PROBE.split(";", 1)[1]
    )
    plain = _run(code, NUMBA_DISABLE_JIT="1")
    assert str(0x6627E8D5) in plain
    assert plain.splitlines()[-1] == _run(_STREAM_PROBE).strip()
