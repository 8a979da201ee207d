"""The study's outputs: a progress bar, the results table, and PNG figures (matplotlib, the
optional ``plot`` extra): learning curves per configuration and first-layer weight histograms."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from .configs import CONFIGS

if TYPE_CHECKING:
    from . import StudyResult

PLOT_HINT = (
    'figures need matplotlib: pip install "fastreg-kernels[plot]" (or: pip install matplotlib)'
)


class Progress:
    """A one-line progress bar on a terminal (redrawn with ``\\r``); on a pipe or file, one
    line per finished run. ``stream=None`` prints nothing."""

    width = 24

    def __init__(self, stream: TextIO | None, runs: int, epochs: int) -> None:
        self.stream = stream
        self.runs = runs
        self.epochs = epochs
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.index = 0
        self.name = ""
        self.started = time.perf_counter()

    def _write(self, text: str, end: str = "\n") -> None:
        if self.stream is not None:
            print(text, end=end, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        self._write(text)

    def start(self, index: int, name: str) -> None:
        self.index, self.name, self.started = index, name, time.perf_counter()
        if self.tty:
            self.epoch(-1)

    def epoch(self, epoch: int) -> None:
        if not self.tty:
            return
        done = (self.index * self.epochs + epoch + 1) / (self.runs * self.epochs)
        filled = round(self.width * done)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.started
        self._write(
            f"\r[{self.index + 1:>2}/{self.runs}] {self.name:<16} [{bar}] "
            f"epoch {epoch + 1:>3}/{self.epochs}  {elapsed:5.1f} s",
            end="",
        )

    def done(self, seconds: float) -> None:
        if self.tty:
            self._write("")
        else:
            self._write(f"[{self.index + 1}/{self.runs}] {self.name}: {seconds:.1f} s")

    def close(self) -> None:
        pass


def _format(rows: Sequence[Sequence[str]], align: str) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [f"{c:{a}{w}}" for c, a, w in zip(row, align, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def hyperparameter_table(configs: Sequence[Any] = CONFIGS) -> str:
    """Every configuration's settings that differ from no regularization, one row each."""
    rows = [("config", "what", "hyper-parameters")]
    for config in configs:
        params = ", ".join(f"{k}={v:g}" for k, v in config.hyperparameters().items()) or "-"
        rows.append((config.name, config.description, params))
    return "\n".join(_format(rows, "<<<"))


def results_table(result: StudyResult) -> str:
    """The measured table: accuracies, gap, exact zeros, epochs, wall time; then the comparison
    with the unregularized run, stated whether or not a regularizer helped."""
    scale = result.scale
    header = (
        f"fastreg regularization study: digits 8x8, split {result.split['train']}/"
        f"{result.split['val']}/{result.split['test']} (train/val/test), MLP 64-"
        f"{'-'.join(str(h) for h in scale.hidden)}-10 ReLU, {scale.epochs} epochs max, "
        f"batch {scale.batch_size}, proximal SGD lr {scale.lr:g} momentum {scale.momentum:g}, "
        f"seed {result.seed}, backend {result.backend}, {result.threads} thread(s)"
    )
    rows = [("config", "train acc", "test acc", "gap", "zero weights", "epochs", "wall time")]
    for run in result.runs:
        epochs = str(run.epochs_run)
        if run.best_epoch is not None:
            epochs += f" (best {run.best_epoch + 1})"
        rows.append(
            (
                run.config.name,
                f"{100 * run.train_acc:.1f}%",
                f"{100 * run.test_acc:.1f}%",
                f"{100 * run.gap:+.1f}",
                f"{100 * run.zero_fraction:.1f}%",
                epochs,
                f"{run.wall_s:.1f} s",
            )
        )
    lines = [*result.notes, header, "", *_format(rows, "<>>>>>>"), ""]
    lines += comparison_lines(result)
    return "\n".join(lines)


