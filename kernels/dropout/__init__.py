"""Dropout-family kernels (docs/contract/ops.md)."""
