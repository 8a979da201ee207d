"""Data augmentation of the study's 8x8 digits (docs/contract/ops.md ops on the flattened images).

Keras ``ImageDataGenerator``-style small transforms: an integer shift (``random_translate``),
rotation / zoom / fractional shift (``random_affine``, bilinear); never flips (digits are not
mirror-symmetric). Each training image's transform depends on ``(seed, epoch, its index in the
training set)``: an image looks different every epoch, and the same at the same epoch whatever
minibatch it lands in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..augment import random_affine, random_translate
from .configs import Config

SIDE = 8  # the digits are 8x8


def augments(config: Config) -> bool:
    """Whether ``config`` augments its training inputs."""
    return bool(config.augment_shift or config.augment_rotation or config.augment_zoom
                or config.augment_fraction)


def augment_inputs(
    x: np.ndarray, ids: np.ndarray, config: Config, *, seed: int, epoch: int,
    backend: str | None = None,
) -> np.ndarray:
    """The minibatch ``x`` (``(n, 64)`` pixels in [0, 1]) of training images ``ids``, augmented
    for ``epoch``: ``random_affine`` at offset ``2*epoch + 1``, then ``random_translate`` at
    offset ``2*epoch`` (two offsets: both draw their shifts from the same words)."""
    images = x.reshape(-1, SIDE, SIDE)
    ids = np.asarray(ids, dtype=np.int64)
    if config.augment_rotation or config.augment_zoom or config.augment_fraction:
        images = random_affine(images, rotation=config.augment_rotation, zoom=config.augment_zoom,
                               shift=config.augment_fraction, seed=seed, offset=2 * epoch + 1,
                               sample_ids=ids, backend=backend)
    if config.augment_shift:
        images = random_translate(images, config.augment_shift, seed=seed, offset=2 * epoch,
                                  sample_ids=ids, backend=backend)
    return images.reshape(x.shape)


def example_grid(x: np.ndarray, config: Config, *, seed: int, epochs: int = 3) -> Any:
    """``(1 + epochs, n, 8, 8)``: the images ``x`` (training indices ``0..n-1``), then their
    augmented versions at epochs ``0..epochs-1``."""
    ids = np.arange(len(x))
    rows = [x.reshape(-1, SIDE, SIDE)]
    for epoch in range(epochs):
        rows.append(augment_inputs(x, ids, config, seed=seed, epoch=epoch).reshape(-1, SIDE, SIDE))
    return np.stack(rows)
