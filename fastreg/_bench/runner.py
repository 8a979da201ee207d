"""The benchmark runner behind ``python -m fastreg bench``: side-by-side timings of each case.

For each case the runner builds the inputs once (``Case.setup``), calls every contender once to
compile and warm it, then times all contenders interleaved: each round times every contender once,
in an order that rotates from round to round, so a noisy neighbour slows all of them alike. It
reports medians over rounds, the spread of the rounds, and ratios taken within the same run
(docs/contract/runtime.md, "Performance reporting"). Fast contenders are
looped ``number`` times per sample so that one sample lasts at least ``min_sample`` seconds
(timer resolution and call overhead stay small); the number of rounds adapts to a time budget per
case so large cases finish in bounded time.

PyTorch's OpenMP workers keep spinning for ~10 ms of CPU after each of its ops (measured on the
2-core VM: 4-13 ms of process CPU while the caller slept), so whichever contender is timed right
after a PyTorch-based one (``torch``, ``kornia``) would be timed against those spinning threads:
fastreg's 4M-element dropout took 5.8 ms right after PyTorch's dropout and 5.0 ms after a pause.
The runner therefore sleeps :data:`SETTLE_SECONDS` after every sample of such a contender, so
each sample starts on a quiet machine; the pause is never inside a timed sample. What PyTorch's
spinning costs inside one training step is measured by the fresh-process cases instead
(:mod:`.processes`), where fastreg and PyTorch run interleaved as they do for a user. NumPy's
OpenBLAS threads spin far longer, ~100 ms of CPU after each GEMM (a 7 ms PyTorch-step
contender took 15 ms by the median and up to 124 ms right after the ``gemm`` limit): a case
whose contenders call NumPy's BLAS (the dense, DropConnect and PyTorch-step cases, through
their ``gemm`` limits and fastreg's NumPy API) sets :attr:`.Case.settle`, a pause after every
sample of every contender, and its samples last at least 50 ms, so that they time mostly warm
calls (after a pause every pool in the process sleeps, and waking it costs the first call).

Device cases (``Case.arrays == "cupy"``) are timed the same way, except that a sample is one call
timed by CUDA events with the L2 flushed before it (:class:`.device.DeviceSampler`): device time
for a memory-bound op is only meaningful from a cold cache, and a single call of a GPU case lasts
well past the events' microsecond resolution.
"""

from __future__ import annotations

import datetime
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TextIO

from .. import _backends, _runtime
from . import processes
from .cases import BLAS_SETTLE_SECONDS, Case, all_cases
from .table import format_seconds, format_table

__all__ = ["format_seconds", "format_table", "header_lines", "main", "run", "run_case"]


@dataclass(frozen=True)
class Settings:
    """How long to time: ``repeats`` fixes the number of rounds, else ``budget`` (seconds per
    case, timing only) picks it within ``[min_repeats, max_repeats]``. With ``total_budget``,
    a case never gets more than its share of the time left, so ``--quick`` stays under a minute
    however many quick cases the families add."""

    repeats: int | None = None
    budget: float = 2.0
    min_repeats: int = 5
    max_repeats: int = 100
    min_sample: float = 2e-3
    total_budget: float | None = None

    @classmethod
    def quick(cls, repeats: int | None = None) -> Settings:
        return cls(
            repeats=repeats,
            budget=2.0,
            min_repeats=5,
            max_repeats=60,
            min_sample=1e-3,
            total_budget=35.0,
        )


@dataclass
class Goal:
    """One target of ``Case.goals`` and how the run measured up (see ``Case.goals``)."""

    key: str
    # "speedup" (peer time / fastreg time >= target), "limit" (ratio <= target), "seconds"
    # (fastreg median <= target)
    kind: str
    target: float
    measured: float | None = None
    # "met", "missed", "skipped" (contender absent), "invalid" (bad key), "not counted" (the
    # case ran beyond the machine limit: a measurement problem)
    status: str = "skipped"


