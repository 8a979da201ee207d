"""``python -m fastreg bench|demo|info``: the benchmark table, the regularization study and the
environment report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

_DESCRIPTION = (
    "fastreg's command line: bench times fastreg against its peers, demo runs the "
    "regularization study, info prints versions, backends, threads and the kernel cache."
)


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
    parser = argparse.ArgumentParser(prog="python -m fastreg", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench",
        help="time every benchmark case side by side with its peers and the machine's limit",
        description="Time fastreg against its peers (NumPy, PyTorch, Kornia) and the machine's "
        "limit (a copy of the same bytes, the bare GEMM), interleaved in one run; print for each "
        "case the median and the spread of the rounds, the throughput, the percentage of the "
        "limit reached, the speed-up over each peer and the speed goals the project sets "
        "itself. The table fits 80 columns; --wide prints every figure.",
    )
    bench.add_argument("--quick", action="store_true", help="quick cases only, fewer repeats")
    bench.add_argument(
        "--backend",
        default=None,
        help="backend to time: numba or numpy (the host cases) or cupy (the device cases); "
        "default: fastreg's default backend",
    )
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
    bench.add_argument(
        "--wide",
        action="store_true",
        help="one line per contender with every figure (min, quartiles, max, rounds), "
        "wider than 80 columns",
    )
    bench.add_argument("--list", action="store_true", help="list the selected cases and exit")
    bench.add_argument(
        "--startup",
        action="store_true",
        help="measure 'import fastreg' and the first dropout call in fresh processes instead",
    )
    bench.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="also draw the results (speed-up over the peers, percentage of the machine limit) "
        "to PNG (needs matplotlib)",
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

        return _backend_refused(args.backend, "the study trains on NumPy arrays") or demo_main(args)
    if args.startup:
        from ._bench.startup import main as startup_main

        return startup_main()
    if args.list:
        from ._bench.cases import all_cases
        from ._bench.runner import select_cases

        for case in select_cases(all_cases(), quick=args.quick, filters=args.filter):
            print(f"{case.family:<12} {case.name}{'' if case.quick else '  (not quick)'}")
        return 0
    if args.plot is not None:
        from ._bench.plot import PLOT_HINT

        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"error: {PLOT_HINT}", file=sys.stderr)
            return 2
    from ._bench.runner import main as bench_main

    return bench_main(
        backend=args.backend,
        quick=args.quick,
        filters=args.filter,
        repeats=args.repeats,
        budget=args.budget,
        json_path=args.json,
        plot_path=args.plot,
        wide=args.wide,
    )


def _backend_refused(backend: str | None, why_host: str) -> int:
    """2 (with the reason on stderr) when ``backend`` cannot run a host-array command, else 0."""
    if backend is None:
        return 0
    from ._backends import host_backend_problem

    problem = host_backend_problem(backend, why_host)
    if problem is None:
        return 0
    print(f"error: {problem}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
