"""Every ```python block of docs/ runs (the guide's training loops, the contract's examples)."""

from __future__ import annotations

import pytest
from markdown_blocks import ROOT, params, run


@pytest.mark.parametrize("block", params(*sorted((ROOT / "docs").rglob("*.md"))))
def test_docs_block_runs(block):
    run(block)
