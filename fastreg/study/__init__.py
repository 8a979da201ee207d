"""The regularization study: one over-parameterized MLP on scikit-learn's 8x8 digits, trained
under each regularizer of :data:`CONFIGS` with fastreg's kernels, compared side by side.

``python -m fastreg demo [--quick]`` runs it from the command line; :func:`run_study` is the API.
Needs scikit-learn (the data) and, for the figures, matplotlib:
``pip install "fastreg-kernels[demo]"``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .configs import CONFIGS as CONFIGS
from .configs import FULL as FULL
from .configs import QUICK as QUICK
from .configs import Config as Config
from .configs import Scale as Scale
from .configs import config_by_name as config_by_name
from .data import Split as Split
from .data import load_split as load_split
from .early_stopping import EarlyStopping as EarlyStopping
from .train import RunResult as RunResult
from .train import train as train


@dataclass
class StudyResult:
    """Every run of a study, in :data:`CONFIGS` order, and how the study was set up."""

    scale: Scale
    seed: int
    backend: str
    threads: int
    split: dict[str, int]
    runs: list[RunResult]
    wall_s: float
    notes: list[str] = field(default_factory=list)

    def run(self, name: str) -> RunResult:
        """The run of the configuration called ``name`` (KeyError if it was not run)."""
        for run in self.runs:
            if run.config.name == name:
                return run
        raise KeyError(f"no run named {name!r}; ran {[r.config.name for r in self.runs]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the setup, every hyper-parameter and every measurement."""
        from dataclasses import asdict

        return {
            "scale": asdict(self.scale),
            "seed": self.seed,
            "backend": self.backend,
            "threads": self.threads,
            "split": self.split,
            "wall_s": self.wall_s,
            "notes": self.notes,
            "runs": [run.summary() for run in self.runs],
        }


@contextlib.contextmanager
def _thread_limit(threads: int) -> Iterator[None]:
    """fastreg's and the BLAS's thread counts, restored afterwards."""
    from .. import _runtime

    with _runtime.num_threads(threads):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # comes with scikit-learn; without it the BLAS keeps its default
            yield
        else:
            with threadpool_limits(threads):
                yield


def _warm_up(configs: Sequence[Config], backend: str | None) -> None:
    """Compile (or load from Numba's cache) every kernel the configurations use, on a tiny
    network, so the first configuration's wall time is not the compiler's."""
    import numpy as np

    tiny = Scale(name="warm-up", hidden=(4,), epochs=1, batch_size=8, n_train=10, n_val=10)
    rng = np.random.default_rng(0)
    x = rng.random((10, 64), dtype=np.float32)
    y = np.arange(10) % 10
    data = Split(x, y, x, y, x, y)
    for config in configs:
        train(config, tiny, data, backend=backend)


def run_study(
    *,
    quick: bool = False,
    scale: Scale | None = None,
    configs: Sequence[str | Config] | None = None,
    seed: int = 0,
    backend: str | None = None,
    threads: int = 1,
    progress: TextIO | None = None,
) -> StudyResult:
    """Train the study's MLP under each configuration and measure it.

    Every configuration starts from the same initial weights, sees the same minibatches in the
    same order and is evaluated on the same fixed train / validation / test split (all from
    ``seed``). The test set is touched once per run, after training.

    Parameters
    ----------
    quick : bool, use :data:`QUICK` (3 x 256 hidden units, 40 epochs) instead of :data:`FULL`
        (5 x 500, 60 epochs)
    scale : Scale, optional; overrides ``quick`` (e.g. an even smaller network for tests)
    configs : names or :class:`Config` rows to run, in order; default all of :data:`CONFIGS`
    seed : int >= 0, the seed of the split, the initial weights, the minibatch order and the
        fastreg random streams
    backend : fastreg backend ("numpy", "numba"); default per docs/backends.md
    threads : int >= 1, Numba and BLAS threads while training. The default 1: the study's
        32-example batches are too small to split, and on a loaded 2-core machine the hand-offs
        between the BLAS and Numba thread pools cost far more than they save (measured: a
        500x500 fused dense step 0.33 ms on 1 thread, 37 ms on 2 under load)
    progress : text stream for the progress bar (e.g. ``sys.stderr``), None for silence

    Returns
    -------
    StudyResult, with one :class:`RunResult` per configuration (the trained model included)

    Raises
    ------
    ImportError: scikit-learn is missing (the message says how to install it)
    ValueError: an unknown configuration name, threads < 1

    Example
    -------
    >>> from fastreg.study import Scale, run_study
    >>> tiny = Scale("tiny", hidden=(32,), epochs=2, n_train=100, n_val=100)
    >>> result = run_study(scale=tiny, configs=["none", "l1"])
    >>> [(run.config.name, run.epochs_run) for run in result.runs]
    [('none', 2), ('l1', 2)]
    >>> 0.0 <= result.run("l1").test_acc <= 1.0
    True
    """
    from .report import Progress

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    import fastreg

    chosen = [config_by_name(c) if isinstance(c, str) else c for c in (configs or CONFIGS)]
    scale = scale or (QUICK if quick else FULL)
    start = time.perf_counter()
    data = load_split(scale.n_train, scale.n_val, seed)
    resolved = backend or fastreg.get_backend()
    bar = Progress(progress, len(chosen), scale.epochs)
    runs = []
    with _thread_limit(threads):
        bar.message("compiling / loading kernels ...")
        _warm_up(chosen, backend)
        for index, config in enumerate(chosen):
            bar.start(index, config.name)
            runs.append(train(config, scale, data, seed=seed, backend=backend, on_epoch=bar.epoch))
            bar.done(runs[-1].wall_s)
    bar.close()
    notes = []
    if scale.name == "quick":
        notes.append(
            f"--quick: {len(scale.hidden)} hidden layers of {scale.hidden[0]} units and "
            f"{scale.epochs} epochs (the full study: {len(FULL.hidden)} x {FULL.hidden[0]}, "
            f"{FULL.epochs} epochs)"
        )
    return StudyResult(
        scale=scale,
        seed=seed,
        backend=resolved,
        threads=threads,
        split=data.sizes(),
        runs=runs,
        wall_s=time.perf_counter() - start,
        notes=notes,
    )
