"""The bad-input table (docs/contract/errors.md): every public function of fastreg, every
argument, bad values.

For each function a valid call is listed once; each argument is then replaced by the bad values
of its kind (wrong types, NaN/inf/huge numbers, out-of-range ints, wrong shapes and dtypes,
read-only arrays where the op writes, overlapping views for in-place updates). Every case must
raise the listed error type with a message that names the argument, and leave every array
argument exactly as it was. A function exported by fastreg and missing from the table fails
test_every_public_function_is_in_the_table, so new functions join the table.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastreg

#: Exports that are not ops: backend and thread-pool controls (tested in test_backends.py and
#: the runtime tests), each with its own bad-input tests there.
NOT_OPS = {"available_backends", "get_backend", "set_backend", "use_backend",
           "get_num_threads", "set_num_threads", "num_threads"}


def _a(*shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _dense_y():
    return fastreg.dense_dropout(_a(4, 3), _a(3, 5, seed=1), p=0.5, seed=1, backend="numpy")


#: name -> (valid keyword arguments, arrays the op writes in place)
VALID: dict[str, tuple[Callable[[], dict[str, Any]], tuple[str, ...]]] = {
    "dropout": (lambda: dict(x=_a(3, 5), p=0.5, seed=1, offset=2, training=True,
                             noise_shape=(3, 1), out=np.zeros((3, 5))), ("out",)),
    "dropout_backward": (lambda: dict(dy=_a(3, 5), p=0.5, seed=1, offset=2, noise_shape=None,
                                      out=np.zeros((3, 5))), ("out",)),
    "dropout_mask": (lambda: dict(shape=(3, 5), p=0.5, seed=1, offset=2), ()),
    "gaussian_noise": (lambda: dict(x=_a(3, 5), stddev=0.5, seed=1, offset=2, training=True),
                       ()),
    "gaussian_dropout": (lambda: dict(x=_a(3, 5), p=0.3, seed=1, offset=2, training=True), ()),
    "dense_dropout": (lambda: dict(x=_a(4, 3), W=_a(3, 5, seed=1), b=_a(5), p=0.5, seed=1,
                                   offset=0, activation="relu", training=True,
                                   return_preact=False), ()),
    "dense_dropout_backward": (lambda: dict(dy=_a(4, 5), x=_a(4, 3), W=_a(3, 5, seed=1),
                                            y=_dense_y(), p=0.5, seed=1, offset=0,
                                            activation="relu", z=None), ()),
    "dropconnect": (lambda: dict(x=_a(4, 3), W=_a(3, 5, seed=1), b=_a(5), p=0.5, seed=1,
                                 offset=0, per_example=True, training=True), ()),
    "dropconnect_backward": (lambda: dict(dy=_a(4, 5), x=_a(4, 3), W=_a(3, 5, seed=1), p=0.5,
                                          seed=1, offset=0, per_example=False), ()),
    "dropconnect_inference": (lambda: dict(x=_a(4, 3), W=_a(3, 5, seed=1), b=_a(5), p=0.5,
                                           activation="relu", samples=4, seed=1, offset=0), ()),
    "dropconnect_moments": (lambda: dict(x=_a(4, 3), W=_a(3, 5, seed=1), b=_a(5), p=0.5), ()),
    "prox_sgd_": (lambda: dict(w=_a(4, 3), grad=_a(4, 3, seed=1), lr=0.1, l1=0.01, l2=0.01,
                               momentum=0.9, nesterov=True, buf=np.zeros((4, 3)),
                               mask=np.ones((4, 3), bool)), ("w", "buf")),
    "prox_adam_": (lambda: dict(w=_a(4, 3), grad=_a(4, 3, seed=1), m=np.zeros((4, 3)),
                                v=np.zeros((4, 3)), step=1, lr=0.1, beta1=0.9, beta2=0.999,
                                eps=1e-8, l1=0.01, l2=0.01, weight_decay=0.01,
                                mask=np.ones((4, 3), bool), penalty_metric="adam"),
                   ("w", "m", "v")),
    "prox_group_lasso_": (lambda: dict(w=_a(4, 3), t=0.1, axis=0), ("w",)),
    "max_norm_": (lambda: dict(w=_a(4, 3), max_norm=1.0, axis=0), ("w",)),
    "penalty": (lambda: dict(w=_a(4, 3), l1=0.1, l2=0.1), ()),
    "random_bits": (lambda: dict(shape=(3, 5), seed=1, offset=2, salt=1), ()),
    "philox4x32": (lambda: dict(counter=np.zeros((2, 4), np.uint32),
                                key=np.zeros(2, np.uint32), rounds=10), ()),
}


def _images(out=True):
    kw = dict(x=_a(2, 5, 6, 3), seed=1, offset=0, fill=0.0, data_format="channels_last",
              sample_ids=np.arange(2), training=True)
    if out:
        kw["out"] = np.zeros((2, 5, 6, 3))
    return kw


#: The image ops of docs/contract/ops.md (augment.py), each with out= written.
VALID.update({
    "random_flip": (lambda: dict(_images(), horizontal=True, vertical=True), ("out",)),
    "random_translate": (lambda: dict(_images(), max_shift=(1, 2)), ("out",)),
    "random_cutout": (lambda: dict(_images(), size=2), ("out",)),
    "augment": (lambda: dict(_images(), horizontal_flip=True, vertical_flip=False, max_shift=1,
                             cutout=2), ("out",)),
    "random_affine": (lambda: dict(_images(), rotation=10.0, zoom=0.1, shift=0.1,
                                   interpolation="bilinear"), ("out",)),
})
IMAGE_OPS = ("random_flip", "random_translate", "random_cutout", "augment", "random_affine")

#: Real hyper-parameters: the upper bound they must stay within (None: finite, >= 0 only).
REALS = {"p": 1.0, "stddev": None, "lr": None, "l1": None, "l2": None, "momentum": None,
         "beta1": 1.0, "beta2": 1.0, "eps": None, "weight_decay": None, "t": None,
         "max_norm": None, "zoom": 1.0, "shift": None}
#: Sizes in pixels: ints (floats raise TypeError, even 2.0) at least this large.
SIZES = {"max_shift": 0, "cutout": 0, "size": 1}
CHOICES = {"activation": "swish", "data_format": "channels_middle", "interpolation": "cubic",
           "penalty_metric": "euclid"}
INTS = {"seed": 2**64, "offset": 2**32, "salt": 2**32}
BOOLS = {"training", "per_example", "nesterov", "return_preact", "horizontal", "vertical",
         "horizontal_flip", "vertical_flip"}
FLOAT_ARRAYS = {"x", "dy", "W", "b", "y", "z", "w", "grad", "m", "v", "buf", "out"}
OPTIONAL = {"b", "z", "out", "noise_shape", "mask", "samples", "axis", "backend",
            "sample_ids"}
#: Cases that are a mismatch between two arrays: the message may name either of them.
MISMATCH = {"other float dtype", "wrong shape"}


def _bad_values(name: str, valid: Any, paired: bool) -> list[tuple[str, Any, type[Exception]]]:
    """``(label, value, error)`` for argument ``name`` whose valid value is ``valid``;
    ``paired`` when the call has other float arrays its shape and dtype must agree with."""
    cases: list[tuple[str, Any, type[Exception]]] = []
    if name == "buf":  # docs/contract/ops.md: momentum > 0 requires buf (the valid call has 0.9)
        cases.append(("None", None, ValueError))
    elif name not in OPTIONAL:
        cases.append(("None", None, TypeError))
    if name in REALS:
        cases += [("str", "0.5", TypeError), ("bool", True, TypeError),
                  ("complex", 0.5j, TypeError), ("nan", math.nan, ValueError),
                  ("inf", math.inf, ValueError), ("-inf", -math.inf, ValueError),
                  ("huge int", 10**400, ValueError), ("-huge int", -(10**400), ValueError),
                  ("negative", -0.25, ValueError), ("array", np.array([0.5, 0.5]), TypeError)]
        if REALS[name] is not None:
            cases.append(("above range", 1.5, ValueError))
    elif name in INTS:
        cases += [("float", 1.0, TypeError), ("str", "1", TypeError), ("bool", True, TypeError),
                  ("negative", -1, ValueError), ("limit", INTS[name], ValueError),
                  ("huge", 10**400, ValueError)]
    elif name in ("step", "rounds", "samples"):
        low = {"step": 0, "rounds": -1, "samples": 0}[name]
        cases += [("float", 2.0, TypeError), ("str", "2", TypeError), ("bool", True, TypeError),
                  ("below range", low, ValueError)]
        if name in ("step", "samples"):  # a float power; an array dimension
            cases.append(("huge", 10**400, ValueError))
        if name == "samples":
            cases.append(("2**63", 2**63, ValueError))
    elif name in BOOLS:
        cases += [("int", 1, TypeError), ("str", "yes", TypeError)]
    elif name in CHOICES:
        cases += [("unknown", CHOICES[name], ValueError), ("int", 3, TypeError)]
    elif name == "rotation":  # any finite number of degrees, negative included
        cases += [("str", "10", TypeError), ("bool", True, TypeError),
                  ("nan", math.nan, ValueError), ("inf", math.inf, ValueError),
                  ("huge int", 10**400, ValueError)]
    elif name == "fill":  # NaN and infinities are fills of float images
        cases += [("str", "0", TypeError), ("bool", True, TypeError), ("complex", 1j, TypeError),
                  ("huge int", 10**400, ValueError)]
    elif name in SIZES:
        cases += [("float", 2.0, TypeError), ("str", "2", TypeError), ("bool", True, TypeError),
                  ("below range", SIZES[name] - 1, ValueError),
                  ("pair below range", (1, SIZES[name] - 1), ValueError),
                  ("triple", (1, 1, 1), ValueError)]
        if name == "max_shift":  # floor(u * (2*my + 1)) needs 2*my + 1 as a float64
            cases += [("huge", 10**400, ValueError), ("huge pair", (1, 10**400), ValueError)]
    elif name == "sample_ids":
        cases += [("float ids", valid.astype(np.float64), TypeError),
                  ("bool ids", valid.astype(bool), TypeError),
                  ("list", valid.tolist(), TypeError),
                  ("wrong length", np.arange(3), ValueError),
                  ("negative", valid - 5, ValueError),
                  ("too large", valid + 2**61, ValueError)]
    elif name in ("shape", "noise_shape"):
        cases += [("float entry", (3.0, 5), TypeError), ("str", "35", TypeError)]
        cases.append(("negative", (-3, 5), ValueError) if name == "shape"
                     else ("wrong entry", (2, 1), ValueError))
    elif name == "axis":
        cases += [("float", 0.5, TypeError), ("out of range", 5, ValueError),
                  ("repeated", (0, 0), ValueError)]
    elif name == "mask":
        cases += [("float mask", np.ones(valid.shape), TypeError),
                  ("wrong shape", np.ones((3, 4), bool), ValueError)]
    elif name in ("counter", "key"):
        cases += [("float", valid.astype(np.float64) + 0.5, TypeError),
                  ("str", "0000", TypeError),
                  ("last axis", np.zeros((*valid.shape[:-1], 3), np.uint32), ValueError)]
    elif name in FLOAT_ARRAYS:
        valid = np.zeros((4, 5)) if valid is None else valid  # an optional array left out
        cases += [("list", valid.tolist(), TypeError),
                  ("int dtype", valid.astype(np.int64), TypeError),
                  ("bool dtype", valid.astype(bool), TypeError),
                  ("str", "array", TypeError)]
        if paired:  # its shape and dtype are bound to another array's
            cases += [("other float dtype", valid.astype(np.float32), TypeError),
                      ("wrong shape", np.zeros((*valid.shape[:-1], valid.shape[-1] + 1)),
                       ValueError)]
    elif name == "backend":
        cases += [("unknown", "tpu", ValueError), ("int", 1, TypeError)]
    return cases


def _cases():
    for fn_name, (make, _written) in sorted(VALID.items()):
        valid = make()
        arrays = [k for k in valid if k in FLOAT_ARRAYS]
        for arg in [*valid, "backend"]:
            for label, value, error in _bad_values(arg, valid.get(arg), len(arrays) > 1):
                named = (arg, *arrays) if label in MISMATCH else (arg,)
                yield pytest.param(fn_name, arg, value, error, named,
                                   id=f"{fn_name}-{arg}-{label}")


def _read_only_cases():
    for fn_name, (_make, written) in sorted(VALID.items()):
        for arg in written:
            yield pytest.param(fn_name, arg, id=f"{fn_name}-{arg}")


def _overlap_cases():
    for fn_name, (make, written) in sorted(VALID.items()):
        valid = make()
        shapes = {k: v.shape for k, v in valid.items()
                  if isinstance(v, np.ndarray) and v.dtype == np.float64}
        for arg in written:
            for other, shape in shapes.items():
                if other != arg and shape == shapes[arg] and fn_name.endswith("_"):
                    yield pytest.param(fn_name, arg, other, id=f"{fn_name}-{arg}-{other}")


def _snapshot(kwargs: dict[str, Any]) -> dict[str, bytes]:
    return {k: np.asarray(v).tobytes() for k, v in kwargs.items() if isinstance(v, np.ndarray)}


def _expect(fn_name, kwargs, error, names, backend, snapshot_of=None):
    """The call raises exactly ``error``, its message names one of ``names``, and no array
    argument changed."""
    before = _snapshot(snapshot_of or kwargs)
    with pytest.raises(error) as info:
        getattr(fastreg, fn_name)(**kwargs, backend=backend)
    assert info.type is error, f"{info.type.__name__} (expected {error.__name__}): {info.value}"
    assert any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", str(info.value)) for n in names), (
        f"the message does not name {' or '.join(names)}: {info.value}"
    )
    assert _snapshot(snapshot_of or kwargs) == before, "an argument was modified"


def test_every_public_function_is_in_the_table():
    exported = {name for name in dir(fastreg)
                if not name.startswith("_") and inspect.isfunction(getattr(fastreg, name))}
    missing = sorted(exported - NOT_OPS - set(VALID))
    assert not missing, f"add these fastreg functions to VALID in {__file__}: {missing}"


@pytest.mark.parametrize("fn_name", sorted(VALID))
def test_the_valid_calls_are_valid(backend, fn_name):
    kwargs = VALID[fn_name][0]()
    # the table must name every parameter but backend, so every one gets its bad values
    params = set(inspect.signature(getattr(fastreg, fn_name)).parameters) - {"backend"}
    assert set(kwargs) == params
    getattr(fastreg, fn_name)(**kwargs, backend=backend)


@pytest.mark.parametrize(("fn_name", "arg", "value", "error", "named"), list(_cases()))
def test_bad_argument(backend, fn_name, arg, value, error, named):
    kwargs = VALID[fn_name][0]()
    if arg == "backend":
        with pytest.raises(error) as info:
            getattr(fastreg, fn_name)(**kwargs, backend=value)
        assert info.type is error and "backend" in str(info.value)
        return
    kwargs[arg] = value
    _expect(fn_name, kwargs, error, named, backend)


@pytest.mark.parametrize(("fn_name", "arg"), list(_read_only_cases()))
def test_read_only_written_array(backend, fn_name, arg):
    kwargs = VALID[fn_name][0]()
    kwargs[arg].flags.writeable = False
    _expect(fn_name, kwargs, ValueError, (arg,), backend)


@pytest.mark.parametrize(("fn_name", "arg", "other"), list(_overlap_cases()))
def test_overlapping_in_place_arrays(backend, fn_name, arg, other):
    kwargs = VALID[fn_name][0]()
    a, b = kwargs[arg], kwargs[other]
    buffer = np.empty(a.size + 1)
    kwargs[arg] = buffer[1:].reshape(a.shape)
    kwargs[arg][...] = a
    kwargs[other] = buffer[:-1].reshape(b.shape)
    holder = {"buffer": buffer, **{k: v for k, v in kwargs.items() if k not in (arg, other)}}
    _expect(fn_name, kwargs, ValueError, (arg,), backend, snapshot_of=holder)


@pytest.mark.parametrize("fn_name", IMAGE_OPS)
def test_image_out_overlapping_x(backend, fn_name):
    kwargs = VALID[fn_name][0]()
    kwargs["out"] = kwargs["x"]  # the op reads pixels of x after writing others
    _expect(fn_name, kwargs, ValueError, ("out",), backend)
