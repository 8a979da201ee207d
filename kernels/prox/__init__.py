"""Proximal update kernels (SPEC §4.4)."""
