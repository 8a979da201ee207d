"""The 8x8 digits of scikit-learn (1,797 images shipped inside the package: no download), split
once into fixed train / validation / test sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INSTALL_HINT = (
    "the regularization study needs scikit-learn for its data (the 8x8 digits ship inside it; "
    'nothing is downloaded): pip install "fastreg-kernels[demo]" (or: pip install scikit-learn)'
)


@dataclass(frozen=True)
class Split:
    """Pixels scaled to [0, 1] (float32, shape ``(n, 64)``) and integer labels 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def load_split(n_train: int, n_val: int, seed: int) -> Split:
    """Stratified split of ``load_digits()``: ``n_train`` and ``n_val`` images, the rest test.

    The same ``(n_train, n_val, seed)`` always gives the same split (scikit-learn's
    ``train_test_split`` with ``random_state=seed``).

    Raises
    ------
    ImportError: scikit-learn is not installed (the message says how to install it).
    ValueError: ``n_train + n_val`` leaves fewer than 10 test images.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    if n_train < 10 or n_val < 10 or n_train + n_val > len(y) - 10:
        raise ValueError(
            f"n_train and n_val must be >= 10 and leave >= 10 of the {len(y)} images for the "
            f"test set, got n_train={n_train}, n_val={n_val}"
        )
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=n_train, stratify=y, random_state=seed
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, train_size=n_val, stratify=y_rest, random_state=seed
    )
    return Split(x_train, y_train, x_val, y_val, x_test, y_test)
