"""Kernel twins, installed as ``fastreg._kernels``: one folder per op family (numpy, numba, cupy)."""
