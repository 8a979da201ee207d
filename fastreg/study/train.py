"""The training loop of one study configuration, and the record of what it measured."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .augmentation import augment_inputs, augments
from .configs import Config, Scale
from .data import Split
from .early_stopping import EarlyStopping
from .model import MLP, backward, evaluate, forward, prune_masks, softmax_cross_entropy, update


class Callback(Protocol):
    """What :func:`train` calls; :class:`EarlyStopping` is one."""

    def on_train_begin(self) -> None: ...

    def on_epoch_end(
        self, epoch: int, logs: dict[str, float], params: Sequence[np.ndarray]
    ) -> bool: ...

    def on_train_end(self, params: Sequence[np.ndarray]) -> None: ...


@dataclass
class RunResult:
    """What one configuration measured. Accuracies are fractions in [0, 1]; ``gap`` is
    ``train_acc - test_acc``; losses are mean cross-entropies of the deterministic network
    (no noise or masks); ``history`` holds one value per epoch run."""

    config: Config
    train_acc: float
    val_acc: float
    test_acc: float
    train_loss: float
    val_loss: float
    test_loss: float
    zero_fraction: float
    epochs_run: int
    best_epoch: int | None  # early stopping: the restored epoch (0-based)
    restored: bool
    wall_s: float
    history: dict[str, list[float]]
    phases: list[tuple[int, str]] = field(default_factory=list)  # (first epoch, name) for DSD
    model: MLP | None = None

    @property
    def gap(self) -> float:
        return self.train_acc - self.test_acc

    def summary(self) -> dict[str, Any]:
        """The table row as plain values (JSON-ready)."""
        return {
            "config": self.config.name,
            "description": self.config.description,
            "hyperparameters": self.config.hyperparameters(),
            "train_acc": self.train_acc,
            "val_acc": self.val_acc,
            "test_acc": self.test_acc,
            "gap": self.gap,
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "test_loss": self.test_loss,
            "zero_fraction": self.zero_fraction,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "wall_s": self.wall_s,
            "history": self.history,
            "phases": self.phases,
        }


def _dsd_phase(epoch: int, epochs: int) -> str:
    """Dense-sparse-dense: thirds of the epoch budget (Han et al. 2017)."""
    if epoch < epochs // 3:
        return "dense"
    if epoch < 2 * epochs // 3:
        return "sparse"
    return "re-dense"


def train(
    config: Config,
    scale: Scale,
    data: Split,
    *,
    seed: int = 0,
    backend: str | None = None,
    callbacks: Sequence[Callback] = (),
    on_epoch: Callable[[int], None] | None = None,
) -> RunResult:
    """Train the :class:`Scale`'s MLP on ``data`` under ``config``; evaluate on the test set.

    Every configuration starts from the same weights and sees the same minibatch order (both
    from ``seed``). ``config.patience`` adds an :class:`EarlyStopping` on ``val_loss`` to
    ``callbacks``. DSD prunes at the start of the middle third and lifts the mask for the last
    third, whose learning rate is ten times smaller (as in the DSD paper).
    ``on_epoch(epoch)`` is called after each epoch (the progress bar).
    """
    start = time.perf_counter()
    sizes = (data.x_train.shape[1], *scale.hidden, 10)
    model = MLP.init(sizes, seed)
    callbacks = list(callbacks)
    stopper = None
    if config.patience is not None:
        stopper = EarlyStopping("val_loss", patience=config.patience, restore_best=True)
        callbacks.append(stopper)
    for callback in callbacks:
        callback.on_train_begin()
    order_rng = np.random.default_rng(seed)
    n = len(data.y_train)
    history: dict[str, list[float]] = {
        k: [] for k in ("objective", "train_loss", "train_acc", "val_loss", "val_acc")
    }
    phases: list[tuple[int, str]] = []
    step = 0
    epochs_run = 0
    for epoch in range(scale.epochs):
        lr = scale.lr if config.lr is None else config.lr
        if config.dsd_sparsity > 0.0:
            phase = _dsd_phase(epoch, scale.epochs)
            if not phases or phases[-1][1] != phase:
                phases.append((epoch, phase))
                if phase == "sparse":
                    model.mask = prune_masks(model, config.dsd_sparsity)
                    for W, keep in zip(model.W, model.mask, strict=True):
                        W[~keep] = 0.0
                elif phase == "re-dense" and model.mask is not None:
                    # Regrown weights start from zero with no stale momentum.
                    for buf, keep in zip(model.W_buf, model.mask, strict=True):
                        buf[~keep] = 0.0
                    model.mask = None
            if phase == "re-dense":
                lr *= 0.1
        objective = 0.0
        perm = order_rng.permutation(n)
        for first in range(0, n, scale.batch_size):
            idx = perm[first : first + scale.batch_size]
            x, y = data.x_train[idx], data.y_train[idx]
            if augments(config):
                x = augment_inputs(x, idx, config, seed=seed, epoch=epoch, backend=backend)
            logits, cache = forward(
                model, x, config, seed=seed, step=step, training=True, backend=backend
            )
            loss, dlogits = softmax_cross_entropy(logits, y)
            objective += loss * len(idx)
            dWs, dbs = backward(
                model, dlogits, cache, config, seed=seed, step=step, backend=backend
            )
            update(model, dWs, dbs, config, lr=lr, momentum=scale.momentum, backend=backend)
            step += 1
        train_loss, train_acc = evaluate(model, data.x_train, data.y_train, config, backend)
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val, config, backend)
        logs = {
            "objective": objective / n,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
        }
        for key, value in logs.items():
            history[key].append(value)
        epochs_run = epoch + 1
        if on_epoch is not None:
            on_epoch(epoch)
        stop = False
        for callback in callbacks:
            stop = callback.on_epoch_end(epoch, logs, model.params()) or stop
        if stop:
            break
    for callback in callbacks:
        callback.on_train_end(model.params())
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train, config, backend)
    val_loss, val_acc = evaluate(model, data.x_val, data.y_val, config, backend)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test, config, backend)
    return RunResult(
        config=config,
        train_acc=train_acc,
        val_acc=val_acc,
        test_acc=test_acc,
        train_loss=train_loss,
        val_loss=val_loss,
        test_loss=test_loss,
        zero_fraction=model.zero_fraction(),
        epochs_run=epochs_run,
        best_epoch=None if stopper is None else stopper.best_epoch,
        restored=stopper is not None and stopper.restored,
        wall_s=time.perf_counter() - start,
        history=history,
        phases=phases,
        model=model,
    )
