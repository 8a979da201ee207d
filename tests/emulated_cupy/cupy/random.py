"""``cupy.random`` of the emulated CuPy: ``default_rng`` whose draws are device arrays."""

from __future__ import annotations

from typing import Any

import numpy as np


class Generator:
    def __init__(self, seed: Any = None):
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        from . import _wrap

        method = getattr(self._rng, name)
        return lambda *args, **kwargs: _wrap(method(*args, **kwargs))


def default_rng(seed: Any = None) -> Generator:
    return Generator(seed)