@dataclass
class Timing:
    median_s: float
    min_s: float
    number: int  # calls per sample
    rounds: int
    throughput: float | None = None  # GB/s or GFLOP/s
    max_s: float | None = None  # the spread of the rounds: min, quartiles, max
    q1_s: float | None = None
    q3_s: float | None = None


@dataclass
class Result:
    name: str
    family: str
    limit: str
    peers: list[str]
    bytes_moved: int | None
    flops: int | None
    unit: str | None  # "GB/s", "GFLOP/s" or None
    timings: dict[str, Timing] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # declared peers that setup did not return
    failed: dict[str, str] = field(default_factory=dict)  # peer or limit -> the error it raised
    speedups: dict[str, float] = field(default_factory=dict)  # peer time / fastreg time
    limit_ratio: float | None = None  # fastreg time / limit time
    percent_of_limit: float | None = None  # 100 * limit time / fastreg time
    goals: list[Goal] = field(default_factory=list)
    # Contenders (fastreg or a peer) timed faster than the limit: the limit was measured badly.
    beyond_limit: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole case, setup and warm-up included
    error: str | None = None


def select_cases(
    cases: Sequence[Case], *, quick: bool = False, filters: Sequence[str] = ()
) -> list[Case]:
    """Cases whose name or family contains any of ``filters`` (case-insensitive; all if none),
    restricted to ``Case.quick`` ones when ``quick``."""
    chosen = []
    for case in cases:
        if quick and not case.quick:
            continue
        haystack = f"{case.family} {case.name}".lower()
        if filters and not any(f.lower() in haystack for f in filters):
            continue
        chosen.append(case)
    return chosen


