"""The one table of benchmark cases, shared by ``python -m fastreg bench`` and ``bench/``.

A case builds its inputs once and returns its contenders: zero-argument callables timed side by
side in one run. ``"fastreg"`` is the op under test; ``peers`` are what people use today (NumPy
unfused, PyTorch CPU when installed); ``limit`` names the machine's own bound for the same work
(a copy kernel moving the same bytes, or the bare GEMM of the same shape).

Each op family keeps its host-array cases in its own module (``cases_<family>.py``); the GPU
cases (device arrays, ``Case.arrays == "cupy"``) are in ``cases_gpu.py``. :func:`all_cases`
concatenates them in a fixed order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Op families, in table order.
FAMILIES = ("dropout", "dense", "dropconnect", "prox", "augment", "torch")
#: Case modules (``cases_<name>.py``), in table order.
MODULES = (*FAMILIES, "gpu")
#: The array kinds a case's inputs can be (``fastreg._backends`` kinds).
ARRAY_KINDS = ("numpy", "cupy")


#: The pause after each sample of a case that calls NumPy's BLAS (:attr:`Case.settle`): OpenBLAS
#: threads spin up to 2**28 cycles (~0.11 s here); after 0.12 s a 7 ms step still took 12 ms.
BLAS_SETTLE_SECONDS = 0.2


@dataclass(frozen=True)
class Case:
    """One benchmark row.

    ``setup(backend)`` allocates the inputs and returns ``{label: callable}``: ``"fastreg"``
    first, then each available peer, then the ``limit`` contender. ``bytes_moved`` (memory-bound
    ops) gives GB/s; ``flops`` (GEMM-based ops) gives GFLOP/s. ``arrays`` is the array kind of
    the inputs: a run times the cases of its backend's kind (``"cupy"``: timed on the device).
    """

    name: str
    family: str
    setup: Callable[[str], dict[str, Callable[[], Any]]]
    limit: str
    peers: tuple[str, ...] = ()
    bytes_moved: int | None = None
    flops: int | None = None
    quick: bool = True
    arrays: str = "numpy"
    goals: dict[str, float] = field(default_factory=dict)
    """Targets from the issues, keyed by contender label; the key decides the meaning:

    - a label in ``peers``: a speed-up floor, ``peer time / fastreg time >= value``
      (``{"torch": 20.0}``: at least 20x faster than PyTorch);
    - the ``limit`` label: a ceiling, ``fastreg time / limit time <= value``
      (``{"copy": 3.0}``: at most 3x the time of copying the same bytes);
    - ``"fastreg"``: a ceiling in seconds on the op's own median (``{"fastreg": 2e-3}``).

    Any other key is a mistake (the runner reports it). A goal on a peer that is not installed
    is reported as skipped. The runner prints each goal as met/missed beside the ratios."""
    settle: float = 0.0
    """Seconds the runner sleeps after every sample of every contender: for cases whose
    contenders call NumPy's BLAS, whose OpenBLAS threads keep spinning for ~100 ms of CPU after
    each GEMM (measured on the 2-core VM) and would slow whichever contender came next."""


def all_cases() -> list[Case]:
    """Every case of every family module that exists, in table order."""
    cases: list[Case] = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"fastreg._bench.cases_{name}")
        except ModuleNotFoundError as error:
            if error.name != f"fastreg._bench.cases_{name}":
                raise
            continue
        cases.extend(module.CASES)
    return cases


def torch_or_none() -> Any:
    """PyTorch if installed (an optional peer), else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch
