"""Size rules: no production module over 400 lines, no function over 60 lines.

A module or function past these has grown past what a reader holds at once; split it
by concept (docs/service.md, the architecture). The test reads every module of the
packages with `ast`, so it needs neither ruff nor a running service.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PACKAGES, ROOT

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    found = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(found) > 50  # the packages are there: an empty scan would pass anything
    return found


def test_no_module_is_over_400_lines() -> None:
    long = {}
    for path in modules():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            long[str(path.relative_to(ROOT))] = lines
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them): {long}"
