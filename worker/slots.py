"""The worker host's stage slots: how many processes its jobs may run at once.

A simulated job runs in one process; a job with `pipeline.executor: processes` runs one
process per stage. So that a lab server is never oversubscribed, a job holds one slot
per process it runs (aimc_spec.slots) out of `worker_slots` per host, and a job that finds
too few free waits in the queue (the task is retried) rather than starting.

A slot is an exclusive `flock` on one of `worker_slots` files in a folder of the host's
(per key prefix): the kernel releases a lock when its last holder exits, so a killed
worker or job process never leaks a slot, and every worker process on the host, of
every Celery worker sharing the folder, counts against the same slots.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class Slots:
    """`total` slots, one lock file each, in `folder`."""

    def __init__(self, folder: Path, total: int) -> None:
        self.folder, self.total = folder, total
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def claim(self, n: int) -> list[int] | None:
        """Lock n free slots; the open files holding them, or None (nothing held) if fewer
        than n are free. The caller closes them (`release`) when its processes end."""
        held: list[int] = []
        for i in range(self.total):
            if len(held) == n:
                break
            fd = os.open(self.folder / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append(fd)
        if len(held) < n:
            self.release(held)
            return None
        return held

    def in_use(self) -> int:
        """Slots held now, by any process on the host."""
        busy = 0
        for i in range(self.total):
            fd = os.open(self.folder / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy += 1
            finally:
                os.close(fd)
        return busy

    @staticmethod
    def release(held: list[int]) -> None:
        for fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)
        held.clear()
