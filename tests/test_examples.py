"""examples/digits_mlp.py and its plain-PyTorch twin run, and say what they are doing from the
first line on (before the seconds that importing PyTorch takes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_mlp.py"


@pytest.mark.slow
@pytest.mark.parametrize("flags", [(), ("--plain",)], ids=["fastreg", "plain"])
def test_digits_example_reports_progress_and_its_time(flags):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    done = subprocess.run(
        [sys.executable, "-u", str(EXAMPLE), "--epochs", "1", *flags],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("loading PyTorch")
    assert any("first step done" in line for line in lines)
    assert any(line.startswith("test accuracy") for line in lines)
    assert lines[-1].startswith("training took")
    if flags:
        assert "0 weights exactly 0" in done.stdout  # the subgradient twin has no exact zeros
