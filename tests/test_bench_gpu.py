"""The GPU benchmark cases and the runner's device path, without a GPU.

The case table is checked as data (sizes, traffic, goals); the runner's device bookkeeping on
made-up cases with a fake sampler; and the real cases, shrunk (``gpu_cases(tiny=True)``), run
end to end on the emulated CuPy (tests/emulated_cupy) with the PyTorch peers on the CPU, so every
contender's code runs. Speed is measured only on a real device (bench/gpu_check.sh).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cuda_emulator
import pytest

import fastreg
from fastreg._bench import cases_gpu, device, runner
from fastreg._bench.cases import ARRAY_KINDS, FAMILIES, Case, all_cases

TESTS = Path(__file__).resolve().parent


def test_gpu_cases_are_in_the_table_with_device_inputs():
    table = all_cases()
    gpu = [c for c in table if c.arrays == "cupy"]
    assert [c.name for c in gpu] == [c.name for c in cases_gpu.CASES]
    assert all(c.arrays in ARRAY_KINDS for c in table)
    for case in gpu:
        assert case.name.startswith("gpu ") and case.family in FAMILIES
        assert (case.bytes_moved or 0) > 0 or (case.flops or 0) > 0
        assert case.limit in ("copy", "gemm") and case.limit not in case.peers
        for key in case.goals:
            assert key in (*case.peers, case.limit, "fastreg"), (case.name, key)


def test_gpu_case_sizes_follow_the_issue():
    by_name = {c.name: c for c in cases_gpu.CASES}
    n = 1 << 26
    dropout = by_name["gpu dropout 64M f32"]
    assert dropout.bytes_moved == 2 * 4 * n and dropout.peers == ("torch", "cupy")
    assert dropout.goals == {"copy": 1 / 0.8, "torch": 1.0}
    dense = by_name["gpu dense_dropout relu fwd 8192x4096->4096 f32"]
    assert dense.flops == 2 * 8192 * 4096 * 4096 and dense.goals["gemm"] == 1.10
    dc = by_name["gpu dropconnect per_example fwd+bwd 128x1024->1024 f32"]
    assert dc.goals["fastreg"] == 2e-3 and dc.flops == 3 * 2 * 128 * 1024 * 1024
    adam = by_name["gpu prox_adam_ 64M f32"]
    assert adam.bytes_moved == 7 * 4 * n
    assert {"torch_foreach", "torch_fused", "cupy"} <= set(adam.peers)


def _device_case(name="fake gpu", **fields):
    defaults = dict(family="dropout", limit="copy", peers=("torch",), bytes_moved=8,
                    arrays="cupy",
                    setup=lambda backend: {"fastreg": lambda: None, "copy": lambda: None})
    return Case(name=name, **{**defaults, **fields})


class _FakeSampler:
    """Device seconds: fastreg 2 ms, anything else 1 ms (a limit faster than the op, as it must
    be: a contender faster than the limit is flagged and its goals not counted); records the
    calls per sample."""

    def __init__(self):
        self.numbers = []

    def __call__(self, fn, number):
        self.numbers.append(number)
        fn()
        return 2e-3 if getattr(fn, "is_fastreg", False) else 1e-3


def test_device_cases_take_one_call_per_sample_and_seconds_goals():
    sampler = _FakeSampler()

    def setup(backend):
        def fastreg_op():
            return None

        fastreg_op.is_fastreg = True
        return {"fastreg": fastreg_op, "copy": lambda: None}

    case = _device_case(setup=setup, goals={"fastreg": 2.5e-3, "copy": 1.5})
    result = runner.run_case(case, "cupy", runner.Settings(repeats=3), sampler)
    assert result.error is None and set(sampler.numbers) == {1}
    assert result.timings["fastreg"].median_s == pytest.approx(2e-3)
    assert result.limit_ratio == pytest.approx(2.0)
    goals = {g.key: g for g in result.goals}
    assert goals["fastreg"].kind == "seconds" and goals["fastreg"].status == "met"
    assert goals["copy"].status == "missed"  # 2.0 > 1.5
    header = runner.header_lines("cupy", runner.Settings(repeats=3), "GPU test line")
    table = runner.format_table([result], header)
    assert "GPU test line" in table and "<=2.5 ms met" in table


def test_bench_on_a_device_backend_times_only_device_cases(monkeypatch):
    monkeypatch.setattr(fastreg, "available_backends", lambda: ("numpy", "numba", "cupy"))
    info = {"name": "Fake GPU", "compute_capability": "90", "multiprocessors": 132,
            "clock_mhz": 1980, "memory_clock_mhz": 2619, "memory_bus_bits": 5120,
            "memory_gib": 139.8, "l2_mib": 60.0, "driver": "13.0", "runtime": "13.0",
            "cupy": "14.0.0", "torch": "2.13.0", "torch_cuda": "13.0"}
    monkeypatch.setattr(device, "device_info", lambda: info)
    monkeypatch.setattr(device, "DeviceSampler", _FakeSampler)
    host = Case(name="host case", family="dropout", limit="copy", bytes_moved=8,
                setup=lambda backend: pytest.fail("a host case ran on the device backend"))
    out, progress = io.StringIO(), io.StringIO()
    code = runner.main(backend="cupy", cases=[host, _device_case()], repeats=2, out=out,
                       progress=progress)
    assert code == 0, progress.getvalue()
    text = out.getvalue()
    assert "fake gpu" in text and "host case" not in text
    line = " ".join(text.split("\n\n")[0].split())  # the header, wrapped to 80 columns
    for part in ("Fake GPU", "132 SMs", "1980 MHz", "driver CUDA 13.0", "CuPy 14.0.0",
                 "PyTorch 2.13.0"):
        assert part in line


def test_bench_on_a_host_backend_skips_device_cases():
    out, progress = io.StringIO(), io.StringIO()
    code = runner.main(backend="numpy", cases=[_device_case()], out=out, progress=progress)
    assert code == 1 and "no benchmark case matches backend='numpy'" in progress.getvalue()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_traffic_limit_kernels_compile_with_nvcc(tmp_path, arch):
    source = tmp_path / "traffic.cu"
    source.write_text(device._TRAFFIC_SOURCE)
    result = subprocess.run(["nvcc", f"-arch={arch}", "-cubin", "--std=c++14", "-o",
                             str(tmp_path / "traffic.cubin"), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    cubin = (tmp_path / "traffic.cubin").read_bytes()
    for k in (1, 2, 3):
        assert f"fastreg_bench_update{k}_f32".encode() in cubin


_TINY_RUN = """
import json, sys
from fastreg._bench import cases_gpu, runner
cases = cases_gpu.gpu_cases(tiny=True, torch_device="cpu")
results = runner.run(cases, "cupy", runner.Settings(repeats=2, min_sample=0.0))
print(json.dumps(runner.to_json(results, "cupy", runner.Settings(repeats=2))))
"""


@pytest.mark.slow
@pytest.mark.skipif(cuda_emulator.compiler() is None, reason="no host C++ compiler")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the emulator needs ucontext")
def test_tiny_gpu_cases_run_every_contender_on_the_emulated_device(tmp_path, pytestconfig):
    pytest.importorskip("torch")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS / "emulated_cupy"), str(TESTS), str(pytestconfig.rootpath),
         env.get("PYTHONPATH", "")]
    )
    env["FASTREG_EMULATOR_CACHE"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", _TINY_RUN], cwd=pytestconfig.rootpath, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.splitlines()[-1])
    names = [r["name"] for r in report["results"]]
    assert len(names) == len(cases_gpu.gpu_cases(tiny=True))
    for result in report["results"]:
        assert result["error"] is None, (result["name"], result["error"])
        assert not result["failed"] and not result["missing"], result["name"]
        assert set(result["timings"]) == {"fastreg", *result["peers"], result["limit"]}
        assert all(t["number"] == 1 for t in result["timings"].values())


@pytest.mark.slow
@pytest.mark.skipif(cuda_emulator.compiler() is None, reason="no host C++ compiler")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the emulator needs ucontext")
def test_gpu_smoke_launches_every_kernel_on_the_emulated_device(tmp_path, pytestconfig):
    """bench/gpu_smoke.py (what compute-sanitizer runs on a GPU) reaches every kernel of every
    .cu file, in every dtype; it exits 1 naming any it missed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS / "emulated_cupy"), str(TESTS), str(pytestconfig.rootpath),
         env.get("PYTHONPATH", "")]
    )
    env["FASTREG_EMULATOR_CACHE"] = str(tmp_path)
    smoke = pytestconfig.rootpath / "bench" / "gpu_smoke.py"
    done = subprocess.run([sys.executable, str(smoke)], cwd=pytestconfig.rootpath, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    for family in ("philox", "dropout", "dense", "dropconnect", "prox"):
        assert f"{family}: " in done.stdout and "never launched" not in done.stdout


def test_gpu_check_script_is_valid_bash(pytestconfig):
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = pytestconfig.rootpath / "bench" / "gpu_check.sh"
    assert os.access(script, os.X_OK)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
