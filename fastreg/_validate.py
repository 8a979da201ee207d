"""Every argument check and error message of fastreg (docs/contract/errors.md), in one place.

Checks raise ``ValueError`` for bad values and ``TypeError`` for bad types; every message names the
argument, what was expected and what was given. Nothing here writes to an array, so an op that
calls all its checks first modifies nothing when any of them fails.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._backends import array_kind
from ._dtypes import DTYPE_NAMES, is_float

__all__ = [
    "as_float",
    "check_array",
    "check_axes",
    "check_bool",
    "check_choice",
    "check_fill",
    "check_finite",
    "check_image",
    "check_image_out",
    "check_int_at_least",
    "check_keep_mask",
    "check_layer",
    "check_matching_list",
    "check_momentum",
    "check_nonnegative",
    "check_noise_shape",
    "check_no_overlap",
    "check_offset",
    "check_out",
    "check_probability",
    "check_required",
    "check_sample_ids",
    "check_same_dtype",
    "check_seed",
    "check_shape",
    "check_shape_equal",
    "check_size_pair",
    "check_update_arrays",
    "check_writeable",
    "float_in_range",
    "not_an_array",
]

_TOO_HARD = getattr(np, "exceptions", np).TooHardError  # np.exceptions is NumPy >= 1.25

#: The dtypes the fast path of :func:`check_update_arrays` accepts without asking ``_dtypes``
#: (bfloat16, whose test may import ml_dtypes, takes the full checks).
_NATIVE_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def float_in_range(value: Any, name: str) -> float:
    """``float(value)``; a number beyond float64's range (an int or Fraction such as 10**400)
    raises ``ValueError`` naming ``name``, never ``OverflowError`` (docs/contract/errors.md)."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError(
            f"{name} must be a number within float64's range, got {_describe(value)}"
        ) from None


def as_float(value: Any, name: str) -> float:
    """A real number (not a bool) as a float, NaN and infinities included
    (:func:`float_in_range`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float_in_range(value, name)


def _real(value: Any, name: str) -> float:
    value = as_float(value, name)
    if value != value:
        raise ValueError(f"{name} must not be NaN")
    return value


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def check_probability(p: Any, name: str = "p", *, allow_one: bool = True) -> float:
    """``p`` as a float in ``[0, 1]`` (or ``[0, 1)`` when ``allow_one`` is false)."""
    p = _real(p, name)
    upper_ok = p <= 1.0 if allow_one else p < 1.0
    if not (p >= 0.0 and upper_ok):
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {interval}, got {p!r}")
    return p


def check_nonnegative(value: Any, name: str) -> float:
    """``value`` as a finite float ``>= 0`` (learning rates, penalties, stddev)."""
    value = _real(value, name)
    if not (0.0 <= value < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def check_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """``shape`` (an int or a sequence of ints) as a tuple of non-negative ints."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(_integer(d, name) for d in shape)
    except TypeError:
        raise TypeError(
            f"{name} must be an int or a tuple of ints, got {_describe(shape)}"
        ) from None
    if any(d < 0 for d in dims):
        raise ValueError(f"{name} must have non-negative entries, got {dims}")
    return dims


