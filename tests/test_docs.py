"""The docs: pages the code cites exist, the site builds with --strict, the README stays short.

Docstrings and comments cite design pages by file name ("analog-model.md section 3");
each such page must exist in docs/, or the citation points nowhere.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import PACKAGES, ROOT

CITATION = re.compile(r"\b([A-Za-z0-9][A-Za-z0-9_-]*)\.md\b")
# Markdown files the code writes rather than cites: a study's report in its --out folder.
WRITTEN = {"report"}
README_MAX_LINES = 250


def docstrings_and_comments(source: str) -> list[str]:
    """The text of every module, class and function docstring and every comment."""
    tree = ast.parse(source)
    texts = [
        doc
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and (doc := ast.get_docstring(node))
    ]
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    texts += [t.string for t in tokens if t.type == tokenize.COMMENT]
    return texts


def cited_pages() -> dict[str, list[str]]:
    """Each cited page's name -> the files citing it."""
    cited: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for text in docstrings_and_comments(path.read_text()):
                for name in CITATION.findall(text):
                    if name not in WRITTEN:
                        cited.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return cited


def test_the_scan_sees_docstrings_and_comments() -> None:
    source = '"""See pipeline.md."""\n\n\ndef f() -> None:\n    """service.md"""\n# job-spec.md\n'
    texts = " ".join(docstrings_and_comments(source))
    assert CITATION.findall(texts) == ["pipeline", "service", "job-spec"]


def test_every_page_the_code_cites_exists() -> None:
    cited = cited_pages()
    # the design pages the engine, spec and service cite today; a scan finding none of
    # them would be broken rather than clean
    assert {"analog-model", "pipeline", "service", "job-spec"} <= set(cited)
    missing = {
        name: files for name, files in cited.items() if not (ROOT / "docs" / f"{name}.md").exists()
    }
    assert not missing, f"cited in the code, missing from docs/: {missing}"


def test_readme_stays_short_and_keeps_its_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; at most {README_MAX_LINES}: move detail into docs/"
    )
    assert "pip install -e . && aimc serve" in readme
    assert "bash .ci/run" in readme


def test_readme_links_into_docs_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert targets
    assert [t for t in targets if not (ROOT / t).exists()] == []


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_spec_reference_has_a_row_for_every_field() -> None:
    """The generated tables walk every nested model: one row per field; a union's
    (device families, unit cells) shared fields once, each member's own in its section."""
    from pydantic import BaseModel

    from aimc_spec.devices import DEVICE_MODELS
    from aimc_spec.spec import JobSpec

    hooks = load_hooks()

    def fields(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            if name in skip:
                continue
            out.append(name)
            subs = list(hooks.models_in(field.annotation))
            shared = frozenset(common_base(subs).model_fields) if len(subs) > 1 else frozenset()
            out += [*shared] + [f for sub in subs for f in fields(sub, shared)]
        return out

    def common_base(subs: list[type[BaseModel]]) -> type[BaseModel]:
        return next(c for c in subs[0].__mro__ if all(issubclass(m, c) for m in subs))

    text = hooks.job_spec()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(fields(JobSpec))
    assert any(row.startswith("| `compensation` |") for row in rows)
    for model in DEVICE_MODELS:
        assert f"### `analog.device` with `model: {model}`" in text
    for kind in ("one_sided", "vector"):
        assert f"### `analog.unit_cell` with `kind: {kind}`" in text
    linear = text.split("with `model: linear`")[1].split("###")[0]
    assert all(f"| `{name}` |" in linear for name in ("gamma", "gamma_down", "d2d_gamma"))


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_site_builds_strict(tmp_path: Path) -> None:
    """A broken link, anchor or generated page fails the build."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    def page(name: str) -> str:
        return (tmp_path / name / "index.html").read_text()

    assert "latency_ns" in page("job-spec")  # a nested field: the walk went deep
    assert "/v1/jobs/{job_id}/events" in page("http-api")
    assert "usage: aimc study" in page("cli")  # every subcommand has its usage
    assert "wait_sweep" in page("client")  # from the client's docstrings
    assert "AIMC_WORKER_NICE" in page("settings")
