"""DropConnect reference twin in plain NumPy: per-example masks, one example at a time.

Example ``e`` of ``x`` (``(B, K)``, C-contiguous) uses the mask of logical shape ``(K, N)`` that
covers flat indices ``[e*K*N, (e+1)*K*N)`` of the salt-1 stream. Masks are built for a few whole
examples at a time (about ``CHUNK`` elements, at least one example), never the ``(B, K, N)``
whole. The per-batch op needs no kernel of its own:
it masks ``W`` with the dropout twin's ``dropout_apply`` on the salt-1 stream (see
``fastreg.dropconnect``).
"""

from __future__ import annotations

import math

import numpy as np

from ..philox.ref_numpy import random_bits

#: Mask elements per chunk: whole examples, at least one, so memory stays O(max(K*N, CHUNK)).
CHUNK = 1 << 16


def _chunks(B, K, N, k0, k1, salt, offset, threshold):
    """``(e0, e1, keep)`` for runs of whole examples, ``keep[e - e0, k, n] = bits(e*K*N + k*N +
    n) >= threshold``: the per-example masks a few examples at a time."""
    step = max(1, CHUNK // max(1, K * N))
    for e0 in range(0, B, step):
        e1 = min(B, e0 + step)
        bits = random_bits((e1 - e0) * K * N, k0, k1, salt, offset, start=e0 * K * N)
        yield e0, e1, bits.reshape(e1 - e0, K, N).astype(np.uint64) >= np.uint64(threshold)


def example_forward(x, W, b, k0, k1, salt, offset, threshold, scale):
    """``y[e] = x[e] @ (W * M_e * scale) + b``; ``x`` (B, K), ``W`` (K, N), ``b`` (N,) or None.

    The masked weight is a select: dropped weights are exactly ``+0.0``."""
    (B, K), N = x.shape, W.shape[1]
    zero = W.dtype.type(0)
    y = np.empty((B, N), dtype=x.dtype)
    for e0, e1, keep in _chunks(B, K, N, k0, k1, salt, offset, threshold):
        y[e0:e1] = np.einsum("ek,ekn->en", x[e0:e1], np.where(keep, W * scale, zero))
    if b is not None:
        y += b
    return y


def example_backward(dy, x, W, k0, k1, salt, offset, threshold, scale):
    """``dx[e] = (W * M_e * scale) @ dy[e]``, ``dW = sum_e outer(x[e], dy[e]) * M_e * scale``."""
    (B, K), N = x.shape, W.shape[1]
    zero = W.dtype.type(0)
    dx = np.empty_like(x)
    dW = np.zeros_like(W)
    for e0, e1, keep in _chunks(B, K, N, k0, k1, salt, offset, threshold):
        dx[e0:e1] = np.einsum("ekn,en->ek", np.where(keep, W * scale, zero), dy[e0:e1])
        outer = x[e0:e1, :, None] * dy[e0:e1, None, :]
        dW += np.where(keep, outer * scale, zero).sum(axis=0)
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


__all__ = ["example_backward", "example_forward", "relu_gaussian_mean"]
