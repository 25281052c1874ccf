"""`aimc run` starts torch with OpenMP waiting passively
(aimc_engine/threads.py): a waiting thread sleeps instead of spinning on a core another
process needs. OpenMP's spin count tells it (0 only when passive: its OMP_WAIT_POLICY
line reads PASSIVE for an unset policy too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

PASSIVE = "GOMP_SPINCOUNT = '0'"


def started_with(tmp_path: Path, argv: list[str], **env: str) -> str:
    """What OpenMP reports it read in the process `argv` starts (OMP_DISPLAY_ENV)."""
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, *argv],
        env={**base, "OMP_DISPLAY_ENV": "verbose", "AIMC_CACHE_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr + done.stdout


def test_aimc_run_starts_torch_with_passive_waiting(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"training": {"steps": 2, "eval_every": 2}}))
    argv = ["-m", "aimc_cli", "run", str(spec), "--out", str(tmp_path / "out"), "--quiet"]
    assert PASSIVE in started_with(tmp_path, argv)
    # a policy the user set wins
    assert PASSIVE not in started_with(tmp_path, argv, OMP_WAIT_POLICY="active")
