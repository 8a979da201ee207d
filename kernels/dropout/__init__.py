"""Dropout-family kernels (SPEC §4.1)."""
