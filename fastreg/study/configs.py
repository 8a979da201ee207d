"""Every configuration of the regularization study and its hyper-parameters, in one table.

All configurations share the network, data split, optimizer (proximal SGD with momentum 0.9 on
fastreg's ``prox_sgd_``), batch size, learning rate and epoch budget of the chosen :class:`Scale`;
each row changes only what its name says. Penalty weights follow the Keras convention of
docs/contract/ops.md: ``R(w) = l1 * sum|w| + l2 * sum w**2``, applied to the weight matrices,
never the biases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Scale:
    """The size of a study run: network shape, epochs, data split sizes and batch size."""

    name: str
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int = 32
    n_train: int = 500
    n_val: int = 300
    lr: float = 0.05
    momentum: float = 0.9


#: The classic over-parameterized network (5 x 500 ReLU units, ~1.05M weights for 500 images).
FULL = Scale(name="full", hidden=(500, 500, 500, 500, 500), epochs=60)
#: ``--quick``: fewer, smaller layers and fewer epochs, so the whole study takes about a minute
#: on 2 cores; still ~10x more weights than training images.
QUICK = Scale(name="quick", hidden=(256, 256, 256), epochs=40)
SCALES = {"full": FULL, "quick": QUICK}


@dataclass(frozen=True)
class Config:
    """One training configuration (a row of :data:`CONFIGS`).

    ``dropconnect`` is the per-example drop probability of the hidden layers' weights (Wan et
    al. 2013; the mean network is used for evaluation). ``input_noise`` is the standard deviation
    of the Gaussian noise added to the (0..1-scaled) pixels. ``max_norm`` bounds each hidden
    unit's incoming weight vector after every step (``max_norm_(W, axis=0)``). ``dsd_sparsity``
    is the fraction of each weight matrix pruned (smallest magnitudes) during the middle third
    of training (dense-sparse-dense, Han et al. 2017; the sparse phase uses ``prox_sgd_``'s
    keep-mask). ``patience`` turns on early stopping on the validation loss with restore-best.
    ``lr`` overrides the scale's learning rate (max-norm is meant to allow larger steps).
    ``augment_shift`` (pixels, an int), ``augment_rotation`` (degrees), ``augment_zoom`` and
    ``augment_fraction`` (a shift as a fraction of the 8-pixel side) augment every training
    minibatch with fastreg's ``random_translate`` / ``random_affine`` (study/augmentation.py).
    """

    name: str
    description: str
    l1: float = 0.0
    l2: float = 0.0
    input_dropout: float = 0.0
    hidden_dropout: float = 0.0
    dropconnect: float = 0.0
    input_noise: float = 0.0
    max_norm: float | None = None
    dsd_sparsity: float = 0.0
    patience: int | None = None
    lr: float | None = None  # None: the scale's learning rate
    augment_shift: int = 0
    augment_rotation: float = 0.0
    augment_zoom: float = 0.0
    augment_fraction: float = 0.0

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that differ from the unregularized baseline."""
        baseline = Config(name="", description="")
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("name", "description")
            and getattr(self, f.name) != getattr(baseline, f.name)
        }


CONFIGS: tuple[Config, ...] = (
    Config("none", "no regularization"),
    Config("l2", "L2 (proximal weight decay)", l2=5e-3),
    Config("l1", "L1 (proximal soft-threshold)", l1=5e-4),
    Config("elastic_net", "elastic net (L1 + L2, proximal)", l1=2.5e-4, l2=2.5e-3),
    Config("dropout", "dropout 0.1 input / 0.3 hidden", input_dropout=0.1, hidden_dropout=0.3),
    # lr 0.02: at the shared 0.05 the full 5 x 500 network trained to 88% and then collapsed to
    # chance at epoch 33 (every ReLU dead); at 0.02 it reached 97.8% train / 96.2% test.
    Config(
        "dropconnect",
        "DropConnect 0.5 on every hidden layer, per example, lr 0.02",
        dropconnect=0.5,
        lr=0.02,
    ),
    Config("input_noise", "Gaussian noise on the input, std 0.3", input_noise=0.3),
    Config(
        "maxnorm_dropout",
        "max-norm 1.5 + dropout 0.1 / 0.3",
        input_dropout=0.1,
        hidden_dropout=0.3,
        max_norm=1.5,
    ),
    Config("dsd", "dense-sparse-dense, 50% pruned in the middle third", dsd_sparsity=0.5),
    Config("early_stopping", "early stopping on val loss, patience 8", patience=8),
    # Keras ImageDataGenerator case studies use shifts of ~0.1 of the size, rotations of ~10
    # degrees and zooms of ~0.1; on 8x8 digits a 1-pixel shift is 0.125 of the side. No flips.
    Config("augment_shift", "augmentation: random shift by up to 1 pixel", augment_shift=1),
    Config(
        "augment_affine",
        "augmentation: rotation 10 deg, zoom 0.1, shift 0.1 (bilinear)",
        augment_rotation=10.0,
        augment_zoom=0.1,
        augment_fraction=0.1,
    ),
    Config(
        "augment_dropout",
        "augmentation (as augment_affine) + dropout 0.1 / 0.3",
        augment_rotation=10.0,
        augment_zoom=0.1,
        augment_fraction=0.1,
        input_dropout=0.1,
        hidden_dropout=0.3,
    ),
)


def config_by_name(name: str) -> Config:
    """The row of :data:`CONFIGS` called ``name`` (ValueError naming the choices otherwise)."""
    for config in CONFIGS:
        if config.name == name:
            return config
    choices = ", ".join(c.name for c in CONFIGS)
    raise ValueError(f"config must be one of {choices}, got {name!r}")


def table_rows() -> list[dict[str, Any]]:
    """:data:`CONFIGS` as plain dicts (for the report and JSON)."""
    return [asdict(config) for config in CONFIGS]
