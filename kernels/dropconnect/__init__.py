"""DropConnect kernels (SPEC §4.3)."""
