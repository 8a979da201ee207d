"""The Examples of every public module's docstrings run and print what they show (doctest)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import fastreg


def _modules() -> list[str]:
    """fastreg and its submodules, except the command line and ``fastreg._kernels`` (the twins
    are tested against each other; they hold no examples)."""
    names = ["fastreg"]
    for info in pkgutil.walk_packages(fastreg.__path__, "fastreg."):
        if info.name.startswith(("fastreg._kernels", "fastreg.__main__")):
            continue
        names.append(info.name)
    return sorted(names)


def _needs(name: str) -> str | None:
    """The optional package a module imports at the top, if any."""
    return "torch" if name == "fastreg.torch" or name.startswith("fastreg.torch.") else None


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    if (needed := _needs(name)) is not None:
        pytest.importorskip(needed)
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failures, _ = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert failures == 0, f"{name}: {failures} docstring example(s) failed (see the output)"


def test_the_public_api_has_examples():
    modules = ("random", "dropout", "dense", "dropconnect", "prox")
    for name in modules:
        module = importlib.import_module(f"fastreg.{name}")
        tests = doctest.DocTestFinder().find(module)
        assert sum(len(t.examples) for t in tests) > 0, f"fastreg.{name} has no Example"
