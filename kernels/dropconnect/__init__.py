"""DropConnect kernels (docs/contract/ops.md)."""