def check_seed(seed: Any) -> int:
    """``seed`` as an int in ``[0, 2**64)``."""
    if seed is None:
        raise TypeError(
            "seed must be an int in [0, 2**64), got None (fastreg needs explicit seeds)"
        )
    seed = _integer(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed


def check_offset(offset: Any, name: str = "offset") -> int:
    """``offset`` (the call index), or another uint32 word such as a salt, in ``[0, 2**32)``."""
    offset = _integer(offset, name)
    if not 0 <= offset < 2**32:
        raise ValueError(f"{name} must be in [0, 2**32), got {offset}")
    return offset


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool (NumPy bools accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` as one of the strings ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {list(choices)}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or array_kind(x) == "cupy"


def not_an_array(x: Any, name: str) -> TypeError:
    """The error for a non-array ``x``: what was expected, what was given, and the way out
    (``numpy.asarray`` for scalars and lists, ``fastreg.torch`` for PyTorch tensors)."""
    kind = type(x)
    if kind.__module__.split(".")[0] == "torch":
        return TypeError(
            f"{name} must be a NumPy or CuPy array, got a PyTorch tensor ({kind.__name__}); "
            "for tensors use fastreg.torch (its layers, optimizers and functional ops take "
            "and return tensors, with autograd)"
        )
    if isinstance(x, np.generic):
        return TypeError(
            f"{name} must be a NumPy or CuPy array, got a NumPy scalar of type "
            f"numpy.{kind.__name__}, not an array (wrap it with numpy.asarray for a 0-d array)"
        )
    return TypeError(
        f"{name} must be a NumPy or CuPy array, got {kind.__name__} "
        "(convert with numpy.asarray first)"
    )


def check_array(x: Any, name: str, *, ndim_min: int = 0, ndim: int | None = None) -> Any:
    """``x`` as a floating array of a dtype of docs/contract/ops.md: float16, bfloat16
    (``ml_dtypes``), float32 or float64, on every backend."""
    if not _is_array(x):
        raise not_an_array(x, name)
    if not is_float(x.dtype):
        raise TypeError(f"{name} must have dtype {', '.join(DTYPE_NAMES)}; got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {tuple(x.shape)}")
    if x.ndim < ndim_min:
        raise ValueError(
            f"{name} must have at least {ndim_min} dimension(s), got shape {tuple(x.shape)}"
        )
    return x


def check_same_dtype(**arrays: Any) -> np.dtype:
    """The common dtype of the named arrays (``None`` entries skipped); mixed dtypes raise."""
    present = {name: a for name, a in arrays.items() if a is not None}
    dtypes = {a.dtype for a in present.values()}
    if len(dtypes) > 1:
        listed = ", ".join(f"{name}={a.dtype}" for name, a in present.items())
        raise TypeError(f"arrays must share one dtype, got {listed}")
    return dtypes.pop()


def check_shape_equal(a: Any, a_name: str, shape: tuple[int, ...], what: str) -> None:
    """``a.shape == shape``, else a ValueError naming ``a_name`` and ``what`` it must match."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{a_name} must have shape {tuple(shape)} ({what}), got {tuple(a.shape)}")


def check_layer(x: Any, W: Any, b: Any = None) -> tuple[int, int, int]:
    """A dense layer's operands: float ``x (..., K)``, ``W (K, N)``, ``b (N,)`` or None, one
    dtype; returns ``(M, K, N)`` with ``M`` the product of ``x``'s leading dimensions."""
    check_array(x, "x", ndim_min=1)
    check_array(W, "W", ndim=2)
    if b is not None:
        check_array(b, "b", ndim=1)
    check_same_dtype(x=x, W=W, b=b)
    k, n = x.shape[-1], W.shape[1]
    check_shape_equal(W, "W", (k, n), "(K, N) with K = x.shape[-1]")
    if b is not None:
        check_shape_equal(b, "b", (n,), "(N,) with N = W.shape[1]")
    return math.prod(x.shape[:-1]), k, n


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype, kind: str) -> Any:
    """``out=`` must be an array of the result's shape, dtype and kind (NumPy/CuPy)."""
    if out is None:
        return None
    check_array(out, "out")
    if array_kind(out) != kind:
        raise TypeError(f"out must be a {kind} array like the input, got a {array_kind(out)} array")
    if out.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype} like the input, got {out.dtype}")
    check_shape_equal(out, "out", shape, "the result's shape")
    check_writeable(out, "out")
    return out


def check_noise_shape(noise_shape: Any, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Keras ``noise_shape`` resolved against ``shape``: ``None`` entries become the size; each
    entry must be 1 or the size. Returns ``None`` when it equals ``shape`` (no broadcasting)."""
    if noise_shape is None:
        return None
    try:
        entries = list(noise_shape)
    except TypeError:
        raise TypeError(
            f"noise_shape must be a tuple of ints (or None entries), got "
            f"{type(noise_shape).__name__}"
        ) from None
    if len(entries) != len(shape):
        raise ValueError(
            f"noise_shape must have {len(shape)} entries (x.ndim), got {_describe(noise_shape)}"
        )
    resolved = []
    for axis, (entry, size) in enumerate(zip(entries, shape, strict=True)):
        entry = size if entry is None else _integer(entry, f"noise_shape[{axis}]")
        if entry not in (1, size):
            raise ValueError(
                f"noise_shape[{axis}] must be 1, None or {size} (x.shape[{axis}]), got {entry}"
            )
        resolved.append(entry)
    resolved_shape = tuple(resolved)
    return None if resolved_shape == tuple(shape) else resolved_shape


def check_int_at_least(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int ``>= minimum`` (e.g. Adam's ``step``, counted from 1)."""
    value = _integer(value, name)
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_writeable(x: Any, name: str) -> Any:
    """``x`` must be writeable: it is updated in place."""
    if not getattr(x.flags, "writeable", True):  # CuPy arrays have no such flag: always writeable
        raise ValueError(f"{name} must be a writeable array (the op writes to it), got a "
                         f"read-only array")
    return x


def _same_array(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are one array: the same object, or views of the same memory with
    the same start, shape and strides (an elementwise in-place update is then defined)."""
    if a is b:
        return True
    if a.shape != b.shape or a.strides != b.strides or a.dtype != b.dtype:
        return False
    if isinstance(a, np.ndarray):
        return bool(a.__array_interface__["data"][0] == b.__array_interface__["data"][0])
    return bool(a.data.ptr == b.data.ptr)  # CuPy


def _overlap(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` share an element of memory (interleaved views such as ``a[::2]``
    and ``a[1::2]`` do not); a problem too hard to decide exactly counts as overlapping."""
    if array_kind(a) != "numpy":
        import cupy  # only reached with CuPy arrays

        return bool(cupy.may_share_memory(a, b))
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except _TOO_HARD:
        return True


def check_no_overlap(written: Sequence[tuple[str, Any]], read: Sequence[tuple[str, Any]]) -> None:
    """No array of ``written`` (updated in place) overlaps another array of ``written`` or
    ``read`` in memory unless the two are the same array (docs/contract/errors.md): a partial
    overlap would make the result depend on the order in which a backend visits the elements."""
    for i, (name, a) in enumerate(written):
        for other, b in (*written[i + 1 :], *read):
            if a is None or b is None or a is b:
                continue
            if a.base is None and b.base is None:  # two arrays that own their memory: disjoint
                continue
            if array_kind(a) != array_kind(b):
                continue
            if not _same_array(a, b) and _overlap(a, b):
                raise ValueError(
                    f"{name} and {other} overlap in memory (views of one buffer); pass the same "
                    f"array or disjoint arrays"
                )


def check_keep_mask(mask: Any, name: str, shape: tuple[int, ...]) -> Any:
    """A boolean keep-mask (True = kept) of ``shape``."""
    if not _is_array(mask):
        raise TypeError(f"{name} must be a bool array (True = kept), got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(f"{name} must have dtype bool (True = kept), got {mask.dtype}")
    check_shape_equal(mask, name, shape, "the weights' shape")
    return mask


def check_axes(axis: Any, ndim: int, name: str = "axis") -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints or None for all axes) as sorted non-negative axes, with
    NumPy ``norm(axis=...)`` semantics: the axes a group's L2 norm is taken over."""
    if axis is None:
        return tuple(range(ndim))
    entries = (axis,) if isinstance(axis, (int, np.integer)) else axis
    try:
        axes = [_integer(a, name) for a in entries]
    except TypeError:
        raise TypeError(f"{name} must be an int, a tuple of ints or None, got "
                        f"{_describe(axis)}") from None
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} entries must be in [{-ndim}, {ndim}) for an array of "
                             f"{ndim} dimension(s), got {_describe(axis)}")
    normalized = sorted(a % ndim for a in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name} must not repeat an axis, got {_describe(axis)}")
    return tuple(normalized)


