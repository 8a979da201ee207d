"""Fused dense + activation + dropout kernels (SPEC §4.2)."""
