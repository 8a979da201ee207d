"""A ReLU multilayer perceptron whose layers, noise and updates are fastreg kernels.

Hidden layers are :func:`fastreg.dense_dropout` (GEMM + bias + ReLU + dropout in one call) or,
under DropConnect, :func:`fastreg.dropconnect` per example followed by a NumPy ReLU; the output
layer is ``dense_dropout`` with the identity activation and ``p = 0``. Input noise is
:func:`fastreg.gaussian_noise` / :func:`fastreg.dropout`; the update is :func:`fastreg.prox_sgd_`
(one call for all weights, one for all biases) followed by :func:`fastreg.max_norm_` when asked.
Only the softmax cross-entropy, the ReLU after DropConnect and the bookkeeping are NumPy.

Random streams: every call gets its own ``offset`` (the step number times the number of random
calls per step, plus the call's index), so no two masks of a run share Philox counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import fastreg

from .configs import Config


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels`` and its gradient.

    ``loss = mean_i(logsumexp(logits_i) - logits_i[labels_i])``;
    ``dlogits = (softmax(logits) - onehot(labels)) / B``, both computed in float64 and the
    gradient returned in the logits' dtype.
    """
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    rows = np.arange(len(labels))
    loss = float(np.mean(log_norm - z[rows, labels]))
    grad = np.exp(z - log_norm[:, None])
    grad[rows, labels] -= 1.0
    grad /= len(labels)
    return loss, grad.astype(logits.dtype)