def check_matching_list(
    value: Any, name: str, count: int, is_list: bool, *, optional: bool = False
) -> list[Any]:
    """``value`` as a list of ``count`` entries: a list/tuple of that length when the weights
    were given as a list, else one array. ``None`` (or ``None`` entries) only when ``optional``."""
    if value is None:
        if optional:
            return [None] * count
        raise TypeError(f"{name} must be given, got None")
    if is_list:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list of {count} arrays like w, got "
                            f"{type(value).__name__}")
        if len(value) != count:
            raise ValueError(f"{name} must have {count} entries (one per array of w), got "
                             f"{len(value)}")
        return list(value)
    if isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be one array like w (w is one array), got a "
                        f"{type(value).__name__}")
    return [value]


def check_required(value: Any, name: str, reason: str) -> Any:
    """``value`` must be given (not None) because of ``reason``, else a ValueError."""
    if value is None:
        raise ValueError(f"{name} is required {reason}, got None")
    return value


def check_momentum(momentum: float, nesterov: bool, has_buf: bool) -> None:
    """Momentum needs a state buffer; Nesterov needs momentum (as in torch.optim.SGD)."""
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov=True needs momentum > 0, got momentum=0.0")
    if momentum > 0.0 and not has_buf:
        raise ValueError(f"momentum={momentum!r} needs buf= (a state array like w, zeros at the "
                         f"first step), got None")


