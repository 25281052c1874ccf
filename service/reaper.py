"""The reaper: a running job whose worker is gone goes back to the queue within a minute.

Celery redelivers the task of a worker that died only after the broker's visibility
timeout (hours here, so long jobs are not delivered twice), and not at all while the
worker's main process lives on without its pool. The job's own heartbeat says sooner:
the running worker refreshes it every 2 s with a 10 s lifetime. The API process looks
every REAP_EVERY_S at the jobs marked running; one whose heartbeat and lock are gone,
still gone GRACE_S later (Redis may have been restarting, letting keys expire while the
worker was alive and waiting to beat again), is marked `retrying` and its task sent
again: the next worker resumes it from its checkpoint. The Redis-side check and mark is
one script, so several API processes requeue a job once.

A worker can also die after taking a job's task from the queue but before starting it:
the job stays `queued` while its message waits among Celery's unacked ones for the
visibility timeout. A queued job whose task is in neither the queue nor its owner's
parked list for STUCK_QUEUED_S is sent again (a duplicate task is harmless: the job's
lock lets one run, and a finished job's task does nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time

from celery import Celery
from redis.exceptions import RedisError

from aimc_spec.vocabulary import RUN_JOB_TASK
from aimc_store.store import JobStore

log = logging.getLogger(__name__)
REAP_EVERY_S = 5.0
GRACE_S = 10.0
STUCK_QUEUED_S = 60.0  # a queued job whose task is in no queue this long is sent again
FILES_EVERY_S = 600.0


class Reaper:
    """Finds lost jobs and sends them to the queue again (see the module docstring)."""

    def __init__(self, store: JobStore, celery: Celery, queue: str) -> None:
        self.store, self.celery, self.queue = store, celery, queue
        self.missing_since: dict[str, float] = {}  # job id -> when first seen without a beat

    def sweep(self, now: float | None = None) -> list[str]:
        """One pass; the jobs requeued."""
        now = time.monotonic() if now is None else now
        live = self.store.leases.live_jobs()
        silent = [j for j in live if not self.store.leases.alive(j)]
        self.missing_since = {j: self.missing_since.get(j, now) for j in silent}
        requeued = []
        for job_id, since in list(self.missing_since.items()):
            if now - since >= GRACE_S and self.store.leases.requeue_if_lost(job_id):
                self._send(job_id)
                log.warning("job %s: its worker is gone; queued again", job_id)
                requeued.append(job_id)
                del self.missing_since[job_id]
        for job_id in self.store.leases.queued_jobs():
            if self.store.leases.resend_if_stuck(job_id, self.queue, STUCK_QUEUED_S):
                self._send(job_id)
                log.warning("job %s: its task was taken by a worker that died; sent again", job_id)
                requeued.append(job_id)
        return requeued

    def _send(self, job_id: str) -> None:
        self.celery.send_task(RUN_JOB_TASK, args=[job_id], queue=self.queue, ignore_result=True)

    async def run_forever(self) -> None:
        """Sweep every REAP_EVERY_S; every FILES_EVERY_S also delete the artifact files of
        jobs whose retention ended (Redis expires their keys, not the files)."""
        files_due = 0.0
        while True:
            try:
                await asyncio.to_thread(self.sweep)
                if time.monotonic() >= files_due:
                    await asyncio.to_thread(self.store.artifacts.remove_expired_files)
                    files_due = time.monotonic() + FILES_EVERY_S
            except RedisError as exc:  # Redis away: try again next round
                log.warning("reaper: %s", exc)
            await asyncio.sleep(REAP_EVERY_S)
