"""Fused dense + activation + dropout kernels (docs/contract/ops.md)."""

#: Activation names in code order: the Numba twin dispatches on the index into this tuple.
ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "gelu")
#: Activations whose derivative is recovered from the output ``y`` (the rest need ``z``).
FROM_OUTPUT = ("identity", "relu", "tanh", "sigmoid")