def _entry(name: str, index: int | None) -> str:
    return name if index is None else f"{name}[{index}]"


def check_update_arrays(
    index: int | None,
    w: Any,
    inputs: tuple[tuple[str, Any], ...],
    states: tuple[tuple[str, Any], ...],
    mask: Any,
) -> None:
    """One tensor of an in-place update: ``w`` and ``states`` writeable float arrays, ``inputs``
    of ``w``'s dtype and shape, ``mask`` None or bool of ``w``'s shape. ``index`` is the position
    in a list (names become ``w[3]``), None for a single array."""
    # Fast path: lists of hundreds of small tensors are checked per call, so the common case
    # costs a few attribute reads; any doubt goes to the checks below, which raise.
    dtype = getattr(w, "dtype", None)
    if (
        type(w) is np.ndarray
        and dtype in _NATIVE_DTYPES
        and w.flags.writeable
        and _plain_like(inputs, w, False)
        and _plain_like(states, w, True)
        and (mask is None or (type(mask) is np.ndarray and mask.dtype == np.bool_
                              and mask.shape == w.shape))
    ):
        if not _maybe_overlapping(w, inputs, states, mask):
            return
        _check_update_overlap(index, w, inputs, states, mask)
        return
    w_name = _entry("w", index)
    check_writeable(check_array(w, w_name), w_name)
    for name, a in (*inputs, *states):
        entry = _entry(name, index)
        check_array(a, entry)
        if array_kind(a) != array_kind(w):
            raise TypeError(f"{entry} must be a {array_kind(w)} array like w, got a "
                            f"{array_kind(a)} array")
        if a.dtype != w.dtype:
            raise TypeError(f"{entry} must have dtype {w.dtype} like {w_name}, got {a.dtype}")
        check_shape_equal(a, entry, tuple(w.shape), f"the shape of {w_name}")
    for name, a in states:
        check_writeable(a, _entry(name, index))
    if mask is not None:
        check_keep_mask(mask, _entry("mask", index), tuple(w.shape))
    _check_update_overlap(index, w, inputs, states, mask)


