"""``python -m fastreg bench|demo|info``: the benchmark table, the regularization study and the
environment report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _numba_cache_location() -> str:
    """Where Numba keeps fastreg's compiled kernels (``cache=True``)."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return f"{configured} (NUMBA_CACHE_DIR)"
    from . import _kernels

    kernels = Path(_kernels.__file__).parent
    where = f"{kernels}/<family>/__pycache__ (beside each kernel module)"
    if not os.access(kernels, os.W_OK):
        # Numba falls back to a per-user cache when the package folder is read-only.
        try:
            from numba.misc.appdirs import user_cache_dir

            where += f"; read-only here, so Numba uses {user_cache_dir('numba')}"
        except ImportError:
            where += "; read-only here, so Numba uses its per-user cache"
    return where


def info_lines() -> list[str]:
    """The ``info`` report: versions, backends, threads, cache."""
    import fastreg

    from ._bench.runner import package_versions

    versions = package_versions()
    names = {"numpy": "NumPy", "numba": "Numba", "torch": "PyTorch", "cupy": "CuPy"}
    lines = [
        f"fastreg          {versions['fastreg']}",
        f"RNG_SPEC_VERSION {versions['rng_spec_version']}",
        f"Python           {versions['python']} ({sys.executable})",
    ]
    for key, label in names.items():
        lines.append(f"{label:<16} {versions[key] or 'not installed'}")
    lines.append(f"backends         {', '.join(fastreg.available_backends())}")
    lines.append(f"default backend  {fastreg.get_backend()}")
    runtime = fastreg._runtime.describe()
    lines.append(f"CPU runtime      {runtime['runtime']}")
    lines.append(f"threads          {runtime['threads']}")
    found = [f"{k}={v}" for k, v in runtime["environment"].items() if v is not None]
    lines.append(f"environment      {' '.join(found) or 'nothing set'}")
    if versions["numba"] is not None:
        lines.append(f"Numba cache      {_numba_cache_location()}")
    lines.append(f"CPUs             {os.cpu_count()}")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastreg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="time every benchmark case side by side with its peers and the machine's limit",
        description="Time fastreg against its peers (NumPy, PyTorch) and the machine's limit "
        "(a copy of the same bytes, the bare GEMM), interleaved in one run; print medians, "
        "throughput, %% of the limit, speed-ups and the issue goals.",
    )
    bench.add_argument("--quick", action="store_true", help="quick cases only, fewer repeats")
    bench.add_argument("--backend", default=None, help="backend to time (default: the default)")
    bench.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="SUBSTRING",
        help="only cases whose name or family contains SUBSTRING (repeatable)",
    )
    bench.add_argument(
        "--repeats", type=int, default=None, metavar="N", help="timing rounds per case (fixed)"
    )
    bench.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="timing seconds per case that set the round count (default 2; --quick caps the "
        "whole run's timing at 35 s)",
    )
    bench.add_argument("--json", default=None, metavar="PATH", help="write results as JSON")
    bench.add_argument("--list", action="store_true", help="list the selected cases and exit")
    bench.add_argument(
        "--startup",
        action="store_true",
        help="measure `import fastreg` and the first dropout call in fresh processes instead",
    )
    bench.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="also draw the results (speed-up vs peers, %% of the machine limit) to PNG "
        "(needs matplotlib)",
    )
    commands.add_parser("info", help="versions, backends, threads and the Numba cache location")
    from .study.cli import add_arguments as add_demo_arguments

    add_demo_arguments(
        commands.add_parser(
            "demo",
            help="the regularization study: an MLP on the 8x8 digits under each regularizer",
            description="Train one over-parameterized MLP on scikit-learn's 8x8 digits under "
            "no regularization, L2, L1, elastic net, dropout, DropConnect, input noise, "
            "max-norm + dropout, dense-sparse-dense and early stopping; print the table and "
            "write learning-curve and weight-histogram PNGs.",
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "info":
        print("\n".join(info_lines()))
        return 0
    if args.command == "demo":
        from .study.cli import main as demo_main

        return demo_main(args)
    if args.startup:
        from ._bench.startup import main as startup_main

        return startup_main()
    if args.list:
        from ._bench.cases import all_cases
        from ._bench.runner import select_cases

        for case in select_cases(all_cases(), quick=args.quick, filters=args.filter):
            print(f"{case.family:<12} {case.name}{'' if case.quick else '  (not quick)'}")
        return 0
    from ._bench.runner import main as bench_main

    if args.plot is None:
        return bench_main(
            backend=args.backend,
            quick=args.quick,
            filters=args.filter,
            repeats=args.repeats,
            budget=args.budget,
            json_path=args.json,
        )
    from ._bench.plot import bench_with_plot

    return bench_with_plot(bench_main, args)


if __name__ == "__main__":
    sys.exit(main())
