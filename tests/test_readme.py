"""The README's promises: its python blocks run (and print what they claim), its commands and
API lists match the code, so the README cannot drift from the package."""

from __future__ import annotations

import re

import pytest
from markdown_blocks import ROOT, params, run

README = ROOT / "README.md"


@pytest.mark.parametrize("block", params(README))
def test_readme_block_runs(block):
    run(block)


def test_the_torch_example_prints_exact_zeros(capsys):
    pytest.importorskip("torch")
    (block,) = [b.values[0] for b in params(README) if "fastreg.torch as ft" in b.values[0].code]
    run(block)
    zeros = int(re.search(r"(\d+) parameters exactly zero", capsys.readouterr().out).group(1))
    assert zeros > 0


def test_command_one_installs_the_bench_peers_with_the_torch_pin():
    text = README.read_text(encoding="utf-8")
    assert 'pip install ".[bench]" "torch==2.13.0" && python -m fastreg bench' in text
    # (tomllib is Python 3.11+; the package supports 3.10)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (bench,) = re.findall(r"^bench = \[(.*)\]$", pyproject, re.M)
    peers = {re.split(r"[<>=!~ \[]", r.strip().strip('"'))[0] for r in bench.split(",")}
    assert {"torch", "kornia"} <= peers


def test_every_fastreg_torch_name_is_listed():
    torch_module = pytest.importorskip("fastreg.torch")
    text = README.read_text(encoding="utf-8")
    for name in torch_module.__all__:
        assert f"`{name}" in text, f"README does not list fastreg.torch.{name}"


def test_the_readme_cites_docs_that_exist():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link
    assert "SPEC §" not in text and "the project's SPEC" not in text
