"""DropConnect reference twin in plain NumPy: per-example masks, one example at a time.

Example ``e`` of ``x`` (``(B, K)``, C-contiguous) uses the mask of logical shape ``(K, N)`` that
covers flat indices ``[e*K*N, (e+1)*K*N)`` of the salt-1 stream, so only one ``(K, N)`` slice
exists at a time, never the ``(B, K, N)`` whole. The per-batch op needs no kernel of its own:
it masks ``W`` with the dropout twin's ``dropout_apply`` on the salt-1 stream (see
``fastreg.dropconnect``).
"""

from __future__ import annotations

import math

import numpy as np

from ..philox.ref_numpy import random_bits


def _keep(e, K, N, k0, k1, salt, offset, threshold):
    """Example ``e``'s keep-mask ``bits(e*K*N + k*N + n) >= threshold``, shape (K, N)."""
    bits = random_bits(K * N, k0, k1, salt, offset, start=e * K * N).reshape(K, N)
    return bits.astype(np.uint64) >= np.uint64(threshold)


def example_forward(x, W, b, k0, k1, salt, offset, threshold, scale):
    """``y[e] = x[e] @ (W * M_e * scale) + b``; ``x`` (B, K), ``W`` (K, N), ``b`` (N,) or None.

    The masked weight is a select: dropped weights are exactly ``+0.0``."""
    K, N = W.shape
    zero = W.dtype.type(0)
    y = np.empty((x.shape[0], N), dtype=x.dtype)
    for e in range(x.shape[0]):
        keep = _keep(e, K, N, k0, k1, salt, offset, threshold)
        y[e] = x[e] @ np.where(keep, W * scale, zero)
    if b is not None:
        y += b
    return y


def example_backward(dy, x, W, k0, k1, salt, offset, threshold, scale):
    """``dx[e] = (W * M_e * scale) @ dy[e]``, ``dW = sum_e outer(x[e], dy[e]) * M_e * scale``."""
    K, N = W.shape
    zero = W.dtype.type(0)
    dx = np.empty_like(x)
    dW = np.zeros_like(W)
    for e in range(x.shape[0]):
        keep = _keep(e, K, N, k0, k1, salt, offset, threshold)
        dx[e] = np.where(keep, W * scale, zero) @ dy[e]
        dW += np.where(keep, np.outer(x[e], dy[e]) * scale, zero)
    return dx, dW


def relu_gaussian_mean(mean, std):
    """``E[relu(u)]`` for ``u ~ N(mean, std**2)``: ``mean*Phi(mean/std) + std*phi(mean/std)``,
    and ``relu(mean)`` where ``std == 0``; evaluated in float64 with ``math.erfc``."""
    mu = np.asarray(mean, dtype=np.float64)
    sigma = np.asarray(std, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 0, mu / sigma, 0.0)
    cdf = 0.5 * np.frompyfunc(math.erfc, 1, 1)(-z / math.sqrt(2.0)).astype(np.float64)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    result = np.where(sigma > 0, mu * cdf + sigma * pdf, np.maximum(mu, 0.0))
    return result.astype(np.result_type(mean))
