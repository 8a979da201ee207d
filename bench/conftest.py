"""Benchmark settings shared with ``python -m fastreg bench``.

Numba's and PyTorch's OpenMP worker threads spin while idle and, in one process on a few shared
cores, starve each other; passive waiting (set before either runtime loads, so only when
``pytest bench`` imports them first) applies to every contender alike. Export
``OMP_WAIT_POLICY=ACTIVE`` to override.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
