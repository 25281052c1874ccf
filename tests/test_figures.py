"""docs/figures.md is what `python benchmarks/figures.py` writes: one section per
benchmark it lists, each stamped with the aimc version and commit that produced it and
naming its command (the page is never edited by hand)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import ROOT


def figures_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("figures", ROOT / "benchmarks" / "figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["figures"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_the_page_lists_exists() -> None:
    figures = figures_module()
    for figure in figures.FIGURES:
        assert (ROOT / figure.args[0]).is_file(), figure


def test_the_page_has_one_stamped_section_per_benchmark() -> None:
    figures = figures_module()
    text = (ROOT / "docs" / "figures.md").read_text()
    found = figures.sections(text)
    assert sorted(found) == sorted(f.name for f in figures.FIGURES)
    for figure in figures.FIGURES:
        section = found[figure.name]
        assert figures.stamped_version(section) is not None, figure.name
        assert f"`{figure.command}`" in section, figure.name


def test_a_stamp_names_its_version() -> None:
    figures = figures_module()
    section = "\n".join(
        [
            figures.BEGIN.format("x"),
            "## X",
            "",
            "aimc 0.5.0 (commit abc1234), 2026-12-07, 2 cores, cpu, load average 0.1 before",
            figures.END.format("x"),
        ]
    )
    assert figures.stamped_version(section) == "0.5.0"
    assert figures.stamped_version("no stamp") is None
