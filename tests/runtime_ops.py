"""Every CPU op of fastreg on inputs big enough to take the parallel path, for the runtime tests.

``run_all()`` returns ``{name: array}``; the runtime tests compare these results across thread
counts, Python threads and forked processes. The sizes are above every kernel's serial
threshold (2**16-2**17 elements), and the pool's wake-latency gate is off (it would keep these
sub-millisecond jobs on the caller on a VM), so each op really hands work to the pool.
"""

from __future__ import annotations

import numpy as np

import fastreg
from fastreg import _runtime

_runtime._LATENCY_FACTOR = 0.0

N = 1 << 18
B, K, OUT = 512, 128, 512


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    return {
        "x": rng.standard_normal(N).astype(np.float32),
        "xd": rng.standard_normal((B, K)).astype(np.float32),
        "W": (rng.standard_normal((K, OUT)) / 16).astype(np.float32),
        "b": rng.standard_normal(OUT).astype(np.float32),
        "dy": rng.standard_normal((B, OUT)).astype(np.float32),
        "xe": rng.standard_normal((16, K)).astype(np.float32),
        "dye": rng.standard_normal((16, OUT)).astype(np.float32),
        "w": rng.standard_normal(N).astype(np.float64),
        "g": rng.standard_normal(N).astype(np.float64),
        "groups": rng.standard_normal((512, 512)).astype(np.float64),
    }


def run_all(seed: int = 7, offset: int = 3) -> dict[str, np.ndarray]:
    """Each op once; in-place updates run on fresh copies."""
    a = _inputs()
    out: dict[str, np.ndarray] = {}
    kw = {"seed": seed, "offset": offset}
    out["random_bits"] = fastreg.random_bits((N,), **kw)
    out["dropout"] = fastreg.dropout(a["x"], 0.3, **kw)
    out["dropout_backward"] = fastreg.dropout_backward(a["x"], 0.3, **kw)
    out["dropout_mask"] = fastreg.dropout_mask((N,), 0.3, **kw)
    out["gaussian_noise"] = fastreg.gaussian_noise(a["x"], 0.5, **kw)
    out["gaussian_dropout"] = fastreg.gaussian_dropout(a["x"], 0.3, **kw)
    y, z = fastreg.dense_dropout(a["xd"], a["W"], a["b"], p=0.2, activation="gelu",
                                 return_preact=True, **kw)
    out["dense_dropout"] = y
    for name, grad in zip(("dx", "dW", "db"), fastreg.dense_dropout_backward(
            a["dy"], a["xd"], a["W"], y, p=0.2, activation="gelu", z=z, **kw), strict=True):
        out[f"dense_dropout_backward.{name}"] = grad
    out["dropconnect"] = fastreg.dropconnect(a["xd"], a["W"], a["b"], p=0.4, **kw)
    out["dropconnect.per_example"] = fastreg.dropconnect(a["xe"], a["W"], a["b"], p=0.4,
                                                         per_example=True, **kw)
    for per_example, x, dy in ((False, a["xd"], a["dy"]), (True, a["xe"], a["dye"])):
        grads = fastreg.dropconnect_backward(dy, x, a["W"], p=0.4, per_example=per_example, **kw)
        for name, grad in zip(("dx", "dW", "db"), grads, strict=True):
            out[f"dropconnect_backward.{per_example}.{name}"] = grad
    w, buf = a["w"].copy(), np.zeros(N)
    fastreg.prox_sgd_(w, a["g"], lr=0.1, l1=0.5, l2=0.1, momentum=0.9, buf=buf)
    out["prox_sgd_"], out["prox_sgd_.buf"] = w, buf
    w, m, v = a["w"].copy(), np.zeros(N), np.zeros(N)
    fastreg.prox_adam_(w, a["g"], m, v, step=1, lr=0.1, l1=0.5, l2=0.1)
    out["prox_adam_"], out["prox_adam_.m"], out["prox_adam_.v"] = w, m, v
    ws = [a["w"][: N // 2].copy(), a["w"][N // 2 :].copy()]
    fastreg.prox_sgd_(ws, [a["g"][: N // 2], a["g"][N // 2 :]], lr=0.1, l1=0.5)
    out["prox_sgd_.list0"], out["prox_sgd_.list1"] = ws
    for axis in (0, 1):
        g = a["groups"].copy()
        fastreg.prox_group_lasso_(g, t=20.0, axis=axis)
        out[f"prox_group_lasso_.{axis}"] = g
        g = a["groups"].copy()
        fastreg.max_norm_(g, max_norm=20.0, axis=axis)
        out[f"max_norm_.{axis}"] = g
    out["penalty"] = np.array(fastreg.penalty(a["w"], l1=0.3, l2=0.2))
    return out


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    """Bitwise equality of every result (NaNs equal)."""
    assert got.keys() == want.keys()
    for name in want:
        assert np.array_equal(got[name], want[name], equal_nan=True), f"{name} differs {what}"
