"""Batch image augmentation (SPEC §4.5): flip, translate, cutout, their fusion, affine warps."""
