"""Each job's engine work runs in a process forked for it alone.

service.md asks for a fresh process per job (worker_max_tasks_per_child=1) so one job's
leaked memory or torch state never reaches the next. Celery's way, replacing the pool
process after every task, idles the worker 1-4 s between jobs (billiard waits 1 s in
every exiting child before the pool starts and hands over a new one). Forking the job
from the pool process gives the same isolation in ~10 ms: the pool process has only
imported torch and never runs a torch op, so the fork is safe, and the job's process
inherits the imported modules and warmed matplotlib copy-on-write.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable

from worker.memory_limit import limit_memory
from worker.settings import get_settings

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # linux/prctl.h: a signal for this process when its parent dies


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the pool process dies (kill -9, hard time limit), so a
    redelivered job never runs next to an orphan of its first attempt (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_in_fresh_process(
    work: Callable[[], int],
    *,
    started: Callable[[int], None] | None = None,
    memory_limit_mib: int | None = None,
) -> int:
    """Fork; the new process runs `work` and exits with its return value (1 if it raised,
    logged). Returns that exit code, or -N if signal N killed the process. `started`
    gets the new process's id. The new process may map `memory_limit_mib` more than
    the caller (worker/memory_limit.py; by default the workers' job_max_memory_mib). If
    the caller is interrupted while waiting (soft time limit, shutdown), the job's
    process is killed first, then the interruption goes on."""
    parent = os.getpid()
    if memory_limit_mib is None:
        memory_limit_mib = get_settings().job_max_memory_mib
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _die_with_parent(parent)
            limit_memory(memory_limit_mib)
            code = work()
        except BaseException:
            log.exception("the job's process failed")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    if started is not None:
        started(pid)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status)
