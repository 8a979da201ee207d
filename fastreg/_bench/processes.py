"""Benchmark cases timed in fresh processes: what a user's training process gets (docs: runtime).

A case here is a training step whose speed can differ from process to process (it mixes BLAS,
PyTorch's thread pool and fastreg's). Each round starts one fresh interpreter per contender, one
after the other (never two at once), with the environment as given; each times ``steps`` steps
after a warm-up and reports the median step. The peer's process never imports fastreg, so its
time is PyTorch alone, not PyTorch beside fastreg's idle threads. The fastreg process also times
the plain PyTorch step after its own steps: PyTorch beside fastreg, which must not be slower than
PyTorch alone. The case reports the ratio of every round, their median and their minimum: a
bimodal result shows as a low minimum.

The MLP case (issue 14): 512x784 -> 1024 -> 1024 -> 10, ReLU, dropout p=0.2 after both hidden
layers, cross-entropy; ``fastreg.torch.DenseDropout`` x2 + ``nn.Linear`` head and
``fastreg.torch.ProxSGD(momentum=0.9, l2=weight_decay/2)`` against ``nn.Linear`` + ``nn.ReLU`` +
``nn.Dropout`` x2 + ``nn.Linear`` and ``torch.optim.SGD(momentum=0.9, weight_decay=1e-4)``.
Goals: median ratio >= 1.5, slowest round >= 1.3, PyTorch beside fastreg / alone <= 1.05.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

MLP_NAME = "torch MLP train step 512x784->1024->1024->10 f32 (fresh processes)"
MLP_GOALS = {"median": 1.5, "slowest": 1.3, "torch beside fastreg": 1.05}

_COMMON = """
import json, statistics, sys, time
import torch
from torch import nn

BATCH, IN, HIDDEN, CLASSES, P = 512, 784, 1024, 10, 0.2
torch.manual_seed(0)
x = torch.randn(BATCH, IN)
target = torch.randint(0, CLASSES, (BATCH,))

def plain():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Dropout(P),
                          nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Dropout(P),
                          nn.Linear(HIDDEN, CLASSES))
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

def median_step(model, opt, warmup, steps):
    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), target).backward()
        opt.step()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
"""

_FASTREG = _COMMON + """
import fastreg.torch as ft
torch.manual_seed(1)
model = nn.Sequential(ft.DenseDropout(IN, HIDDEN, p=P), ft.DenseDropout(HIDDEN, HIDDEN, p=P),
                      nn.Linear(HIDDEN, CLASSES))
opt = ft.ProxSGD(model.parameters(), lr=0.01, momentum=0.9, l2=0.5e-4)
ours = median_step(model, opt, WARMUP, STEPS)
beside = median_step(*plain(), WARMUP, STEPS)
print(json.dumps({"fastreg": ours, "torch beside fastreg": beside}))
"""

_TORCH = _COMMON + """
alone = median_step(*plain(), WARMUP, STEPS)
assert "fastreg" not in sys.modules
print(json.dumps({"torch": alone}))
"""


@dataclass
class ProcessResult:
    name: str
    rounds: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None

    def ratios(self) -> list[float]:
        return [r["torch"] / r["fastreg"] for r in self.rounds]

    def summary(self) -> dict[str, float]:
        ratios = self.ratios()
        beside = [r["torch beside fastreg"] / r["torch"] for r in self.rounds]
        return {"median": statistics.median(ratios), "slowest": min(ratios),
                "torch beside fastreg": statistics.median(beside)}


def _run(code: str, warmup: int, steps: int, timeout: float) -> dict[str, float]:
    script = f"WARMUP, STEPS = {warmup}, {steps}\n" + code
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_mlp(rounds: int = 5, warmup: int = 5, steps: int = 15,
            timeout: float = 300.0) -> ProcessResult:
    """``rounds`` rounds of one fresh fastreg process and one fresh PyTorch process (the order
    alternates from round to round)."""
    result = ProcessResult(MLP_NAME)
    try:
        for r in range(rounds):
            order = (_FASTREG, _TORCH) if r % 2 == 0 else (_TORCH, _FASTREG)
            sample: dict[str, float] = {}
            for code in order:
                sample.update(_run(code, warmup, steps, timeout))
            result.rounds.append(sample)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        result.error = f"{type(error).__name__}: {error}"
    return result


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


def format_result(result: ProcessResult) -> list[str]:
    """A few lines (under 80 columns) for the bench output."""
    lines = [result.name]
    if result.error:
        return [*lines, f"  failed: {result.error}"]
    for i, (sample, ratio) in enumerate(zip(result.rounds, result.ratios(), strict=True)):
        # 80 columns: "torch beside" is PyTorch's own step in the process that runs fastreg.
        lines.append(
            f"  round {i + 1:2d}, ms: fastreg {sample['fastreg'] * 1e3:6.1f}, torch alone "
            f"{sample['torch'] * 1e3:6.1f} ({ratio:4.2f}x), torch beside "
            f"{sample['torch beside fastreg'] * 1e3:6.1f}"
        )
    summary = result.summary()
    for key, target in MLP_GOALS.items():
        value = summary[key]
        met = value <= target if key == "torch beside fastreg" else value >= target
        relation = "<=" if key == "torch beside fastreg" else ">="
        lines.append(f"  {key:<22} {value:5.2f}x  (goal {relation} {target}: "
                     f"{'met' if met else 'missed'})")
    return lines


def to_json(result: ProcessResult) -> dict[str, Any]:
    data: dict[str, Any] = {"name": result.name, "rounds": result.rounds, "error": result.error}
    if result.rounds and not result.error:
        data["summary"] = result.summary()
        data["goals"] = MLP_GOALS
    return data
