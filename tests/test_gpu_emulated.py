"""The GPU test suite, run without a GPU: tests/test_gpu_cupy.py in a child pytest whose ``cupy``
is the emulated one (tests/emulated_cupy), so every CuPy twin and the real CUDA kernels run on
the host, every block and thread of every launch (tests/cuda_emulator.h).

This proves the kernels' logic, their launch arguments and the twins' Python code; speed and
device-only behaviour wait for a real device, where test_gpu_cupy.py runs directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cuda_emulator
import pytest

TESTS = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(cuda_emulator.compiler() is None, reason="no host C++ compiler"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the emulator needs ucontext"),
]


def test_gpu_suite_passes_on_the_emulated_device(tmp_path, pytestconfig):
    report = tmp_path / "report.xml"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS / "emulated_cupy"), str(TESTS), env.get("PYTHONPATH", "")]
    )
    env["FASTREG_EMULATOR_CACHE"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(TESTS / "test_gpu_cupy.py"), "-q", "-p",
         "no:cacheprovider", f"--junitxml={report}"],
        cwd=pytestconfig.rootpath, env=env, capture_output=True, text=True, timeout=1800,
    )
    summary = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, summary
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    # All of it ran: an emulator that failed to import would make cupy unavailable and skip all.
    assert counts["tests"] > 1000 and counts["skipped"] == 0, (counts, summary)
    assert counts["failures"] == counts["errors"] == 0, (counts, summary)
