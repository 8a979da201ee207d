"""Augmentation reference twin in plain NumPy: reads like SPEC §4.5, every dtype.

Arrays are image batches viewed as ``(N, P, H, W, C)``: ``P`` planes of ``H x W`` pixels of ``C``
channels (channels_last: ``P = 1``; channels_first: ``C = 1``; rank 3: both 1); every plane and
channel of a sample gets the same transform. The per-sample tables come from
:mod:`fastreg._kernels.augment.params` (host, float64), ``fill`` is already of ``x``'s dtype.
"""

from __future__ import annotations

import numpy as np

from .params import compute_dtype

__all__ = ["affine", "move"]


def _planes(mask: np.ndarray) -> np.ndarray:
    """A per-pixel ``(N, H, W)`` array broadcast over planes and channels."""
    return mask[:, None, :, :, None]


def flip(x: np.ndarray, vflip: np.ndarray, hflip: np.ndarray) -> np.ndarray:
    """Sample ``n`` mirrored top-bottom where ``vflip[n]``, left-right where ``hflip[n]``."""
    out = x.copy()
    out[vflip] = out[vflip][:, :, ::-1]
    out[hflip] = out[hflip][:, :, :, ::-1]
    return out


def translate(x: np.ndarray, dy: np.ndarray, dx: np.ndarray, fill) -> np.ndarray:
    """``out[n, i, j] = x[n, i - dy[n], j - dx[n]]`` where that pixel exists, else ``fill``."""
    n, _, h, w, _ = x.shape
    rows = np.arange(h)[None, :] - dy[:, None]  # (N, H): the source row of each output row
    cols = np.arange(w)[None, :] - dx[:, None]  # (N, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    # Advanced indices around a slice: the gathered axes come first, (N, H, W, P, C).
    gathered = x[np.arange(n)[:, None, None], :, np.clip(rows, 0, h - 1)[:, :, None],
                 np.clip(cols, 0, w - 1)[:, None, :], :]
    return np.where(_planes(inside), np.moveaxis(gathered, 3, 1), fill)


def cutout(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill) -> np.ndarray:
    """Pixels with ``rows[n, 0] <= i < rows[n, 1]`` and ``cols[n, 0] <= j < cols[n, 1]`` set to
    ``fill`` (the rectangle is already clipped to the image)."""
    _, _, h, w, _ = x.shape
    i, j = np.arange(h)[None, :], np.arange(w)[None, :]
    in_rows = (i >= rows[:, :1]) & (i < rows[:, 1:])
    in_cols = (j >= cols[:, :1]) & (j < cols[:, 1:])
    return np.where(_planes(in_rows[:, :, None] & in_cols[:, None, :]), fill, x)


def move(x: np.ndarray, out: np.ndarray, table: np.ndarray, fill) -> None:
    """``out = cutout(translate(flip(x)))`` with the per-sample ``table`` (MOVE_COLUMNS:
    vflip, hflip, dy, dx, row0, row1, col0, col1)."""
    if x.size == 0:
        return
    flipped = flip(x, table[:, 0].astype(bool), table[:, 1].astype(bool))
    shifted = translate(flipped, table[:, 2], table[:, 3], fill)
    out[...] = cutout(shifted, table[:, 4:6], table[:, 6:8], fill)


def _source_points(table: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``q = (A00*i + A01*j + b0, A10*i + A11*j + b1)`` per output pixel, ``(N, H, W)`` each,
    in float64, each product and sum rounded in that order (NumPy never fuses them)."""
    a00, a01, b0, a10, a11, b1 = (table[:, k, None, None] for k in range(6))
    i = np.arange(h, dtype=np.float64)[None, :, None]
    j = np.arange(w, dtype=np.float64)[None, None, :]
    return a00 * i + a01 * j + b0, a10 * i + a11 * j + b1


def _pixels(x, rows, cols, fill):
    """``x[n, :, rows, cols, :]`` as ``(N, P, H, W, C)``; ``fill`` where the pixel is outside."""
    n, _, h, w, _ = x.shape
    inside = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
    r = np.clip(rows, 0, h - 1).astype(np.int64)
    c = np.clip(cols, 0, w - 1).astype(np.int64)
    gathered = np.moveaxis(x[np.arange(n)[:, None, None], :, r, c, :], 3, 1)
    return np.where(_planes(inside), gathered, fill)


def affine(x: np.ndarray, out: np.ndarray, table: np.ndarray, fill, nearest: bool) -> None:
    """``out[n, i, j]`` sampled at ``q`` (AFFINE_COLUMNS: A00, A01, b0, A10, A11, b1).

    Nearest: the pixel ``floor(q + 0.5)``, or ``fill`` outside. Bilinear, in the compute type
    (float64 for float64, else float32): ``wy = qy - floor(qy)``, ``wx = qx - floor(qx)`` cast
    once, ``top = (1-wx)*v00 + wx*v01``, ``bottom = (1-wx)*v10 + wx*v11``,
    ``out = (1-wy)*top + wy*bottom`` over the four neighbours ``floor(q) + {0,1}^2``, a
    neighbour outside the image counting as ``fill`` and one of weight 0 as 0 (not read, so an
    exactly hit edge pixel is not blended with a NaN fill). uint8: rounded to nearest even, then
    clamped to [0, 255].
    """
    _, _, h, w, _ = x.shape
    if x.size == 0:
        return
    qy, qx = _source_points(table, h, w)
    if nearest:
        out[...] = _pixels(x, np.floor(qy + 0.5), np.floor(qx + 0.5), fill)
        return
    ctype = compute_dtype(x.dtype)
    xc, fc = x.astype(ctype), ctype.type(fill)
    y0, x0 = np.floor(qy), np.floor(qx)
    wy1, wx1 = (qy - y0).astype(ctype), (qx - x0).astype(ctype)
    one = ctype.type(1)
    wy0, wx0 = one - wy1, one - wx1

    def neighbour(dy, dx, wy, wx):
        value = _pixels(xc, y0 + dy, x0 + dx, fc)
        return np.where(_planes((wy == 0) | (wx == 0)), ctype.type(0), value)

    v00, v01 = neighbour(0, 0, wy0, wx0), neighbour(0, 1, wy0, wx1)
    v10, v11 = neighbour(1, 0, wy1, wx0), neighbour(1, 1, wy1, wx1)
    wy0, wy1, wx0, wx1 = (_planes(v) for v in (wy0, wy1, wx0, wx1))
    top = wx0 * v00 + wx1 * v01
    bottom = wx0 * v10 + wx1 * v11
    blend = wy0 * top + wy1 * bottom
    if x.dtype == np.uint8:
        blend = np.clip(np.rint(blend), 0, 255)
    out[...] = blend.astype(x.dtype)