def _sample(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


Sampler = Callable[[Callable[[], Any], int], float]

#: Contenders built on PyTorch, whose OpenMP workers spin after each op (module docstring).
SPINNING_CONTENDERS = frozenset({"torch", "kornia"})
#: The pause after a sample of one of them: longer than the ~10 ms its workers spin.
SETTLE_SECONDS = 0.02
#: The shortest sample of a case that pauses after every sample (:attr:`.Case.settle`).
_SETTLED_SAMPLE = 0.05


def _time_interleaved(
    contenders: dict[str, Callable[[], Any]],
    settings: Settings,
    warm: bool = False,
    sampler: Sampler = _sample,
    max_number: int = 10_000,
    settle: float = SETTLE_SECONDS,
    settle_all: float = 0.0,
) -> dict[str, Timing]:
    labels = list(contenders)
    pauses = {label: max(settle if label in SPINNING_CONTENDERS else 0.0, settle_all)
              for label in labels}
    # The warm-up call (unless the caller made it: ``warm``) compiles (cached Numba kernels load
    # from disk) and faults the pages in; the next call estimates the per-call time that sizes
    # `number` and the round count.
    estimates = {}
    for label in labels:
        if not warm:
            contenders[label]()
        estimates[label] = max(sampler(contenders[label], 1), 1e-7)
    # After a pause every thread pool in the process is asleep and the first call pays for
    # waking it (~0.2-0.3 ms a parallel region on the VM): with pauses, a sample lasts at least
    # _SETTLED_SAMPLE seconds, so it times mostly warm calls, as a training loop makes them.
    min_sample = max(settings.min_sample, _SETTLED_SAMPLE) if settle_all else settings.min_sample
    numbers = {
        label: max(1, min(max_number, round(min_sample / estimates[label])))
        for label in labels
    }
    if settings.repeats is not None:
        rounds = max(1, settings.repeats)
    else:
        per_round = sum(numbers[label] * estimates[label] + pauses[label] for label in labels)
        rounds = int(settings.budget / per_round) if per_round > 0 else settings.max_repeats
        rounds = max(settings.min_repeats, min(settings.max_repeats, rounds))
    samples: dict[str, list[float]] = {label: [] for label in labels}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection inside one sample is noise, not the op's cost
    try:
        for r in range(rounds):
            for j in range(len(labels)):
                label = labels[(r + j) % len(labels)]
                samples[label].append(sampler(contenders[label], numbers[label]))
                if pauses[label]:
                    time.sleep(pauses[label])
    finally:
        if gc_was_enabled:
            gc.enable()
    return {label: _timing(values, numbers[label], rounds) for label, values in samples.items()}


def _timing(values: list[float], number: int, rounds: int) -> Timing:
    q1, q3 = values[0], values[0]
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Timing(
        median_s=statistics.median(values),
        min_s=min(values),
        number=number,
        rounds=rounds,
        max_s=max(values),
        q1_s=q1,
        q3_s=q3,
    )


def _evaluate_goals(case: Case, result: Result) -> list[Goal]:
    goals = []
    for key, target in case.goals.items():
        if key == "fastreg":
            goal = Goal(key, "seconds", float(target))
            timing = result.timings.get("fastreg")
            goal.measured = None if timing is None else timing.median_s
            if goal.measured is not None:
                goal.status = "met" if goal.measured <= target else "missed"
        elif key == case.limit:
            goal = Goal(key, "limit", float(target))
            goal.measured = result.limit_ratio
            if goal.measured is not None:
                goal.status = "met" if goal.measured <= target else "missed"
        elif key in case.peers:
            goal = Goal(key, "speedup", float(target))
            goal.measured = result.speedups.get(key)
            if goal.measured is not None:
                goal.status = "met" if goal.measured >= target else "missed"
        else:
            goal = Goal(key, "invalid", float(target), status="invalid")
        goals.append(goal)
    return goals


def run_case(
    case: Case, backend: str, settings: Settings, sampler: Sampler | None = None
) -> Result:
    """Set up, warm up and time one case; errors are caught and reported in ``Result.error``.
    A device case is timed by ``sampler`` (default: a new :class:`.device.DeviceSampler`)."""
    unit = "GB/s" if case.bytes_moved else "GFLOP/s" if case.flops else None
    result = Result(
        name=case.name,
        family=case.family,
        limit=case.limit,
        peers=list(case.peers),
        bytes_moved=case.bytes_moved,
        flops=case.flops,
        unit=unit,
    )
    start = time.perf_counter()
    try:
        contenders = case.setup(backend)
        if "fastreg" not in contenders:
            raise ValueError(f"setup returned {sorted(contenders)}, with no 'fastreg' contender")
        result.missing = [label for label in (*case.peers, case.limit) if label not in contenders]
        contenders = dict(contenders)
        contenders["fastreg"]()  # its failure is the case's
        for label in list(contenders)[1:]:
            # A broken peer or limit costs its own row, not the fastreg measurement.
            try:
                contenders[label]()
            except Exception as error:
                result.failed[label] = f"{type(error).__name__}: {error}"
                del contenders[label]
        if case.arrays == "numpy":
            result.timings = _time_interleaved(contenders, settings, warm=True,
                                               settle_all=case.settle)
        else:
            if sampler is None:
                from .device import DeviceSampler

                sampler = DeviceSampler()
            result.timings = _time_interleaved(contenders, settings, warm=True, sampler=sampler,
                                               max_number=1, settle=0.0)
    except Exception:
        result.error = traceback.format_exc(limit=-3).strip()
        result.seconds = time.perf_counter() - start
        return result
    work = case.bytes_moved or case.flops
    for timing in result.timings.values():
        if work:
            timing.throughput = work / timing.median_s / 1e9
    ours = result.timings["fastreg"].median_s
    for peer in case.peers:
        if peer in result.timings:
            result.speedups[peer] = result.timings[peer].median_s / ours
    if case.limit in result.timings:
        limit = result.timings[case.limit].median_s
        result.limit_ratio = ours / limit
        result.percent_of_limit = 100.0 * limit / ours
        result.beyond_limit = [
            label
            for label, timing in result.timings.items()
            if label != case.limit and timing.median_s < limit
        ]
    result.goals = _evaluate_goals(case, result)
    if result.beyond_limit:
        for goal in result.goals:
            if goal.status in ("met", "missed"):
                goal.status = "not counted"
    result.seconds = time.perf_counter() - start
    return result


def run(
    cases: Sequence[Case],
    backend: str,
    settings: Settings,
    progress: TextIO | None = None,
) -> list[Result]:
    """Run ``cases`` in order, printing ``[i/n] name ...`` and its duration to ``progress``."""
    results = []
    start = time.perf_counter()
    sampler = None
    if any(case.arrays != "numpy" for case in cases):
        from .device import DeviceSampler

        sampler = DeviceSampler()  # one L2-flush buffer for the whole run
    for i, case in enumerate(cases, 1):
        if progress is not None:
            print(f"[{i}/{len(cases)}] {case.name} ...", end="", file=progress, flush=True)
        case_settings = settings
        if settings.total_budget is not None:
            share = (settings.total_budget - (time.perf_counter() - start)) / (len(cases) - i + 1)
            case_settings = replace(settings, budget=max(0.05, min(settings.budget, share)))
        result = run_case(case, backend, case_settings, sampler)
        if progress is not None:
            status = "ERROR" if result.error else f"{result.seconds:.1f} s"
            print(f" {status}", file=progress, flush=True)
        results.append(result)
    return results


def header_lines(backend: str, settings: Settings, device: str | None = None) -> list[str]:
    """The lines above the table: what ran, where, and how to read it. The one place to add
    a line about the machine or the threading runtime; ``device`` is the GPU's line."""
    rounds = f"{settings.repeats} rounds" if settings.repeats else f"{settings.budget:g} s a case"
    gpu = [] if device is None else [
        device, "device time by CUDA events, one call per sample, L2 flushed between"
    ]
    return [
        f"fastreg bench: backend {backend}, {os.cpu_count()} CPUs, {rounds}",
        *gpu,
        *runtime_header_lines(),
        "medians of interleaved rounds, with the fastest and slowest round (min-max);",
        f"a {SETTLE_SECONDS * 1e3:g} ms pause after each PyTorch-based sample (its workers spin),",
        f"{BLAS_SETTLE_SECONDS * 1e3:g} ms after every sample of a case using NumPy's BLAS;",
        "fastreg column: fastreg's speed-up over each peer, its time against the machine",
        "limit (a copy of the same bytes, the bare GEMM), all measured in this run",
    ]


def runtime_header_lines() -> list[str]:
    """The CPU runtime, its thread count and the threading variables as found (none is set by
    the bench: it measures the environment it is given)."""
    runtime = _runtime.describe()
    found = [f"{k}={v}" for k, v in runtime["environment"].items() if v is not None]
    return [
        f"runtime: {runtime['runtime']}, {runtime['threads']} threads; "
        f"environment: {' '.join(found) or 'no threading variable set'}",
    ]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for row in cpuinfo:
                if row.startswith("model name"):
                    return row.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    """Versions of fastreg and the libraries it runs with or against (None: not installed).

    Imports Numba, PyTorch and CuPy when installed, so call it only where that cost is wanted.
    """
    import fastreg

    versions: dict[str, str | None] = {
        "fastreg": fastreg.__version__,
        "rng_spec_version": str(fastreg.RNG_SPEC_VERSION),
        "python": platform.python_version(),
    }
    for name in ("numpy", "numba", "torch", "cupy"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception:  # not installed, or a broken CUDA install: both mean "not usable"
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    """The machine and software a run was taken on, for the JSON report."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "versions": package_versions(),
        "runtime": _runtime.describe(),
        "fastreg_threads": _runtime.get_num_threads(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch_threads"] = None
    return info


def to_json(
    results: Sequence[Result], backend: str, settings: Settings, device: dict | None = None
) -> dict[str, Any]:
    machine = machine_info()
    if device is not None:
        machine["gpu"] = device
    return {
        "machine": machine,
        "backend": backend,
        "settings": asdict(settings),
        "results": [asdict(result) for result in results],
    }


def load_results(report: dict[str, Any]) -> list[Result]:
    """The results of a JSON report (``to_json``, ``--json``), to print or compare again."""
    results = []
    for entry in report["results"]:
        fields = dict(entry)
        fields["timings"] = {k: Timing(**t) for k, t in entry.get("timings", {}).items()}
        fields["goals"] = [Goal(**g) for g in entry.get("goals", [])]
        results.append(Result(**fields))
    return results


def main(
    *,
    backend: str | None = None,
    quick: bool = False,
    filters: Sequence[str] = (),
    repeats: int | None = None,
    budget: float | None = None,
    json_path: str | None = None,
    plot_path: str | None = None,
    wide: bool = False,
    cases: Sequence[Case] | None = None,
    out: TextIO = sys.stdout,
    progress: TextIO = sys.stderr,
) -> int:
    """The ``bench`` command: select, run, print the table (80 columns unless ``wide``), write
    JSON to ``json_path`` and draw the figure to ``plot_path`` when given. Returns the exit code
    (2: an unusable backend; 1 if no case matched or a case raised; missed goals are reported,
    not failures)."""
    import fastreg

    backend = backend or fastreg.get_backend()
    if backend not in fastreg.available_backends():
        print(
            f"backend {backend!r} is not available here; available: "
            f"{', '.join(fastreg.available_backends())}",
            file=progress,
        )
        return 2
    kind = _backends.backend_array_kind(backend)
    selected = [
        case
        for case in select_cases(all_cases() if cases is None else cases, quick=quick,
                                 filters=filters)
        if case.arrays == kind
    ]
    # The fresh-process cases time host arrays (the MLP train step): host backends only.
    host_processes = kind == "numpy" and _process_case_selected(filters, cases is not None)
    if not selected and not host_processes:
        print(f"no benchmark case matches backend={backend!r} (arrays {kind}) quick={quick} "
              f"filters={list(filters)}", file=progress)
        return 1
    device = None
    if kind != "numpy":
        from .device import device_info, device_line

        device = device_info()
        print(device_line(device), file=progress)
    settings = Settings.quick(repeats) if quick else Settings(repeats=repeats)
    if budget is not None:
        settings = replace(settings, budget=budget)
    results = run(selected, backend, settings, progress=progress)
    device_text = None if device is None else device_line(device)
    print(format_table(results, header_lines(backend, settings, device_text), wide=wide), file=out)
    for result in results:
        if result.error:
            print(f"\n{result.name} failed:\n{result.error}", file=progress)
    fresh = _run_process_cases(quick, filters, cases is not None, out, progress) if host_processes \
        else []
    report = None
    if json_path is not None or plot_path is not None:
        report = to_json(results, backend, settings, device)
        report["process_cases"] = [processes.to_json(r) for r in fresh]
    if json_path is not None:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        print(f"wrote {json_path}", file=progress)
    if plot_path is not None:
        from .plot import plot_results

        print(f"wrote {plot_results(report, plot_path)}", file=progress)
    failed = any(result.error for result in results) or any(r.error for r in fresh)
    return 1 if failed else 0


def _process_case_selected(filters: Sequence[str], custom_cases: bool) -> bool:
    if custom_cases or not processes.available():
        return False
    haystack = f"torch {processes.MLP_NAME}".lower()
    return not filters or any(f.lower() in haystack for f in filters)


def _run_process_cases(quick: bool, filters: Sequence[str], custom_cases: bool, out: TextIO,
                       progress: TextIO) -> list[processes.ProcessResult]:
    """The fresh-process cases (:mod:`fastreg._bench.processes`) the filters select: 2 rounds
    with ``--quick``, else 5."""
    if not _process_case_selected(filters, custom_cases):
        return []
    rounds = 2 if quick else 5
    print(f"[fresh processes] {processes.MLP_NAME}: {rounds} rounds", file=progress)
    result = processes.run_mlp(rounds=rounds)
    print("", file=out)
    print("\n".join(processes.format_result(result)), file=out)
    return [result]
