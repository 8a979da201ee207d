"""``python -m fastreg info|bench`` in subprocesses, and the runner's bookkeeping (no timings)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest

import fastreg
from fastreg._bench import runner
from fastreg._bench.cases import Case


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastreg", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_info_reports_versions_backends_threads_and_cache():
    done = _cli("info")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines() if " " in line)
    assert lines["fastreg"].strip() == fastreg.__version__
    assert lines["RNG_SPEC_VERSION"].strip() == str(fastreg.RNG_SPEC_VERSION)
    assert lines["NumPy"].strip() == np.__version__
    assert "numba" in lines["backends"] and "numpy" in lines["backends"]
    assert "default backend" in done.stdout
    assert lines["threads"].strip() == str(fastreg.get_num_threads())
    assert "CPU runtime" in done.stdout and "Numba cache" in done.stdout


def test_bench_quick_writes_table_and_json(tmp_path):
    out = tmp_path / "out.json"
    done = _cli("bench", "--quick", "--filter", "dropout 64k", "--repeats", "3", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "[1/1] dropout 64k f32 ..." in done.stderr
    table = done.stdout
    for word in ("dropout 64k f32", "fastreg", "numpy", "copy", "GB/s", "% of copy", "min-max"):
        assert word in table
    assert max(len(line) for line in table.splitlines()) <= 80
    report = json.loads(out.read_text())
    machine = report["machine"]
    for key in ("cpu_model", "cpu_count", "date", "versions", "fastreg_threads", "runtime"):
        assert machine[key], key
    assert machine["versions"]["fastreg"] == fastreg.__version__
    assert report["backend"] == "numba"
    (result,) = report["results"]
    assert result["name"] == "dropout 64k f32" and result["error"] is None
    timings = result["timings"]
    assert list(timings)[0] == "fastreg" and "copy" in timings and "numpy" in timings
    for timing in timings.values():
        assert timing["rounds"] == 3 and 0 < timing["min_s"] <= timing["median_s"]
        assert timing["min_s"] <= timing["q1_s"] <= timing["median_s"] <= timing["q3_s"]
        assert timing["q3_s"] <= timing["max_s"]
        assert timing["throughput"] == pytest.approx(
            result["bytes_moved"] / timing["median_s"] / 1e9
        )
    fastreg_s, copy_s = timings["fastreg"]["median_s"], timings["copy"]["median_s"]
    assert result["limit_ratio"] == pytest.approx(fastreg_s / copy_s)
    assert result["percent_of_limit"] == pytest.approx(100 * copy_s / fastreg_s)
    assert result["speedups"]["numpy"] == pytest.approx(timings["numpy"]["median_s"] / fastreg_s)


def test_bench_without_matching_case_fails_clearly():
    done = _cli("bench", "--filter", "no such case")
    assert done.returncode == 1
    assert "no benchmark case matches" in done.stderr


def test_cli_needs_a_command():
    done = _cli()
    assert done.returncode == 2
    assert "bench" in done.stderr and "info" in done.stderr


# The runner's bookkeeping, on made-up cases whose contenders take no time worth measuring.


def _case(setup, **fields) -> Case:
    defaults = dict(name="fake", family="dropout", limit="copy", peers=("torch", "numpy"))
    return Case(setup=setup, **{**defaults, "bytes_moved": 8, **fields})


def _noop_setup(labels):
    return lambda backend: {label: (lambda: None) for label in labels}


def _result_with(speedups, limit_ratio):
    result = runner.Result("fake", "dropout", "copy", ["torch", "numpy"], 8, None, "GB/s")
    result.speedups, result.limit_ratio = speedups, limit_ratio
    return result


def test_goals_compare_peers_as_speedup_floors_and_limits_as_ceilings():
    case = _case(None, goals={"torch": 20.0, "numpy": 2.0, "copy": 3.0, "gemm": 1.0})
    goals = runner._evaluate_goals(case, _result_with({"torch": 25.0, "numpy": 1.5}, 3.5))
    status = {goal.key: (goal.kind, goal.status) for goal in goals}
    assert status == {
        "torch": ("speedup", "met"),
        "numpy": ("speedup", "missed"),
        "copy": ("limit", "missed"),
        "gemm": ("invalid", "invalid"),
    }
    goals = runner._evaluate_goals(case, _result_with({"numpy": 2.0}, 3.0))
    status = {goal.key: goal.status for goal in goals}
    assert status["torch"] == "skipped" and status["numpy"] == "met" and status["copy"] == "met"


def test_run_case_records_missing_peers_and_ratios():
    result = runner.run_case(
        _case(_noop_setup(["fastreg", "numpy", "copy"]), goals={"torch": 20.0}),
        "numba",
        runner.Settings(repeats=2, min_sample=1e-5),
    )
    assert result.error is None
    assert list(result.timings) == ["fastreg", "numpy", "copy"]
    assert result.missing == ["torch"]
    assert set(result.speedups) == {"numpy"} and result.limit_ratio is not None
    assert [goal.status for goal in result.goals] == ["skipped"]
    table = runner.format_table([result])
    assert "not installed" in table and ">=20x skipped" in table


def test_run_case_reports_a_failing_case_and_goes_on():
    def broken(backend):
        raise RuntimeError("setup exploded")

    progress = io.StringIO()
    cases = [_case(broken, name="bad"), _case(_noop_setup(["fastreg", "copy"]), name="good")]
    results = runner.run(cases, "numba", runner.Settings(repeats=1), progress=progress)
    assert "setup exploded" in results[0].error and results[1].error is None
    assert "[1/2] bad ... ERROR" in progress.getvalue()
    assert "[2/2] good ..." in progress.getvalue()
    assert "cases with errors: bad" in " ".join(runner.format_table(results).split())


def test_select_cases_by_quick_and_substring():
    cases = [
        _case(None, name="dropout 4M f32"),
        _case(None, name="dense 128x784->500 f32", family="dense", quick=False),
    ]
    assert runner.select_cases(cases, quick=True) == cases[:1]
    assert runner.select_cases(cases, filters=["DENSE"]) == cases[1:]
    assert runner.select_cases(cases, filters=["4m", "dense"]) == cases
    assert runner.select_cases(cases, quick=True, filters=["dense"]) == []


def test_adaptive_rounds_stay_within_bounds():
    settings = runner.Settings(budget=0.0, min_repeats=4, max_repeats=6, min_sample=1e-5)
    timings = runner._time_interleaved({"fastreg": lambda: None}, settings)
    assert timings["fastreg"].rounds == 4
    settings = runner.Settings(budget=10.0, min_repeats=4, max_repeats=6, min_sample=1e-5)
    assert runner._time_interleaved({"fastreg": lambda: None}, settings)["fastreg"].rounds == 6


def test_pytorch_based_samples_are_followed_by_a_pause_outside_the_timing(monkeypatch):
    events = []
    monkeypatch.setattr(runner.time, "sleep", lambda seconds: events.append(("sleep", seconds)))

    def sampler(fn, number):
        fn()
        return 1e-3

    contenders = {label: (lambda label=label: events.append(label))
                  for label in ("fastreg", "torch", "kornia", "copy")}
    settings = runner.Settings(repeats=3, min_sample=1e-3)
    runner._time_interleaved(contenders, settings, warm=True, sampler=sampler)
    timed = events[4:]  # after the four estimating calls
    pause = ("sleep", runner.SETTLE_SECONDS)
    for i, event in enumerate(timed):
        if event in ("torch", "kornia"):
            assert timed[i + 1] == pause
        elif event in ("fastreg", "copy"):
            assert i + 1 == len(timed) or timed[i + 1] != pause
    assert timed.count(pause) == 6  # once per round for each of the two

    # a case using NumPy's BLAS pauses after every sample, PyTorch's at least as long
    events.clear()
    runner._time_interleaved(contenders, settings, warm=True, sampler=sampler, settle_all=0.5)
    timed = events[4:]
    samples = [e for e in timed if not isinstance(e, tuple)]
    assert len(samples) == 12
    assert [e for e in timed if isinstance(e, tuple)] == [("sleep", 0.5)] * 12


def test_a_failing_peer_loses_its_row_not_the_case():
    def setup(backend):
        def broken():
            raise RuntimeError("peer exploded")

        return {"fastreg": lambda: None, "torch": broken, "copy": lambda: None}

    result = runner.run_case(
        _case(setup, goals={"torch": 2.0}), "numba", runner.Settings(repeats=1, min_sample=1e-5)
    )
    assert result.error is None and list(result.timings) == ["fastreg", "copy"]
    assert result.failed == {"torch": "RuntimeError: peer exploded"}
    assert [goal.status for goal in result.goals] == ["skipped"]
    assert "peer exploded" in runner.format_table([result])


def _timed(median, low=None, high=None):
    low = median if low is None else low
    high = median if high is None else high
    return runner.Timing(median, low, 1, 5, None, high, low, high)


def test_a_contender_faster_than_the_limit_is_flagged_and_its_goals_not_counted():
    def setup(backend):
        return {"fastreg": lambda: None, "torch": lambda: time.sleep(1e-3), "copy": slow_copy}

    def slow_copy():
        time.sleep(2e-3)  # a copy that takes longer than the op: an impossible "result"

    case = _case(setup, peers=("torch",), goals={"torch": 2.0, "copy": 3.0})
    result = runner.run_case(case, "numba", runner.Settings(repeats=3, min_sample=1e-5))
    assert result.percent_of_limit > 100 and result.beyond_limit == ["fastreg", "torch"]
    assert {goal.status for goal in result.goals} == {"not counted"}
    table = " ".join(runner.format_table([result]).split())
    assert "% of copy (!)" in table and "measurement" in table and "goals met: 0/0" in table
    assert "not counted, beyond the machine limit (!): fake" in table


def test_the_default_table_fits_80_columns_and_wide_shows_every_figure():
    result = runner.Result(
        "dropconnect per-example fwd+bwd 128x1024->1024 f32 (a long case name indeed)",
        "dropconnect",
        "gemm",
        ["torch", "numpy"],
        None,
        10**9,
        "GFLOP/s",
    )
    result.timings = {
        "fastreg": _timed(0.158, 0.113, 0.201),
        "torch": _timed(3.71, 3.69, 3.8),
        "per_tensor": _timed(1.234e-5, 1.1e-5, 9.99e-4),
        "gemm": _timed(6.42e-3),
    }
    for timing in result.timings.values():
        timing.throughput = 1 / timing.median_s
    result.speedups = {"torch": 3.71 / 0.158, "per_tensor": 1.234e-5 / 0.158}
    result.limit_ratio, result.percent_of_limit = 0.158 / 6.42e-3, 100 * 6.42e-3 / 0.158
    result.goals = [
        runner.Goal("torch", "speedup", 20.0, 23.5, "met"),
        runner.Goal("gemm", "limit", 1.11, 24.6, "missed"),
        runner.Goal("fastreg", "seconds", 0.2, 0.158, "met"),
    ]
    result.failed = {"numpy": "RuntimeError: " + "a very long message " * 10}
    header = runner.header_lines("numba", runner.Settings())
    table = runner.format_table([result], header)
    assert max(len(line) for line in table.splitlines()) <= 80, table
    assert "113-201" in table and "3.69-3.8" in table  # min-max in the median's unit
    assert "23.48x faster" in table and ">=20x met" in table and "<=1.11x missed" in table
    assert "<=200 ms met" in table
    wide = runner.format_table([result], header, wide=True)
    assert "q1-q3" in wide and "5 x 1" in wide and "GFLOP/s" in wide
    assert ("a very long message " * 10).strip() in wide


def test_json_results_load_back_into_the_same_table():
    result = runner.run_case(
        _case(_noop_setup(["fastreg", "numpy", "copy"])),
        "numba",
        runner.Settings(repeats=2, min_sample=1e-5),
    )
    report = json.loads(json.dumps(runner.to_json([result], "numba", runner.Settings())))
    assert runner.format_table(runner.load_results(report)) == runner.format_table([result])


def test_help_texts_read_plainly():
    top = _cli("--help").stdout
    bench = _cli("bench", "--help").stdout
    for text in (top, bench):
        assert "``" not in text and "%%" not in text and "issue" not in text
    assert "--wide" in bench and "80 columns" in bench


def test_bench_plot_prints_only_the_files_it_keeps(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    done = _cli("bench", "--quick", "--filter", "dropout 64k", "--repeats", "2", "--plot", str(png))
    assert done.returncode == 0, done.stderr
    assert png.stat().st_size > 0
    wrote = [line for line in done.stderr.splitlines() if line.startswith("wrote ")]
    assert wrote == [f"wrote {png}"]


def test_demo_with_an_unavailable_backend_exits_2_with_a_message():
    done = _cli("demo", "--quick", "--backend", "cupy")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "backend 'cupy'" in done.stderr
