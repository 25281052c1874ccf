"""run_in_fresh_process: the work runs in another process; exit codes and signals."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from worker.fresh_process import run_in_fresh_process


def test_the_work_runs_in_a_process_of_its_own(tmp_path: Path) -> None:
    marker = tmp_path / "pid"

    def work() -> int:
        marker.write_text(f"{os.getpid()} {os.getppid()}")
        return 7

    assert run_in_fresh_process(work) == 7
    pid, parent = map(int, marker.read_text().split())
    assert pid != os.getpid() and parent == os.getpid()


def test_an_exception_exits_1_and_a_signal_is_reported() -> None:
    def fails() -> int:
        raise RuntimeError("boom")

    assert run_in_fresh_process(fails) == 1

    def killed() -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    assert run_in_fresh_process(killed) == -signal.SIGKILL