def _plain_like(named: tuple[tuple[str, Any], ...], w: np.ndarray, written: bool) -> bool:
    """Whether every array of ``named`` is an ndarray of ``w``'s dtype and shape (and writeable
    if ``written``). Plain loops: a generator under ``all()`` costs ~0.5 us a call, as much as
    the checks, on a path that runs once per tensor of an optimizer step."""
    for _, a in named:
        if type(a) is not np.ndarray or a.dtype != w.dtype or a.shape != w.shape:
            return False
        if written and not a.flags.writeable:
            return False
    return True


def _maybe_overlapping(
    w: Any, inputs: tuple[tuple[str, Any], ...], states: tuple[tuple[str, Any], ...], mask: Any
) -> bool:
    """Whether any written array of a NumPy tensor may share memory with another of its arrays
    (not counting an array with itself): the fast path's screen, ~0.1 us per pair of owning
    arrays and ~0.4 us per pair of views (torch parameters), against ~6 us per tensor for the
    full check it defers to."""
    arrays = [w]
    for _, a in states:
        arrays.append(a)
    n_written = len(arrays)
    for _, a in inputs:
        arrays.append(a)
    if mask is not None:
        arrays.append(mask)
    share = np.may_share_memory
    for i in range(n_written):
        a = arrays[i]
        for j in range(i + 1, len(arrays)):
            b = arrays[j]
            if a is b or (a.base is None and b.base is None):
                continue
            if share(a, b):
                return True
    return False


# ---------------------------------------------------- images (docs/contract/ops.md)
#: The dtypes of an image batch, by name (bfloat16 is ml_dtypes'; matching names keeps ml_dtypes
#: unimported until an array of that dtype exists): docs/contract/ops.md's floats and uint8.
IMAGE_DTYPES = (*DTYPE_NAMES, "uint8")
DATA_FORMATS = ("channels_last", "channels_first")


def check_finite(value: Any, name: str) -> float:
    """``value`` as a finite float (NaN and infinities raise ``ValueError``)."""
    value = _real(value, name)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def check_image(x: Any, data_format: Any, name: str = "x") -> tuple[int, int, int, int, int]:
    """An image batch: a NumPy or CuPy array of an :data:`IMAGE_DTYPES` dtype, ``(N, H, W)``
    whatever ``data_format``, ``(N, H, W, C)`` (channels_last) or ``(N, C, H, W)``
    (channels_first). Returns ``(N, P, H, W, C)``: the batch as planes of pixels of ``C``
    contiguous channels (``P = C`` planes of one channel for channels_first)."""
    data_format = check_choice(data_format, "data_format", DATA_FORMATS)
    if not _is_array(x):
        raise not_an_array(x, name)
    if x.dtype.name not in IMAGE_DTYPES:
        raise TypeError(f"{name} must have dtype {', '.join(IMAGE_DTYPES)}; got {x.dtype}")
    if x.ndim == 3:
        n, h, w = x.shape
        return n, 1, h, w, 1
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be an image batch of rank 3 (N, H, W) or 4 ({_LAYOUTS[data_format]}), "
            f"got shape {tuple(x.shape)}"
        )
    if data_format == "channels_last":
        n, h, w, c = x.shape
        return n, 1, h, w, c
    n, c, h, w = x.shape
    return n, c, h, w, 1


_LAYOUTS = {"channels_last": "N, H, W, C", "channels_first": "N, C, H, W"}


