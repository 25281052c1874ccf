"""Jobs: creation under the queued limit, state changes (with their events, the per-user
live sets and the statistics), the fields a worker updates (progress, checkpoint), the
cancel flag, deletion, and idempotency keys."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aimc_spec.vocabulary import STATES, TERMINAL, JobState
from aimc_store.artifacts import Artifacts
from aimc_store.base import Backend, Part
from aimc_store.keys import LIVE, hash_key
from aimc_store.records import Job, StateChange
from aimc_store.stats import observe_duration


class Jobs(Part):
    """`store.jobs`: every job's record and the streams and flags that go with it."""

    def __init__(self, backend: Backend, artifacts: Artifacts) -> None:
        super().__init__(backend)
        self.artifacts = artifacts  # deleting a job deletes its artifact files

    def create(self, owner: str, spec: dict[str, Any]) -> str:
        """A queued job (no limit checked; no task sent, so the reaper does not watch
        it while queued: the caller sends one if it wants the job run); its id."""
        job = self.admit(owner, spec, None, watched=False)
        if job is None:  # no limit, so the script always creates it
            raise RuntimeError("CREATE_JOB refused a job without a limit")
        return job.id

    def admit(
        self, owner: str, spec: dict[str, Any], max_queued: int | None, *, watched: bool = True
    ) -> Job | None:
        """Create a queued job unless the owner already has `max_queued` queued; the job
        or None. One atomic round trip: concurrent submits cannot overshoot the limit,
        and the caller needs no read-back."""
        job = self.new(owner, spec)
        return job if self.create_on(self.r, job, max_queued, watched) else None

    @staticmethod
    def new(owner: str, spec: dict[str, Any]) -> Job:
        """The record of a job about to be queued (a fresh id, created now)."""
        return Job(
            id=uuid.uuid4().hex,
            owner=owner,
            name=spec.get("name", ""),
            spec=spec,
            state=JobState.QUEUED,
            progress=0.0,
            attempts=0,
            created=time.time(),
        )

    def create_on(self, client: Any, job: Job, max_queued: int | None, watched: bool = True) -> Any:
        """Run CREATE_JOB for `job` on `client`: the Redis client (1 if created, 0 if the
        queued limit is full) or a pipeline (the call is queued; the pipeline's result)."""
        return self.scripts.create_job(
            keys=[
                self.key("job", job.id),
                self.key("user", job.owner, "jobs"),
                self.key("job", job.id, "events"),
                self.key("stats", "transitions"),
                self.key("user", job.owner, "in", JobState.QUEUED),
                self.key("in", JobState.QUEUED),
            ],
            args=[
                max_queued if max_queued is not None else -1,
                job.id,
                job.owner,
                job.name,
                json.dumps(job.spec),
                repr(job.created),
                "1" if watched else "0",
            ],
            client=client,
        )

    def get(self, job_id: str) -> Job | None:
        return Job.from_hash(job_id, self.r.hgetall(self.key("job", job_id)))

    def count_in(self, owner: str, state: JobState) -> int:
        """How many of the owner's jobs are in a live state, without reading every job."""
        return int(self.r.scard(self.key("user", owner, "in", state)))

    def set_state(self, job_id: str, state: JobState, **fields: Any) -> None:
        """Move a job to `state` and record the change as an event; a final state also
        counts the run time, drops the checkpoint and starts the retention."""
        if state not in STATES:  # an outcome (parked, ...) or a caller without types
            raise ValueError(f"unknown job state {state!r}; one of {', '.join(STATES)}")
        now = time.time()
        mapping: dict[str, Any] = {"state": state, **fields}
        if state == JobState.RUNNING:
            mapping.setdefault("started", now)
            mapping["requeued"] = 0  # a worker holds it: it may be requeued if lost again
        if state in TERMINAL:
            mapping["finished"] = now
        owner, started = self.r.hmget(self.key("job", job_id), ["owner", "started"])
        pipe = self.r.pipeline()
        if state in TERMINAL and started is not None:
            observe_duration(pipe, self.key("stats", "durations"), state, now - float(started))
        pipe.hset(self.key("job", job_id), mapping=mapping)
        pipe.xadd(self.key("job", job_id, "events"), {"state": state, "t": now})
        pipe.hincrby(self.key("stats", "transitions"), state, 1)
        for live in LIVE:
            pipe.srem(self.key("in", live), job_id)
        if state in LIVE:
            pipe.sadd(self.key("in", state), job_id)
        if owner is not None:
            for live in LIVE:
                pipe.srem(self.key("user", owner.decode(), "in", live), job_id)
            if state in LIVE:
                pipe.sadd(self.key("user", owner.decode(), "in", state), job_id)
        if state in TERMINAL:
            pipe.delete(self.key("job", job_id, "checkpoint"))  # never resumed again
        if state in TERMINAL and self.backend.retention_s:
            for key in self._job_keys(job_id):
                pipe.expire(key, self.backend.retention_s)
        pipe.execute()

    def _job_keys(self, job_id: str) -> list[str]:
        """Every key of one job, its artifacts' included."""
        names = self.r.smembers(self.key("job", job_id, "artifacts"))
        return self.keys.job_keys(job_id, sorted(n.decode() for n in names))

    def events(self, job_id: str) -> list[StateChange]:
        """The job's state changes, oldest first."""
        entries = self.r.xrange(self.key("job", job_id, "events"))
        return [StateChange(JobState(f[b"state"].decode()), float(f[b"t"])) for _, f in entries]

    def delete(self, job_id: str) -> None:
        """Remove a job, its streams, artifacts (files too) and its place in its owner's
        sets."""
        job = self.get(job_id)
        if job is None:
            return
        self.artifacts.remove_files(job_id)
        pipe = self.r.pipeline()
        pipe.delete(*self._job_keys(job_id))
        pipe.zrem(self.key("user", job.owner, "jobs"), job_id)
        for live in LIVE:
            pipe.srem(self.key("user", job.owner, "in", live), job_id)
            pipe.srem(self.key("in", live), job_id)
        pipe.execute()

    def add_attempt(self, job_id: str) -> int:
        return int(self.r.hincrby(self.key("job", job_id), "attempts", 1))

    def set_progress(self, job_id: str, progress: float) -> None:
        self.r.hset(self.key("job", job_id), "progress", progress)

    def set_engine_pid(self, job_id: str, pid: int) -> None:
        """The process running the job's engine (forked per job), for operators."""
        self.r.hset(self.key("job", job_id), "engine_pid", pid)

    def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        self.r.hset(self.key("job", job_id), "result", json.dumps(result))

    # checkpoint and cancel ---------------------------------------------------
    def put_checkpoint(self, job_id: str, blob: bytes) -> None:
        self.r.set(self.key("job", job_id, "checkpoint"), blob)

    def checkpoint(self, job_id: str) -> bytes | None:
        blob = self.r.get(self.key("job", job_id, "checkpoint"))
        return bytes(blob) if blob is not None else None

    def mark_resumed(self, job_id: str) -> None:
        """Count a run that continued from the checkpoint (`resumes` in the job's hash)."""
        self.r.hincrby(self.key("job", job_id), "resumes", 1)

    def request_cancel(self, job_id: str) -> None:
        self.r.set(self.key("job", job_id, "cancel"), 1)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self.key("job", job_id, "cancel")))

    # idempotency -----------------------------------------------------------
    def idempotent(self, user: str, key: str) -> tuple[str, str] | None:
        """(body digest, id of the job or sweep made) remembered for this user's
        Idempotency-Key, if any."""
        raw = self.r.get(self.key("idem", user, hash_key(key)))
        if raw is None:
            return None
        digest, made = raw.decode().split(" ")
        return digest, made

    def remember_idempotent(self, user: str, key: str, digest: str, made: str, ttl_s: int) -> None:
        self.r.set(self.key("idem", user, hash_key(key)), f"{digest} {made}", ex=ttl_s)
