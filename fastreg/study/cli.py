"""``python -m fastreg demo``: run the regularization study, print the table, write the figures."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` subcommand's options."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 hidden layers of 256 units and 40 epochs (about a minute on 2 cores) instead "
        "of 5 x 500 and 60 epochs",
    )
    parser.add_argument(
        "--out",
        default="fastreg-study",
        metavar="DIR",
        help="folder for results.txt, results.json and the PNG figures (default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this configuration (repeatable); see --list",
    )
    parser.add_argument("--list", action="store_true", help="print the configurations and exit")
    parser.add_argument("--seed", type=int, default=0, help="split, init, order and mask seed")
    parser.add_argument("--backend", default=None, help="fastreg backend (default: the default)")
    parser.add_argument(
        "--threads", type=int, default=1, help="Numba and BLAS threads (default: %(default)s)"
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")


def main(
    args: argparse.Namespace, out: TextIO | None = None, progress: TextIO | None = None
) -> int:
    """Run the study as ``args`` asks; returns the exit code (2: a missing optional package or
    a bad argument). ``out`` (the table) and ``progress`` default to stdout and stderr."""
    out = sys.stdout if out is None else out
    progress = sys.stderr if progress is None else progress
    from . import CONFIGS, config_by_name, run_study
    from .data import INSTALL_HINT
    from .report import PLOT_HINT, hyperparameter_table, results_table, write_outputs

    if args.list:
        print(hyperparameter_table(CONFIGS), file=out)
        return 0
    figures = not args.no_figures
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"note: {PLOT_HINT}; printing the table only", file=progress)
            figures = False
    try:
        configs = [config_by_name(name) for name in args.config] or None
    except ValueError as error:
        print(f"error: {error}", file=progress)
        return 2
    try:
        result = run_study(
            quick=args.quick,
            configs=configs,
            seed=args.seed,
            backend=args.backend,
            threads=args.threads,
            progress=progress,
        )
    except ImportError as error:
        if str(error) != INSTALL_HINT:
            raise
        print(f"error: {error}", file=progress)
        return 2
    print(results_table(result), file=out)
    print("", file=out)
    print(hyperparameter_table([run.config for run in result.runs]), file=out)
    paths = write_outputs(result, args.out, figures=figures)
    print("", file=out)
    print(f"study took {result.wall_s:.1f} s; wrote {', '.join(str(p) for p in paths)}", file=out)
    return 0


def demo(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m fastreg.study.cli``)."""
    parser = argparse.ArgumentParser(prog="python -m fastreg demo", description=__doc__)
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(demo())
