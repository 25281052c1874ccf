"""The worker starts torch with OpenMP waiting passively (aimc_engine/threads.py): a
waiting thread sleeps instead of spinning on a core another process needs."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli_threads import PASSIVE, started_with


def test_the_worker_starts_torch_with_passive_waiting(tmp_path: Path) -> None:
    """The worker's start-up (Celery's worker_init, before the pool and job processes
    fork from it) is what first imports torch in a worker."""
    code = "from worker.app import _preload; _preload()"
    assert PASSIVE in started_with(tmp_path, ["-c", code], AIMC_WORKER_NICE="0")