@dataclass
class MLP:
    """Weights ``W[l]`` of shape ``(K, N)`` (Keras layout), biases ``b[l]`` of shape ``(N,)``,
    and the momentum buffers of the optimizer; float32 throughout."""

    W: list[np.ndarray]
    b: list[np.ndarray]
    W_buf: list[np.ndarray] = field(default_factory=list)
    b_buf: list[np.ndarray] = field(default_factory=list)
    mask: list[np.ndarray] | None = None  # DSD keep-masks (True = kept), None when dense

    @classmethod
    def init(cls, sizes: tuple[int, ...], seed: int) -> MLP:
        """He-normal weights (``std = sqrt(2 / fan_in)``), zero biases, from NumPy's PCG64."""
        rng = np.random.default_rng(seed)
        W = [
            (rng.standard_normal((k, n)) * np.sqrt(2.0 / k)).astype(np.float32)
            for k, n in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        b = [np.zeros(n, dtype=np.float32) for n in sizes[1:]]
        return cls(W, b, [np.zeros_like(w) for w in W], [np.zeros_like(v) for v in b])

    def params(self) -> list[np.ndarray]:
        """Weights then biases (the arrays early stopping snapshots and restores in place)."""
        return [*self.W, *self.b]

    def zero_fraction(self) -> float:
        """The fraction of weight-matrix entries (biases excluded) that are exactly zero."""
        zeros = sum(int(np.count_nonzero(w == 0.0)) for w in self.W)
        return zeros / sum(w.size for w in self.W)


def _calls_per_step(n_layers: int) -> int:
    return n_layers + 2  # input noise, input dropout, one per layer


def forward(
    model: MLP,
    x: np.ndarray,
    config: Config,
    *,
    seed: int,
    step: int = 0,
    training: bool = False,
    backend: str | None = None,
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Logits for ``x`` and, per layer, ``(input, output)`` for :func:`backward`.

    ``training=False`` is the deterministic network used for evaluation (no noise, no masks,
    the mean network under DropConnect).
    """
    base = step * _calls_per_step(len(model.W))
    h = x
    if training and config.input_noise > 0.0:
        h = fastreg.gaussian_noise(h, config.input_noise, seed=seed, offset=base, backend=backend)
    if training and config.input_dropout > 0.0:
        h = fastreg.dropout(h, config.input_dropout, seed=seed, offset=base + 1, backend=backend)
    cache = []
    last = len(model.W) - 1
    for layer, (W, b) in enumerate(zip(model.W, model.b, strict=True)):
        offset = base + 2 + layer
        if layer == last:
            y = fastreg.dense_dropout(
                h, W, b, p=0.0, seed=seed, offset=offset, activation="identity", backend=backend
            )
        elif training and config.dropconnect > 0.0:
            z = fastreg.dropconnect(
                h, W, b, p=config.dropconnect, seed=seed, offset=offset, per_example=True,
                backend=backend,
            )  # fmt: skip
            y = np.maximum(z, np.float32(0.0))
        else:
            y = fastreg.dense_dropout(
                h, W, b, p=config.hidden_dropout, seed=seed, offset=offset, activation="relu",
                training=training, backend=backend,
            )  # fmt: skip
        cache.append((h, y))
        h = y
    return h, cache


def backward(
    model: MLP,
    dlogits: np.ndarray,
    cache: list[tuple[np.ndarray, np.ndarray]],
    config: Config,
    *,
    seed: int,
    step: int,
    backend: str | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Gradients ``(dW, db)`` of a training-mode :func:`forward` at the same ``seed``/``step``;
    the masks are regenerated by the backward kernels, never stored."""
    base = step * _calls_per_step(len(model.W))
    last = len(model.W) - 1
    dWs: list[np.ndarray] = [np.empty(0)] * len(model.W)
    dbs: list[np.ndarray] = [np.empty(0)] * len(model.W)
    g = dlogits
    for layer in range(last, -1, -1):
        h, y = cache[layer]
        W = model.W[layer]
        offset = base + 2 + layer
        if layer == last:
            dx, dW, db = fastreg.dense_dropout_backward(
                g, h, W, y, p=0.0, seed=seed, offset=offset, activation="identity", backend=backend
            )
        elif config.dropconnect > 0.0:
            dz = np.where(y > 0.0, g, np.float32(0.0))
            dx, dW, db = fastreg.dropconnect_backward(
                dz, h, W, p=config.dropconnect, seed=seed, offset=offset, per_example=True,
                backend=backend,
            )  # fmt: skip
        else:
            dx, dW, db = fastreg.dense_dropout_backward(
                g, h, W, y, p=config.hidden_dropout, seed=seed, offset=offset, activation="relu",
                backend=backend,
            )  # fmt: skip
        dWs[layer], dbs[layer] = dW, db
        g = dx
    return dWs, dbs


def update(
    model: MLP,
    dWs: list[np.ndarray],
    dbs: list[np.ndarray],
    config: Config,
    *,
    lr: float,
    momentum: float,
    backend: str | None = None,
) -> None:
    """One proximal SGD step: the penalty acts on the weights only (one ``prox_sgd_`` call for
    all of them, with the DSD keep-masks when pruned), the biases get plain momentum SGD; then
    the hidden units' incoming weights are projected onto the max-norm ball."""
    fastreg.prox_sgd_(
        model.W, dWs, lr=lr, l1=config.l1, l2=config.l2, momentum=momentum, buf=model.W_buf,
        mask=model.mask, backend=backend,
    )  # fmt: skip
    fastreg.prox_sgd_(model.b, dbs, lr=lr, momentum=momentum, buf=model.b_buf, backend=backend)
    if config.max_norm is not None:
        fastreg.max_norm_(model.W[:-1], max_norm=config.max_norm, axis=0, backend=backend)


def prune_masks(model: MLP, sparsity: float) -> list[np.ndarray]:
    """DSD's sparse phase: per weight matrix, keep the ``1 - sparsity`` largest magnitudes."""
    masks = []
    for W in model.W:
        k = int(sparsity * W.size)
        if k == 0:
            masks.append(np.ones(W.shape, dtype=bool))
            continue
        cut = np.partition(np.abs(W).ravel(), k - 1)[k - 1]
        masks.append(np.abs(W) > cut)
    return masks


def evaluate(
    model: MLP, x: np.ndarray, labels: np.ndarray, config: Config, backend: str | None = None
) -> tuple[float, float]:
    """``(loss, accuracy)`` of the deterministic network on ``(x, labels)``."""
    logits, _ = forward(model, x, config, seed=0, training=False, backend=backend)
    loss, _ = softmax_cross_entropy(logits, labels)
    return loss, float(np.mean(logits.argmax(axis=1) == labels))
