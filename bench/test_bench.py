"""pytest-benchmark over the case table of ``python -m fastreg bench`` (fastreg._bench.cases).

Each case's contenders (the fastreg op, its peers, the machine's limit) are benchmarked in one
group, so pytest-benchmark prints them side by side:

    pytest bench/test_bench.py --benchmark-group-by=group          # time everything
    pytest bench/test_bench.py --benchmark-disable                   # CI smoke: each runs once
    pytest bench/test_bench.py --benchmark-disable -m "not slow"     # quick cases only

Cases that are not ``Case.quick`` carry the ``slow`` mark. The backend is fastreg's default
(set ``FASTREG_BACKEND`` to choose another); only the cases of its array kind run (the GPU
cases need ``python -m fastreg bench --backend cupy``: CUDA events, not host clocks). For ratios
taken in one interleaved run, use ``python -m fastreg bench``; pytest-benchmark times contenders
one after the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import fastreg
from fastreg._backends import backend_array_kind
from fastreg._bench.cases import FAMILIES, Case, all_cases

_BACKEND = fastreg.get_backend()
ALL_CASES = all_cases()
CASES = [c for c in ALL_CASES if c.arrays == backend_array_kind(_BACKEND)]
# One case's inputs at a time: the tests of a case run one after the other, and holding every
# case's arrays at once would take hundreds of MB.
_cache: dict[str, dict[str, Callable[[], Any]]] = {}


def _contenders(case: Case) -> dict[str, Callable[[], Any]]:
    if case.name not in _cache:
        _cache.clear()
        _cache[case.name] = case.setup(_BACKEND)
    return _cache[case.name]


def _marks(case: Case) -> list[Any]:
    return [] if case.quick else [pytest.mark.slow]


def _ident(case: Case) -> str:
    return case.name.replace(" ", "_")


@pytest.mark.parametrize("case", [pytest.param(c, id=_ident(c)) for c in ALL_CASES])
def test_case_is_well_formed(case: Case) -> None:
    """The table entry follows the Case contract (checked without building its inputs)."""
    assert [c.name for c in ALL_CASES].count(case.name) == 1, "case names must be unique"
    assert case.family in FAMILIES, f"family {case.family!r} is not one of {FAMILIES}"
    assert (case.bytes_moved or 0) > 0 or (case.flops or 0) > 0, "set bytes_moved or flops"
    assert case.limit and case.limit not in case.peers and "fastreg" not in case.peers
    for key in case.goals:
        assert key in (*case.peers, case.limit, "fastreg"), f"goal key {key!r} names no contender"


@pytest.mark.parametrize(
    ("case", "label"),
    [
        pytest.param(c, label, id=f"{_ident(c)}-{label}", marks=_marks(c))
        for c in CASES
        for label in ("fastreg", *c.peers, c.limit)
    ],
)
def test_contender(benchmark: Any, case: Case, label: str) -> None:
    contenders = _contenders(case)
    labels = list(contenders)
    assert labels[0] == "fastreg", "setup must return the fastreg contender first"
    assert case.limit in labels, f"setup must return the limit {case.limit!r}"
    assert set(labels) <= {"fastreg", *case.peers, case.limit}, "undeclared contender"
    if label not in contenders:
        pytest.skip(f"peer {label!r} is not installed")
    calls = 0

    def call() -> Any:
        nonlocal calls
        calls += 1
        return contenders[label]()

    if not benchmark.disabled:
        contenders[label]()  # compile outside the timed rounds
    benchmark.group = case.name
    benchmark.extra_info.update(
        backend=_BACKEND, bytes_moved=case.bytes_moved, flops=case.flops, role=label
    )
    benchmark(call)
    assert calls >= 1
