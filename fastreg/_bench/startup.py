"""Start-up cost in fresh processes (issue 2): ``import fastreg`` and the first ``dropout`` call.

Goals, with a warm Numba cache: ``import fastreg`` under 0.3 s, the first ``dropout`` call under
1 s. One process first warms the cache (it may compile); then ``runs`` fresh interpreters each
time the import and the first call with ``time.perf_counter`` from inside, and report medians.
The interpreter's own start-up is reported separately (it is not fastreg's to reduce).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

IMPORT_GOAL_S = 0.3
FIRST_CALL_GOAL_S = 1.0

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import fastreg
t2 = time.perf_counter()
x = np.ones(1 << 20, dtype=np.float32)
t3 = time.perf_counter()
import numba  # the first call imports it anyway; timed apart to split the first call's cost
t3n = time.perf_counter()
fastreg.dropout(x, 0.5, seed=0)
t4 = time.perf_counter()
fastreg.dropout(x, 0.5, seed=1)
t5 = time.perf_counter()
print(json.dumps({
    "numpy_import_s": t1 - t0,
    "import_s": t2 - t0,
    "first_call_s": t4 - t3,
    "numba_import_s": t3n - t3,
    "second_call_s": t5 - t4,
    "backend": fastreg.get_backend(),
}))
"""

_IMPORT_ONLY = "import sys, fastreg; print('numba' in sys.modules, 'cupy' in sys.modules)"


def _probe() -> dict[str, Any]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    )
    sample = json.loads(done.stdout.strip().splitlines()[-1])
    sample["process_s"] = time.perf_counter() - start
    return sample


def measure(runs: int = 5) -> dict[str, Any]:
    """Median start-up figures over ``runs`` fresh processes after one cache-warming process."""
    warm = _probe()  # compiles into the on-disk cache if it was cold
    samples = [_probe() for _ in range(runs)]
    imports = subprocess.run(
        [sys.executable, "-c", _IMPORT_ONLY], capture_output=True, text=True, check=True
    ).stdout.split()
    keys = (
        "numpy_import_s",
        "import_s",
        "first_call_s",
        "numba_import_s",
        "second_call_s",
        "process_s",
    )
    return {
        "runs": runs,
        "warming_first_call_s": warm["first_call_s"],
        "backend": samples[0]["backend"],
        "median": {key: statistics.median(s[key] for s in samples) for key in keys},
        "max": {key: max(s[key] for s in samples) for key in keys},
        "import_loads_numba": imports[0] == "True",
        "import_loads_cupy": imports[1] == "True",
    }


def report(figures: dict[str, Any]) -> str:
    median, worst = figures["median"], figures["max"]

    def verdict(value: float, goal: float) -> str:
        return f"goal < {goal:g} s: {'met' if value < goal else 'missed'}"

    return "\n".join(
        [
            f"fastreg start-up, {figures['runs']} fresh processes with a warm Numba cache "
            f"(backend {figures['backend']}); medians (max)",
            f"  import fastreg (numpy included)  {median['import_s']:.3f} s "
            f"({worst['import_s']:.3f})   {verdict(median['import_s'], IMPORT_GOAL_S)}",
            f"    of which import numpy          {median['numpy_import_s']:.3f} s",
            f"  first dropout call (1M f32)      {median['first_call_s']:.3f} s "
            f"({worst['first_call_s']:.3f})   {verdict(median['first_call_s'], FIRST_CALL_GOAL_S)}",
            f"    of which import numba          {median['numba_import_s']:.3f} s",
            f"  second dropout call              {median['second_call_s']:.4f} s",
            f"  whole process (python startup)   {median['process_s']:.3f} s",
            f"  cache-warming process, 1st call  {figures['warming_first_call_s']:.3f} s",
            f"  import fastreg loads numba: {figures['import_loads_numba']}, "
            f"cupy: {figures['import_loads_cupy']}",
        ]
    )


def main(runs: int = 5) -> int:
    figures = measure(runs)
    print(report(figures))
    return 0
