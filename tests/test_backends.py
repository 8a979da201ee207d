"""Backend registry and resolution order (docs/backends.md), and the package layout rules."""

from __future__ import annotations

import importlib.util
import inspect
import pkgutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastreg
from fastreg import _backends


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch):
    monkeypatch.delenv("FASTREG_BACKEND", raising=False)
    fastreg.set_backend(None)
    yield
    fastreg.set_backend(None)


def test_available_backends_lists_numpy_and_numba():
    available = fastreg.available_backends()
    assert available[:2] == ("numpy", "numba")
    assert fastreg.get_backend() == "numba"


def test_resolution_order(monkeypatch):
    x = np.ones(3)
    assert _backends.resolve(None, x=x) == "numba"
    monkeypatch.setenv("FASTREG_BACKEND", "numpy")
    assert _backends.resolve(None, x=x) == "numpy"
    fastreg.set_backend("numba")
    assert _backends.resolve(None, x=x) == "numba"  # set_backend beats the environment
    with fastreg.use_backend("numpy"):
        assert _backends.resolve(None, x=x) == "numpy"  # use_backend beats set_backend
        with fastreg.use_backend("numba"):
            assert fastreg.get_backend() == "numba"  # innermost block wins
        assert _backends.resolve("numba", x=x) == "numba"  # the explicit argument beats all
    assert fastreg.get_backend() == "numba"


def test_use_backend_is_context_local():
    seen = {}

    def worker():
        seen["thread"] = fastreg.get_backend()

    with fastreg.use_backend("numpy"):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert fastreg.get_backend() == "numpy"
    assert seen["thread"] == "numba"


def test_unknown_and_unavailable_backends():
    with pytest.raises(ValueError, match="backend must be one of"):
        fastreg.dropout(np.ones(3), 0.5, seed=0, backend="tpu")
    with pytest.raises(TypeError, match="backend"):
        fastreg.set_backend(3)
    if "cupy" not in fastreg.available_backends():
        with pytest.raises(RuntimeError, match="pip install"):
            fastreg.dropout(np.ones(3), 0.5, seed=0, backend="cupy")
        with pytest.raises(RuntimeError, match="pip install"):
            fastreg.set_backend("cupy")


def test_bad_environment_variable_names_it(monkeypatch):
    monkeypatch.setenv("FASTREG_BACKEND", "fortran")
    with pytest.raises(ValueError, match="FASTREG_BACKEND"):
        fastreg.dropout(np.ones(3), 0.5, seed=0)


def test_mixed_array_kinds_raise_naming_both():
    class FakeCupyArray:  # array_kind looks at the defining module only
        pass

    FakeCupyArray.__module__ = "cupy._core.core"
    with pytest.raises(TypeError, match="mix of both: x is a NumPy array, W a CuPy array"):
        _backends.resolve(None, x=np.ones(2), b=None, W=FakeCupyArray())
    with pytest.raises(TypeError, match=r"numba.*numpy arrays, got a cupy array for W"):
        _backends.resolve("numba", x=None, W=FakeCupyArray())


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_import_compiles_nothing_and_imports_neither_numba_nor_cupy():
    out = _run(
        "import sys, fastreg; print('numba' in sys.modules, 'cupy' in sys.modules, "
        "'llvmlite' in sys.modules)"
    )
    assert out == "False False False"


def test_numba_falls_back_to_numpy_with_one_warning():
    code = (
        "import sys, warnings; sys.modules['numba'] = None\n"
        "import importlib.util as u; real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'numba' else real(name, *a)\n"
        "import numpy as np, fastreg\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    fastreg.dropout(np.ones(4), 0.5, seed=1); fastreg.dropout(np.ones(4), 0.5, seed=1)\n"
        "print(fastreg.available_backends(), fastreg.get_backend(), len(w))"
    )
    assert _run(code) == "('numpy',) numpy 1"


def test_kernels_is_not_a_top_level_module():
    spec = importlib.util.find_spec("kernels")
    assert spec is None or "fastreg" not in str(spec.origin)
    assert importlib.util.find_spec("fastreg._kernels") is not None


def _interface(module) -> dict[str, list[str]]:
    """The twin interface a module declares in ``__all__``: function name -> parameter names."""
    declared = getattr(module, "__all__", None)
    assert declared, f"{module.__name__} must declare its twin interface in __all__"
    interface = {}
    for name in declared:
        function = getattr(module, name)
        function = getattr(function, "py_func", function)  # a Numba dispatcher wraps a function
        interface[name] = list(inspect.signature(function).parameters)
    return interface


def test_twins_have_the_same_functions_and_signatures():
    import fastreg._kernels as kernels_package

    checked = 0
    for family in pkgutil.iter_modules(kernels_package.__path__):
        if not family.ispkg:
            continue
        if importlib.util.find_spec(f"fastreg._kernels.{family.name}.ref_numpy") is None:
            continue  # a family folder with no twins yet
        reference = importlib.import_module(f"fastreg._kernels.{family.name}.ref_numpy")
        expected = _interface(reference)
        for twin in ("cpu_numba", "gpu_cupy"):
            name = f"fastreg._kernels.{family.name}.{twin}"
            if importlib.util.find_spec(name) is None:
                continue
            if twin == "gpu_cupy" and "cupy" not in fastreg.available_backends():
                continue
            assert _interface(importlib.import_module(name)) == expected, (
                f"{name} must offer the functions and parameters of ref_numpy"
            )
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (np.float32(1.0), ("must be a NumPy or CuPy array", "NumPy scalar", "numpy.asarray")),
        ([1.0, 2.0], ("must be a NumPy or CuPy array", "got list", "numpy.asarray")),
    ],
)
def test_a_non_array_is_told_an_array_was_expected(value, words):
    with pytest.raises(TypeError) as error:
        fastreg.dropout(value, 0.5, seed=1)
    message = str(error.value)
    assert message.startswith("x must be") and all(word in message for word in words)
    assert "got float32" not in message


def test_a_torch_tensor_given_to_the_numpy_api_is_pointed_to_fastreg_torch():
    torch = pytest.importorskip("torch")
    w = torch.zeros(4)
    with pytest.raises(TypeError, match=r"w must be a NumPy or CuPy array.*fastreg\.torch"):
        fastreg.prox_sgd_(w, torch.ones(4), lr=0.1)
    assert torch.count_nonzero(w) == 0