def check_image_out(out: Any, x: Any) -> Any:
    """``out=`` of an image op: an array of ``x``'s kind, dtype and shape, writeable, with no
    element in common with ``x`` (the op reads pixels of ``x`` after writing others); disjoint
    views of one buffer, such as two channels of an interleaved array, are fine."""
    if out is None:
        return None
    if not _is_array(out):
        raise TypeError(f"out must be a NumPy or CuPy array like x, got {type(out).__name__}")
    if array_kind(out) != array_kind(x):
        raise TypeError(f"out must be a {array_kind(x)} array like x, got a {array_kind(out)} "
                        f"array")
    if out.dtype != x.dtype:
        raise TypeError(f"out must have dtype {x.dtype} like x, got {out.dtype}")
    check_shape_equal(out, "out", tuple(x.shape), "x's shape")
    check_writeable(out, "out")
    if _overlap(out, x):
        raise ValueError("out must not overlap x in memory (an image op reads x after writing "
                         "out), got arrays that share memory")
    return out


def check_size_pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair ``(rows, columns)`` of ints, each ``>= minimum``, as a pair. Floats raise
    ``TypeError`` even when integral (``2.0``): a size is a count of pixels."""
    entries = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(entries) != 2:
        raise ValueError(f"{name} must be an int or a pair (rows, columns) of ints, got "
                         f"{_describe(value)}")
    try:
        pair = tuple(_integer(v, name) for v in entries)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair (rows, columns) of ints, got "
                        f"{_describe(value)}") from None
    if min(pair) < minimum:
        raise ValueError(f"{name} entries must be ints >= {minimum}, got {_describe(value)}")
    return pair[0], pair[1]


def check_fill(fill: Any, dtype: np.dtype) -> Any:
    """``fill`` cast once to ``dtype``: any real for a float dtype (NaN and infinities allowed;
    a value beyond the dtype's range becomes an infinity), an integer in ``[0, 255]`` for
    uint8 (an integral float such as the default ``0.0`` counts as one)."""
    as_float(fill, "fill")  # TypeError or ValueError before any cast
    if dtype == np.uint8:
        if isinstance(fill, numbers.Integral):
            ok = 0 <= int(fill) <= 255
        else:
            value = float(fill)
            ok = 0.0 <= value <= 255.0 and value == math.floor(value)  # NaN fails too
        if not ok:
            raise ValueError(f"fill must be an integer in [0, 255] for uint8 images, got "
                             f"{fill!r}")
        return dtype.type(int(fill))
    value = float(fill)
    with np.errstate(over="ignore"):
        return dtype.type(value)


def check_sample_ids(sample_ids: Any, n: int, x: Any) -> Any:
    """``sample_ids``: None, or a 1-D integer array (not bool) of length ``n``, of ``x``'s array
    kind, with values in ``[0, 2**61)``."""
    if sample_ids is None:
        return None
    if not _is_array(sample_ids):
        raise TypeError(f"sample_ids must be a 1-D integer array, got "
                        f"{type(sample_ids).__name__}")
    if array_kind(sample_ids) != array_kind(x):
        raise TypeError(f"sample_ids must be a {array_kind(x)} array like x, got a "
                        f"{array_kind(sample_ids)} array")
    if sample_ids.dtype.kind not in "iu":
        raise TypeError(f"sample_ids must have an integer dtype (not bool), got "
                        f"{sample_ids.dtype}")
    if sample_ids.ndim != 1 or sample_ids.shape[0] != n:
        raise ValueError(f"sample_ids must have shape ({n},) (one id per sample of x), got "
                         f"{tuple(sample_ids.shape)}")
    if n and (int(sample_ids.min()) < 0 or int(sample_ids.max()) >= 2**61):
        raise ValueError(f"sample_ids must be in [0, 2**61), got values in "
                         f"[{int(sample_ids.min())}, {int(sample_ids.max())}]")
    return sample_ids


def _check_update_overlap(
    index: int | None,
    w: Any,
    inputs: tuple[tuple[str, Any], ...],
    states: tuple[tuple[str, Any], ...],
    mask: Any,
) -> None:
    written = [(_entry("w", index), w), *((_entry(n, index), a) for n, a in states)]
    read = [*((_entry(n, index), a) for n, a in inputs), (_entry("mask", index), mask)]
    check_no_overlap(written, read)