def comparison_lines(result: StudyResult) -> list[str]:
    """What each configuration did against ``none``, in words, with the noise level of the
    test set (one binomial standard error), so small differences are not sold as wins."""
    names = [run.config.name for run in result.runs]
    if "none" not in names:
        return []
    base = result.run("none")
    n_test = result.split["test"]
    se = math.sqrt(max(base.test_acc * (1 - base.test_acc), 1e-12) / n_test)
    lines = [
        f"against no regularization (test acc {100 * base.test_acc:.1f}%, gap "
        f"{100 * base.gap:+.1f} points; one standard error of a test accuracy here is "
        f"{100 * se:.1f} points, {n_test} test images):"
    ]
    for run in result.runs:
        if run is base:
            continue
        delta = run.test_acc - base.test_acc
        verdict = "within noise" if abs(delta) < 2 * se else ("better" if delta > 0 else "worse")
        gap = "smaller" if run.gap < base.gap else "not smaller"
        lines.append(
            f"  {run.config.name:<16} test acc {100 * delta:+.1f} points ({verdict}); "
            f"gap {gap} ({100 * run.gap:+.1f})"
        )
    return lines


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(PLOT_HINT) from error
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(result: StudyResult, path: str | Path) -> Path:
    """One panel per configuration: train and validation loss (deterministic network) per
    epoch, the training objective (with noise / masks) dotted, on a shared log-scale y axis;
    early stopping's restored epoch and DSD's phases are marked."""
    plt = _pyplot()
    runs = result.runs
    cols = min(5, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 2.7 * rows), sharex=True, sharey=True, squeeze=False
    )
    for ax, run in zip(axes.flat, runs, strict=False):
        epochs = np.arange(1, run.epochs_run + 1)
        ax.plot(epochs, run.history["train_loss"], color="tab:blue", label="train")
        ax.plot(epochs, run.history["val_loss"], color="tab:orange", label="validation")
        ax.plot(
            epochs, run.history["objective"], color="tab:blue", linestyle=":", linewidth=1,
            label="train objective (noisy)",
        )  # fmt: skip
        if run.best_epoch is not None:
            ax.axvline(run.best_epoch + 1, color="tab:red", linewidth=1, linestyle="--")
            ax.annotate(
                f"restored\nepoch {run.best_epoch + 1}",
                (run.best_epoch + 1, 0.98), xycoords=("data", "axes fraction"),
                ha="right", va="top", fontsize=7, color="tab:red",
            )  # fmt: skip
        for first, phase in run.phases[1:]:
            ax.axvline(first + 0.5, color="grey", linewidth=0.8, linestyle="--")
            ax.annotate(
                phase, (first + 1, 0.98), xycoords=("data", "axes fraction"),
                ha="left", va="top", fontsize=7, color="grey",
            )  # fmt: skip
        ax.set_title(f"{run.config.name}: test {100 * run.test_acc:.1f}%", fontsize=9)
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes.flat[len(runs) :]:
        ax.set_visible(False)
    for column in range(cols):
        visible = [ax for ax in axes[:, column] if ax.get_visible()]
        visible[-1].set_xlabel("epoch")
        visible[-1].tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("cross-entropy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(
        "Learning curves: cross-entropy of the deterministic network (no noise or masks) "
        "per epoch", fontsize=11,
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()))
    fig.legend(
        handles, labels, loc="upper center", ncol=3, frameon=False, fontsize=9,
        bbox_to_anchor=(0.5, 1 - 0.28 / fig.get_figheight()),
    )  # fmt: skip
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_weight_histograms(
    result: StudyResult, path: str | Path, names: Sequence[str] = ("none", "l2", "l1")
) -> Path:
    """First-layer weights of ``names`` (those that ran) as histograms on a log count axis,
    with the exact zeros counted separately: L1's proximal step puts them exactly at 0."""
    plt = _pyplot()
    runs = [run for run in result.runs if run.config.name in names and run.model is not None]
    if not runs:
        raise ValueError(f"none of the configurations {list(names)} ran in this study")
    weights = [run.model.W[0].ravel() for run in runs]
    limit = max(float(np.abs(w).max()) for w in weights) or 1.0
    bins = np.linspace(-limit, limit, 81)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    colors = {"none": "tab:grey", "l2": "tab:blue", "l1": "tab:green"}
    for ax, run, w in zip(axes, runs, weights, strict=True):
        zeros = int(np.count_nonzero(w == 0.0))
        ax.hist(w[w != 0.0], bins=bins, color=colors.get(run.config.name, "tab:purple"))
        if zeros:
            ax.bar(0.0, zeros, width=bins[1] - bins[0], color="black", label="exactly 0")
            ax.legend(fontsize=8, loc="upper right")
        ax.set_yscale("log")
        ax.set_title(
            f"{run.config.description}\n{100 * zeros / w.size:.1f}% exactly zero, "
            f"std {w.std():.3f}",
            fontsize=9,
        )
        ax.set_xlabel("first-layer weight")
    axes[0].set_ylabel("count (log)")
    shape = runs[0].model.W[0].shape
    fig.suptitle(f"First-layer weights after training ({shape[0]} x {shape[1]})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_augmented_digits(result: StudyResult, path: str | Path, count: int = 8) -> Path:
    """The first ``count`` training digits, then, for each augmentation of the study (configs
    with the same transform shown once), their augmented versions at epochs 1-3: what the
    network was trained on."""
    from .augmentation import SIDE, augments, example_grid
    from .data import load_split

    plt = _pyplot()
    shown: dict[tuple[Any, ...], Any] = {}
    for run in result.runs:
        c = run.config
        key = (c.augment_shift, c.augment_rotation, c.augment_zoom, c.augment_fraction)
        if augments(c) and key not in shown:
            shown[key] = c
    if not shown:
        raise ValueError("no configuration of this study augments its inputs")
    data = load_split(result.scale.n_train, result.scale.n_val, result.seed)
    x = data.x_train[:count]
    epochs = 3
    grids = [(c, example_grid(x, c, seed=result.seed, epochs=epochs)) for c in shown.values()]
    rows = 1 + epochs * len(grids)
    fig, axes = plt.subplots(rows, count, figsize=(0.9 * count + 1.6, 0.9 * rows + 0.6),
                             squeeze=False)
    labels = ["original"] + [f"{c.name}, epoch {e + 1}" for c, _ in grids for e in range(epochs)]
    images = [grids[0][1][0]] + [g[1 + e] for _, g in grids for e in range(epochs)]
    for r, (label, row) in enumerate(zip(labels, images, strict=True)):
        for k in range(count):
            ax = axes[r, k]
            ax.imshow(row[k].reshape(SIDE, SIDE), cmap="gray_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Training digits and their augmented versions (fastreg.random_translate / "
                 "random_affine)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(result: StudyResult, out_dir: str | Path, figures: bool = True) -> list[Path]:
    """``results.txt``, ``results.json`` and (with matplotlib) ``learning_curves.png``,
    ``weight_histograms.png`` and ``augmented_digits.png`` in ``out_dir`` (created if missing).
    Returns the paths written."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = out / "results.txt"
    text.write_text(
        results_table(result) + "\n\n" + hyperparameter_table([r.config for r in result.runs])
        + "\n", encoding="utf-8",
    )  # fmt: skip
    data = out / "results.json"
    data.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    paths = [text, data]
    if figures:
        paths.append(plot_learning_curves(result, out / "learning_curves.png"))
        if any(run.config.name in ("none", "l2", "l1") for run in result.runs):
            paths.append(plot_weight_histograms(result, out / "weight_histograms.png"))
        from .augmentation import augments

        if any(augments(run.config) for run in result.runs):
            paths.append(plot_augmented_digits(result, out / "augmented_digits.png"))
    return paths
