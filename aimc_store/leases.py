"""A worker's lease on the job it runs: the owner's running slots, the job's lock and
heartbeat, and the reaper's checks for jobs whose worker or task was lost (the job's
checkpoint and cancel flag are the job's own: aimc_store.jobs)."""

from __future__ import annotations

import time

from aimc_spec.vocabulary import JobState
from aimc_store.base import Part
from aimc_store.fair_share import queue_lists


class Leases(Part):
    """`store.leases`: who may run a job now, and who still does."""

    # running slots -----------------------------------------------------------
    def claim_slot(self, owner: str, job_id: str, limit: int) -> bool:
        """True if the job may run now (under its owner's running limit, or already
        holding a slot after a redelivery); else the job is parked, still queued, until
        `free_slots` hands it back. Atomic, so two workers cannot both take the last slot;
        and nothing polls: a parked job costs no worker time while it waits."""
        keys = self.keys.slot_keys(owner)
        return bool(self.scripts.claim_slot(keys=keys, args=[job_id, limit]))

    def free_slots(self, owner: str, limit: int) -> list[str]:
        """Parked jobs of the owner that now fit under the limit, oldest first (removed from
        the parked list: the caller queues them again)."""
        popped = self.scripts.free_slots(keys=self.keys.slot_keys(owner), args=[limit])
        return [j.decode() for j in popped]

    # lock and heartbeat ------------------------------------------------------
    def take_lock(self, job_id: str, holder: str, ttl_s: int) -> bool:
        """True if `holder` now runs the job; False if another worker holds it."""
        return bool(self.r.set(self.key("job", job_id, "lock"), holder, nx=True, ex=ttl_s))

    def release_lock(self, job_id: str, holder: str) -> None:
        """Drop the job's lock if `holder` still holds it (not one another worker took)."""
        self.scripts.release(keys=[self.key("job", job_id, "lock")], args=[holder])

    def beat(self, job_id: str, holder: str, ttl_s: int) -> bool:
        """The running worker is alive: refresh its heartbeat and its lock (taken again if
        it expired while Redis was away). False if another worker holds the lock now: the
        job was given up for lost and runs elsewhere, so this run must stop."""
        keys = [self.key("job", job_id, "lock"), self.key("job", job_id, "heartbeat")]
        return bool(self.scripts.beat(keys=keys, args=[holder, ttl_s]))

    def alive(self, job_id: str) -> bool:
        return bool(self.r.exists(self.key("job", job_id, "heartbeat")))

    # the reaper's view -------------------------------------------------------
    def live_jobs(self) -> list[str]:
        """Jobs now running or retrying, of every user (the reaper looks at these)."""
        ids = self.r.sunion([self.key("in", JobState.RUNNING), self.key("in", JobState.RETRYING)])
        return sorted(j.decode() for j in ids)

    def queued_jobs(self) -> list[str]:
        """Jobs now queued, of every user."""
        return sorted(j.decode() for j in self.r.smembers(self.key("in", JobState.QUEUED)))

    def resend_if_stuck(self, job_id: str, queue: str, min_age_s: float) -> bool:
        """True if the queued job's task is nowhere (see scripts.RESEND_STUCK) and the
        caller should send it again; notes the time, so it is re-sent at most every
        min_age_s."""
        owner = self.r.hget(self.key("job", job_id), "owner")
        if owner is None:
            return False
        keys = [self.key("job", job_id), self.key("user", owner.decode(), JobState.PARKED)]
        keys += queue_lists(queue)  # the queue's list of each priority
        return bool(
            self.scripts.resend_stuck(keys=keys, args=[repr(time.time()), min_age_s, job_id])
        )

    def requeue_if_lost(self, job_id: str) -> bool:
        """Mark a running job whose worker is gone (no heartbeat, no lock) `retrying`, once;
        True if the caller should now send its task again. Atomic: of several API
        processes reaping at once, one requeues it."""
        owner = self.r.hget(self.key("job", job_id), "owner")
        if owner is None:
            return False
        u = owner.decode()
        keys = [
            self.key("job", job_id),
            self.key("job", job_id, "heartbeat"),
            self.key("job", job_id, "lock"),
            self.key("job", job_id, "events"),
            self.key("stats", "transitions"),
            self.key("user", u, "in", JobState.RUNNING),
            self.key("user", u, "in", JobState.RETRYING),
            self.key("in", JobState.RUNNING),
            self.key("in", JobState.RETRYING),
        ]
        return bool(self.scripts.requeue(keys=keys, args=[repr(time.time()), job_id]))
