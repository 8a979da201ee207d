"""Kernel twins, installed as ``fastreg._kernels``: a folder per op family, a twin per backend."""
