"""Early stopping with patience and restore-best, as a training-loop callback.

The training loop calls ``on_train_begin()``, then ``on_epoch_end(epoch, logs, params)`` after
each epoch (it returns True when training should stop), and ``on_train_end(params)`` last, which
copies the best epoch's parameters back into ``params`` in place when ``restore_best``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


class EarlyStopping:
    """Stop when ``logs[monitor]`` has not improved for ``patience`` epochs; restore the best.

    An epoch improves on the best value ``best`` when ``value < best - min_delta``
    (``mode="min"``) or ``value > best + min_delta`` (``mode="max"``). After ``patience``
    consecutive epochs without improvement, :meth:`on_epoch_end` returns True. The parameters
    of the best epoch are snapshotted (copied) when it happens; :meth:`on_train_end` writes them
    back in place, so after training the model is the best epoch's model whether or not the
    loop stopped early (Keras ``EarlyStopping(restore_best_weights=True)`` restores only when
    it stopped; here the contract is simpler: the returned model is always the best one seen).

    Parameters
    ----------
    monitor : str, the key of ``logs`` to watch (default ``"val_loss"``)
    patience : int >= 0, epochs without improvement before stopping
    min_delta : float >= 0, the smallest change that counts as an improvement
    mode : ``"min"`` or ``"max"``
    restore_best : bool, restore the best epoch's parameters at the end of training

    Attributes
    ----------
    best : float, the best monitored value so far (``inf`` / ``-inf`` before the first epoch)
    best_epoch : int, the epoch (as passed to ``on_epoch_end``) that reached ``best``; -1 before
    stopped_epoch : int or None, the epoch after which training stopped, None if it did not stop
    restored : bool, whether ``on_train_end`` restored the best parameters

    Raises
    ------
    ValueError: negative patience or min_delta, an unknown mode.

    Example
    -------
    >>> import numpy as np
    >>> w = [np.zeros(2)]
    >>> stopper = EarlyStopping(patience=2)
    >>> stopper.on_train_begin()
    >>> stops = []
    >>> for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.7, 1.0]):
    ...     w[0][:] = epoch
    ...     stops.append(stopper.on_epoch_end(epoch, {"val_loss": loss}, w))
    ...     if stops[-1]:
    ...         break
    >>> stops, stopper.best_epoch, stopper.stopped_epoch
    ([False, False, False, True], 1, 3)
    >>> stopper.on_train_end(w)
    >>> w[0].tolist(), stopper.restored
    ([1.0, 1.0], True)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 10,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best: bool = True,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        if not min_delta >= 0.0:
            raise ValueError(f"min_delta must be a float >= 0, got {min_delta!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.mode = mode
        self.restore_best = bool(restore_best)
        self.on_train_begin()

    def on_train_begin(self) -> None:
        """Forget any previous run."""
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.stopped_epoch: int | None = None
        self.restored = False
        self.wait = 0
        self._snapshot: list[np.ndarray] | None = None

    def _improves(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(
        self, epoch: int, logs: Mapping[str, float], params: Sequence[np.ndarray] = ()
    ) -> bool:
        """Record epoch ``epoch``; snapshot ``params`` if it is the best so far.

        Returns True when ``patience`` epochs have passed without improvement (stop now).
        A NaN value never improves (a diverged run stops after ``patience`` epochs).
        """
        if self.monitor not in logs:
            raise ValueError(f"logs must contain {self.monitor!r}, got keys {sorted(logs)}")
        value = float(logs[self.monitor])
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._snapshot = [np.array(p, copy=True) for p in params]
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, params: Sequence[np.ndarray] = ()) -> None:
        """Copy the best epoch's parameters back into ``params`` (in place) if ``restore_best``."""
        if not self.restore_best or self._snapshot is None:
            return
        if len(params) != len(self._snapshot):
            raise ValueError(
                f"params must be the {len(self._snapshot)} arrays given to on_epoch_end, "
                f"got {len(params)}"
            )
        for target, saved in zip(params, self._snapshot, strict=True):
            target[...] = saved
        self.restored = True
