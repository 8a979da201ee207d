"""Proximal update kernels (docs/contract/ops.md)."""

#: A group's float64 sum of squares below this (or infinite) is recomputed with the entries
#: scaled by a power of two near their largest magnitude: squares of float64 entries beyond
#: 1.3e154 overflow and below 1.5e-154 underflow (a group of 1e200 entries had norm inf and was
#: zeroed). Below 2**-900 the lost subnormal squares could exceed 2**-53 of the sum; above it,
#: and for every float32/float16 group, the plain sum is exact enough and nothing changes.
#: The CUDA kernel (prox.cu) spells the same number.
NORM_RESCALE_BELOW = 2.0**-900
