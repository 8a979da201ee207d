"""Batch image augmentation (docs/contract/ops.md): flips, translations, cutout, their fusion,
affine warps.

Each sample's transform depends only on ``(seed, offset, its id)``: sample ``n`` draws the eight
words ``a_k(n) = bits(8*s + k)`` of the salt-3 stream with ``s = sample_ids[n]`` (or ``n``), and
``u_k = (a_k + 0.5) * 2**-32`` in float64. The per-sample tables are derived once on the host
(:mod:`fastreg._kernels.augment.params`) and every backend applies the same table, so numpy,
numba and cupy move exactly the same pixels and sample exactly the same source points.

Words used: ``a_0`` horizontal flip, ``a_1`` vertical flip, ``u_2, u_3`` translation (both
:func:`random_translate` and the shift of :func:`random_affine`), ``u_4, u_5`` cutout centre,
``u_6`` rotation, ``u_7`` zoom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import _backends
from ._kernels.augment.params import affine_table, move_table, sample_words
from ._validate import (
    check_bool,
    check_choice,
    check_fill,
    check_finite,
    check_image,
    check_image_out,
    check_nonnegative,
    check_offset,
    check_probability,
    check_sample_ids,
    check_size_pair,
    float_in_range,
)
from .random import derive_key

__all__ = ["augment", "random_affine", "random_cutout", "random_flip", "random_translate"]


class _Call(NamedTuple):
    """The validated common arguments of one image op."""

    x: Any
    layout: tuple[int, int, int, int, int]  # (N, P, H, W, C), see ref_numpy
    key: tuple[int, int]
    offset: int
    fill: Any
    sample_ids: Any
    training: bool
    out: Any
    backend: str


def _common(
    x: Any,
    seed: Any,
    offset: Any,
    fill: Any,
    data_format: Any,
    sample_ids: Any,
    training: Any,
    out: Any,
    backend: str | None,
) -> _Call:
    training = check_bool(training, "training")
    layout = check_image(x, data_format)
    key = derive_key(seed)
    offset = check_offset(offset)
    fill = check_fill(fill, x.dtype)
    check_sample_ids(sample_ids, layout[0], x)
    check_image_out(out, x)
    backend = _backends.resolve(backend, x=x, sample_ids=sample_ids, out=out)
    return _Call(x, layout, key, offset, fill, sample_ids, training, out, backend)


def _words(call: _Call) -> np.ndarray:
    """The ``(N, 8)`` words ``a_k(n)``, drawn on the host by the CPU Philox twin (Numba's when
    it is installed: NumPy's takes ~650 us for a batch of 256, as long as the kernels)."""
    ids = call.sample_ids
    if ids is not None and _backends.array_kind(ids) == "cupy":
        ids = ids.get()
    cpu = "numba" if call.backend != "numpy" and "numba" in _backends.available_backends() \
        else "numpy"
    philox = _backends.twin("philox", cpu).philox4x32
    return sample_words(ids, call.layout[0], call.key, call.offset, philox)


def _run(call: _Call, table: Callable[[np.ndarray], np.ndarray], apply: str, *extra: Any) -> Any:
    """Run twin function ``apply(x5, out5, table, fill, *extra)``, or the identity when not
    training; returns the new array, ``out`` or ``x`` itself."""
    x, out = call.x, call.out
    if not call.training:
        if out is None:
            return x
        out[...] = x
        return out
    xp = _backends.array_module(call.backend)
    result = out if out is not None and out.flags.c_contiguous else xp.empty(x.shape, x.dtype)
    x5 = xp.ascontiguousarray(x).reshape(call.layout)
    getattr(_backends.twin("augment", call.backend), apply)(
        x5, result.reshape(call.layout), table(_words(call)), call.fill, *extra
    )
    if out is not None and result is not out:
        out[...] = result
        return out
    return result


_COMMON_DOC = """seed : int in [0, 2**64); offset : int in [0, 2**32), the call index
    fill : the value of pixels with no source, cast once to x's dtype (an integer in [0, 255]
        for uint8; NaN and infinities allowed for float types). Default 0.0.
    data_format : "channels_last" (default, (N, H, W, C)) or "channels_first" ((N, C, H, W));
        a rank-3 x is (N, H, W) whatever data_format
    sample_ids : 1-D integer array of N ids in [0, 2**61), of x's array kind; default 0..N-1
    training : bool; when False x itself is returned (copied into out if given), after
        every argument is validated
    out : array of x's shape, dtype and kind, not overlapping x, optional
    backend : "numpy", "numba" or "cupy"; default per docs/backends.md"""


def _check_shift_span(shift: tuple[int, int], name: str) -> tuple[int, int]:
    """``2*m + 1`` of each shift must be a float64 (the formula ``floor(u * (2*m + 1))``):
    a larger int raises ``ValueError``, never ``OverflowError``."""
    for m in shift:
        float_in_range(2 * m + 1, f"2*{name} + 1")
    return shift


def _doc(function: Callable) -> Callable:
    function.__doc__ = function.__doc__.replace("    {common}", "    " + _COMMON_DOC)
    return function


@_doc
def random_flip(
    x: Any,
    *,
    horizontal: bool = True,
    vertical: bool = False,
    seed: int,
    offset: int = 0,
    fill: float = 0.0,
    data_format: str = "channels_last",
    sample_ids: Any = None,
    training: bool = True,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Random mirror: sample ``n`` is flipped left-right iff ``horizontal and a_0(n) >= 2**31``,
    top-bottom iff ``vertical and a_1(n) >= 2**31``. Exact (data movement).

    Parameters
    ----------
    x : (N, H, W[, C]) or (N, C, H, W) array of float16, bfloat16, float32, float64 or uint8
    horizontal, vertical : bool, which flips may happen
    {common}

    Returns
    -------
    array of x's shape and dtype (C-contiguous), ``out``, or ``x`` when not training

    Raises
    ------
    ValueError: a rank other than 3 or 4, bad data_format, seed/offset/sample_ids out of range,
        out overlapping x. TypeError: non-array x, bad dtype, non-bool flags, array kind mix.

    Example
    -------
    >>> import numpy as np
    >>> x = np.arange(8.0).reshape(2, 1, 4)
    >>> y = random_flip(x, seed=0)
    >>> all(np.array_equal(y[n], x[n]) or np.array_equal(y[n], x[n, :, ::-1]) for n in range(2))
    True
    """
    horizontal = check_bool(horizontal, "horizontal")
    vertical = check_bool(vertical, "vertical")
    call = _common(x, seed, offset, fill, data_format, sample_ids, training, out, backend)
    _, _, h, w, _ = call.layout
    return _run(call, lambda words: move_table(
        words, h, w, horizontal=horizontal, vertical=vertical, max_shift=(0, 0), cutout=(0, 0)
    ), "move")


@_doc
def random_translate(
    x: Any,
    max_shift: int | tuple[int, int],
    *,
    seed: int,
    offset: int = 0,
    fill: float = 0.0,
    data_format: str = "channels_last",
    sample_ids: Any = None,
    training: bool = True,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Random integer shift: ``out[n, i, j] = x[n, i - dy, j - dx]`` where that pixel exists,
    else ``fill``, with ``dy = floor(u_2 * (2*my + 1)) - my`` and
    ``dx = floor(u_3 * (2*mx + 1)) - mx``. Exact; equal to padding by ``max_shift`` with
    ``fill`` and a random crop (CIFAR's pad 4, crop 32 is ``max_shift=4``).

    Parameters
    ----------
    x : (N, H, W[, C]) or (N, C, H, W) array of float16, bfloat16, float32, float64 or uint8
    max_shift : non-negative int, or a pair (my, mx) of them (rows, columns)
    {common}

    Returns
    -------
    array of x's shape and dtype (C-contiguous), ``out``, or ``x`` when not training

    Raises
    ------
    ValueError: negative max_shift, and as :func:`random_flip`.
    TypeError: a non-int max_shift (``2.0`` included), and as :func:`random_flip`.

    Example
    -------
    >>> import numpy as np
    >>> y = random_translate(np.ones((4, 8, 8)), 2, seed=0)
    >>> bool(y.shape == (4, 8, 8) and set(np.unique(y)) <= {0.0, 1.0})
    True
    """
    shift = _check_shift_span(check_size_pair(max_shift, "max_shift", 0), "max_shift")
    call = _common(x, seed, offset, fill, data_format, sample_ids, training, out, backend)
    _, _, h, w, _ = call.layout
    return _run(call, lambda words: move_table(
        words, h, w, horizontal=False, vertical=False, max_shift=shift, cutout=(0, 0)
    ), "move")


@_doc
def random_cutout(
    x: Any,
    size: int | tuple[int, int],
    *,
    seed: int,
    offset: int = 0,
    fill: float = 0.0,
    data_format: str = "channels_last",
    sample_ids: Any = None,
    training: bool = True,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Cutout (DeVries & Taylor 2017): rows ``[cy - sh//2, cy - sh//2 + sh)`` and columns
    ``[cx - sw//2, cx - sw//2 + sw)``, clipped to the image, are set to ``fill``, with centre
    ``cy = floor(u_4 * H)``, ``cx = floor(u_5 * W)``. Exact. A size larger than the image is
    allowed.

    Parameters
    ----------
    x : (N, H, W[, C]) or (N, C, H, W) array of float16, bfloat16, float32, float64 or uint8
    size : positive int, or a pair (sh, sw) of them
    {common}

    Returns
    -------
    array of x's shape and dtype (C-contiguous), ``out``, or ``x`` when not training

    Raises
    ------
    ValueError: a size below 1, and as :func:`random_flip`.
    TypeError: a non-int size (``2.0`` included), and as :func:`random_flip`.

    Example
    -------
    >>> import numpy as np
    >>> y = random_cutout(np.ones((3, 10, 10)), 4, seed=1)
    >>> [int((y[n] == 0).sum()) <= 16 for n in range(3)]
    [True, True, True]
    """
    cut = check_size_pair(size, "size", 1)
    call = _common(x, seed, offset, fill, data_format, sample_ids, training, out, backend)
    _, _, h, w, _ = call.layout
    return _run(call, lambda words: move_table(
        words, h, w, horizontal=False, vertical=False, max_shift=(0, 0), cutout=cut
    ), "move")


@_doc
def augment(
    x: Any,
    *,
    horizontal_flip: bool = False,
    vertical_flip: bool = False,
    max_shift: int | tuple[int, int] = 0,
    cutout: int | tuple[int, int] = 0,
    seed: int,
    offset: int = 0,
    fill: float = 0.0,
    data_format: str = "channels_last",
    sample_ids: Any = None,
    training: bool = True,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Flip, translate and cutout in one pass: exactly
    ``random_cutout(random_translate(random_flip(x)))`` with the same ``seed``, ``offset`` and
    ``sample_ids``, bit for bit. Output pixel ``(i, j)`` of sample ``n`` is ``fill`` inside the
    cutout rectangle, else ``x[n, v(i - dy), h(j - dx)]`` where ``(i - dy, j - dx)`` is inside
    the image (``v(r) = H-1-r`` when the sample is flipped top-bottom, ``h`` likewise), else
    ``fill``. Each stage is skipped when off (``cutout=0`` is off).

    Parameters
    ----------
    x : (N, H, W[, C]) or (N, C, H, W) array of float16, bfloat16, float32, float64 or uint8
    horizontal_flip, vertical_flip : bool, as ``horizontal`` / ``vertical`` of :func:`random_flip`
    max_shift : non-negative int or pair, as in :func:`random_translate` (0: no shift)
    cutout : non-negative int or pair, the size of :func:`random_cutout` (0: no cutout)
    {common}

    Returns
    -------
    array of x's shape and dtype (C-contiguous), ``out``, or ``x`` when not training

    Raises
    ------
    As :func:`random_translate` and :func:`random_cutout` (a negative cutout here).

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((8, 6, 6, 3), dtype=np.float32)
    >>> y = augment(x, horizontal_flip=True, max_shift=1, cutout=2, seed=5)
    >>> z = random_cutout(random_translate(random_flip(x, seed=5), 1, seed=5), 2, seed=5)
    >>> bool(np.array_equal(y, z))
    True
    """
    horizontal_flip = check_bool(horizontal_flip, "horizontal_flip")
    vertical_flip = check_bool(vertical_flip, "vertical_flip")
    shift = _check_shift_span(check_size_pair(max_shift, "max_shift", 0), "max_shift")
    cut = check_size_pair(cutout, "cutout", 0)
    call = _common(x, seed, offset, fill, data_format, sample_ids, training, out, backend)
    _, _, h, w, _ = call.layout
    return _run(call, lambda words: move_table(
        words, h, w, horizontal=horizontal_flip, vertical=vertical_flip, max_shift=shift,
        cutout=cut,
    ), "move")


@_doc
def random_affine(
    x: Any,
    *,
    rotation: float = 0.0,
    zoom: float = 0.0,
    shift: float = 0.0,
    interpolation: str = "bilinear",
    seed: int,
    offset: int = 0,
    fill: float = 0.0,
    data_format: str = "channels_last",
    sample_ids: Any = None,
    training: bool = True,
    out: Any = None,
    backend: str | None = None,
) -> Any:
    """Random rotation, zoom and shift (Keras-like ranges, this formula normative).

    Angle ``t = rotation * (2*u_6 - 1)`` degrees, zoom ``z = 1 + zoom * (2*u_7 - 1)``, shifts
    ``ty = shift * H * (2*u_2 - 1)``, ``tx = shift * W * (2*u_3 - 1)`` (the words of
    :func:`random_translate`: give the two different offsets if you compose them). With the
    centre ``c = ((H-1)/2, (W-1)/2)``, ``A = R(-t) / z`` (``R(a) = [[cos a, -sin a], [sin a,
    cos a]]`` on (row, column)) and ``b = c - A @ (c + (ty, tx))``, formed on the host in
    float64, output pixel ``(i, j)`` samples the input at
    ``q = (A00*i + A01*j + b0, A10*i + A11*j + b1)``, evaluated in float64 in that order without
    FMA on every backend.

    ``"bilinear"``: ``wy = qy - floor(qy)``, ``wx = qx - floor(qx)`` cast once to the compute
    type (float64 for float64 data, float32 otherwise), ``top = (1-wx)*v00 + wx*v01``,
    ``bottom = (1-wx)*v10 + wx*v11``, ``out = (1-wy)*top + wy*bottom`` over the neighbours
    ``v_ab = x[floor(qy) + a, floor(qx) + b]``, a neighbour outside the image counting as
    ``fill`` and a neighbour of weight 0 counting as 0 (never read: an edge pixel hit exactly is
    not blended with a NaN fill, and zero parameters give ``x`` back exactly). ``"nearest"``:
    the pixel ``floor(q + 0.5)``, or ``fill`` if it is outside (exact). uint8: the blend in
    float32, rounded to nearest (ties to even) and clamped to [0, 255]; float16/bfloat16 round
    once from float32.

    Parameters
    ----------
    x : (N, H, W[, C]) or (N, C, H, W) array of float16, bfloat16, float32, float64 or uint8
    rotation : finite float, the largest angle in degrees
    zoom : float in [0, 1)
    shift : finite float >= 0, the largest shift as a fraction of the image size
    interpolation : "bilinear" (default) or "nearest"
    {common}

    Returns
    -------
    array of x's shape and dtype (C-contiguous), ``out``, or ``x`` when not training

    Raises
    ------
    ValueError: non-finite rotation or shift, negative shift, zoom outside [0, 1), a shift too
        large for float64 sample points, bad interpolation, and as :func:`random_flip`.
    TypeError: non-real hyper-parameters, and as :func:`random_flip`.

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((2, 5, 5), dtype=np.float32)
    >>> bool(np.array_equal(random_affine(x, seed=1), x))
    True
    """
    rotation = check_finite(rotation, "rotation")
    zoom = check_probability(zoom, "zoom", allow_one=False)
    shift = check_nonnegative(shift, "shift")
    nearest = check_choice(interpolation, "interpolation", ("bilinear", "nearest")) == "nearest"
    call = _common(x, seed, offset, fill, data_format, sample_ids, training, out, backend)
    _, _, h, w, _ = call.layout
    # |q| <= |A| (|c| + |t|) + |c| with |A| <= 1/(1 - zoom): bounded in float64, or refused.
    size = float(max(h, w, 1))
    if not math.isfinite(2.0 * (size + shift * size) / (1.0 - zoom) + size):
        raise ValueError(f"shift is too large for float64 sample points, got {shift!r}")
    return _run(call, lambda words: affine_table(
        words, h, w, rotation=rotation, zoom=zoom, shift=shift
    ), "affine", nearest)
