"""A study's run folders: DIR/runs/<job>/ holding result.json and metrics.jsonl, written
under a temporary name and renamed when complete.

So a folder with a result.json is a finished job (of the spec it records): an interrupted
study run again runs only what is missing, and local and remote studies leave the same
folders behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from aimc_spec.spec import JobSpec
from aimc_study.plan import StudyJob

PARTIAL = ".partial"  # suffix of a run folder being written


def _same_spec(result: dict[str, Any], spec: JobSpec) -> bool:
    """Whether a finished run was of this spec (names aside: the service names sweep jobs)."""
    ran = dict(result.get("spec") or {})
    want = json.loads(json.dumps(spec.normalised()))
    ran.pop("name", None)
    want.pop("name", None)
    return ran == want


def finished(runs_dir: Path, job: StudyJob) -> bool:
    """Whether the job's run folder holds a complete run of the job's present spec."""
    result = read_result(runs_dir / job.label)
    return result is not None and _same_spec(result, job.spec)


def commit_folder(partial: Path, final: Path) -> None:
    """Make a completely written run folder the job's folder (a rename: all or nothing)."""
    if final.exists():
        shutil.rmtree(final)  # a run of an older version of the study
    partial.rename(final)


def read_result(folder: Path) -> dict[str, Any] | None:
    """A run folder's result.json, or None if it is missing or incomplete."""
    try:
        data = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None
