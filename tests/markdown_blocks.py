"""The ```python blocks of the project's Markdown files, as pytest parameters that run them.

A block runs in a fresh namespace, as a script, or through doctest when it starts with ``>>>``.
A first line ``# needs: NAME[, NAME]`` declares what the block needs: ``gpu`` (CuPy and a CUDA
device) or a dotted name such as ``fastreg.augment``; a block whose needs are absent is skipped
with that reason, every other block must run. Each block's test id is ``FILE:LINE`` (the line of
its opening fence), so a failure says which block broke.
"""

from __future__ import annotations

import doctest
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NEEDS = re.compile(r"^# needs: (.+)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def needs(self) -> list[str]:
        match = _NEEDS.match(self.code.splitlines()[0]) if self.code else None
        return [n.strip() for n in match.group(1).split(",")] if match else []


def blocks(*paths: Path) -> list[Block]:
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(path, line, match.group(1)))
    return found


def params(*paths: Path) -> list:
    return [pytest.param(block, id=block.id) for block in blocks(*paths)]


def _present(need: str) -> bool:
    if need == "gpu":
        import fastreg

        return "cupy" in fastreg.available_backends()
    module, _, attribute = need.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attribute)
    except ImportError:
        return False


def run(block: Block) -> None:
    """Run ``block``; fails with its FILE:LINE and the error, skips only for declared needs."""
    missing = [need for need in block.needs if not _present(need)]
    if missing:
        pytest.skip(f"{block.id} needs {', '.join(missing)}, absent here")
    if block.code.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(block.code, {}, block.id, str(block.path),
                                                   block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report: list[str] = []
        runner.run(test, out=report.append)
        assert runner.failures == 0, f"{block.id}: doctest failed\n" + "".join(report)
        return
    try:
        exec(compile(block.code, block.id, "exec"), {"__name__": "__markdown__"})
    except Exception as error:
        raise AssertionError(f"{block.id}: the block raised {type(error).__name__}") from error
