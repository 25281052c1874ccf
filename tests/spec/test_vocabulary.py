"""Job states are a type: JobState names every state and outcome once, in
aimc_spec/vocabulary.py, and no other module of the store, the API, the client, the CLI
or the spec and study packages spells one as a bare string."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from aimc_spec.vocabulary import STATES, TERMINAL, JobState
from tests.conftest import ROOT

PACKAGES = ("aimc_spec", "aimc_study", "aimc_store", "service", "aimc_client", "aimc_cli", "worker")
VOCABULARY = ROOT / "aimc_spec" / "vocabulary.py"
MARKER = "# not a job state"  # a string that only looks like one (a CSV column's name)
NAMES = {state.value for state in JobState}


def state_literals(path: Path) -> list[tuple[int, str]]:
    """(line, string) of each string constant in the module that is a state's or an
    outcome's name: docstrings and lines marked MARKER aside."""
    text = path.read_text()
    tree = ast.parse(text, str(path))
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docstrings.add(id(body[0].value))
    lines = text.splitlines()
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in NAMES
        and id(node) not in docstrings
        and MARKER not in lines[node.lineno - 1]
    ]


def test_every_state_and_outcome_is_named_once() -> None:
    assert [s.value for s in STATES] == [
        "queued",
        "running",
        "retrying",
        "lost",
        "succeeded",
        "failed",
        "cancelled",
    ]
    outcomes = [s for s in JobState if not s.is_stored]
    assert outcomes == [JobState.PARKED, JobState.SUPERSEDED, JobState.MISSING, JobState.EXPIRED]
    assert [s for s in JobState if s.is_terminal] == list(TERMINAL)
    assert TERMINAL == ("succeeded", "failed", "cancelled")  # members are their strings
    assert not JobState.PARKED.is_terminal and not JobState.RUNNING.is_terminal


def test_a_state_prints_and_serialises_as_its_name() -> None:
    assert f"job {JobState.CANCELLED}" == "job cancelled"
    assert json.dumps({"state": JobState.LOST}) == '{"state": "lost"}'
    assert JobState("queued") is JobState.QUEUED and "queued" in STATES
    assert {"failed": 1}[JobState.FAILED] == 1


def test_the_scan_finds_a_literal_but_not_a_docstring(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""Says queued."""\n'
        "def f(job):\n"
        '    """running"""\n'
        '    return job.state == "queued"\n'
        'COLUMN = "failed"  ' + MARKER + "\n"
    )
    assert state_literals(module) == [(4, "queued")]


def test_no_state_literal_outside_the_vocabulary_module() -> None:
    over = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found = state_literals(path) if path != VOCABULARY else []
            if found:
                over[path.relative_to(ROOT).as_posix()] = found
    assert not over, f"use aimc_spec.vocabulary.JobState instead of these literals: {over}"
