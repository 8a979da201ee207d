"""Benchmark cases of augmentation (issue 17): a CIFAR-like batch of 256x32x32x3 float32.

Contenders: ``fastreg`` (channels_last NumPy batch), ``kornia`` (``kornia.augmentation`` on CPU
tensors, channels_first, under ``torch.no_grad``, when installed), ``numpy`` (fastreg's NumPy
reference twin, the same transforms vectorized over the batch), and the ``copy`` limit: copying
the batch (read x, write y), the least any of them must do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..augment import augment, random_affine, random_cutout, random_flip, random_translate
from .cases import Case, torch_or_none
from .limits import copy_kernel

_SHAPE = (256, 32, 32, 3)
_SHIFT, _CUT = 4, 8
_AFFINE = dict(rotation=15.0, zoom=0.1, shift=0.1)


def _kornia() -> Any:
    if torch_or_none() is None:
        return None
    try:
        import kornia.augmentation as augmentation
    except ImportError:
        return None
    return augmentation


def _kornia_peer(make: Callable[[Any], list[Any]], x: np.ndarray) -> Callable[[], Any] | None:
    """``kornia`` modules applied in turn to the channels_first tensor of ``x``."""
    augmentation = _kornia()
    if augmentation is None:
        return None
    import torch

    modules = torch.nn.Sequential(*make(augmentation))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def run() -> Any:
        with torch.no_grad():
            return modules(xt)

    return run


def _erasing(k: Any) -> Any:
    # an 8x8 square of the 32x32 image, like cutout=8: area 1/16, aspect 1
    return k.RandomErasing(scale=(0.0625, 0.0625), ratio=(1.0, 1.0), p=1.0)


_KORNIA: dict[str, Callable[[Any], list[Any]]] = {
    "augment": lambda k: [k.RandomHorizontalFlip(), k.RandomCrop((32, 32), padding=_SHIFT),
                          _erasing(k)],
    "random_flip": lambda k: [k.RandomHorizontalFlip()],
    "random_translate": lambda k: [k.RandomCrop((32, 32), padding=_SHIFT)],
    "random_cutout": lambda k: [_erasing(k)],
    "random_affine": lambda k: [k.RandomAffine(degrees=_AFFINE["rotation"],
                                               translate=(_AFFINE["shift"], _AFFINE["shift"]),
                                               scale=(1 - _AFFINE["zoom"], 1 + _AFFINE["zoom"]),
                                               p=1.0)],
}


def _op(name: str) -> Callable[..., Any]:
    return {
        "augment": lambda x, **k: augment(x, horizontal_flip=True, max_shift=_SHIFT,
                                          cutout=_CUT, **k),
        "random_flip": lambda x, **k: random_flip(x, **k),
        "random_translate": lambda x, **k: random_translate(x, _SHIFT, **k),
        "random_cutout": lambda x, **k: random_cutout(x, _CUT, **k),
        "random_affine": lambda x, **k: random_affine(x, **_AFFINE, **k),
    }[name]


def _setup(name: str) -> Callable[[str], dict[str, Callable[[], Any]]]:
    def setup(backend: str) -> dict[str, Callable[[], Any]]:
        x = np.random.default_rng(0).random(_SHAPE, dtype=np.float32)
        op = _op(name)
        contenders: dict[str, Callable[[], Any]] = {
            "fastreg": lambda: op(x, seed=7, backend=backend),
        }
        if (peer := _kornia_peer(_KORNIA[name], x)) is not None:
            contenders["kornia"] = peer
        contenders["numpy"] = lambda: op(x, seed=7, backend="numpy")
        dst = np.empty_like(x)
        contenders["copy"] = lambda: copy_kernel(x, dst)
        return contenders

    return setup


def _case(name: str, label: str, goals: dict[str, float], quick: bool = True) -> Case:
    return Case(
        name=f"{label} 256x32x32x3 f32",
        family="augment",
        setup=_setup(name),
        limit="copy",
        peers=("kornia", "numpy"),
        bytes_moved=2 * int(np.prod(_SHAPE)) * 4,  # read x, write y
        quick=quick,
        goals=goals,
    )


CASES: list[Case] = [
    _case("augment", "augment flip+shift4+cutout8", {"kornia": 10.0}),
    _case("random_affine", "random_affine rot15 zoom.1 shift.1", {"kornia": 5.0}),
    _case("random_flip", "random_flip", {"copy": 4.0}, quick=False),
    _case("random_translate", "random_translate 4", {"copy": 4.0}, quick=False),
    _case("random_cutout", "random_cutout 8", {"copy": 4.0}, quick=False),
]
