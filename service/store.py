"""The Redis store of jobs: every Redis key the API and the workers use lives here.

Layout (all under `settings.key_prefix`):
  job:{id}                hash: owner, name, spec (normalised JSON), state, progress,
                          attempts, created/started/finished, error, result (JSON)
  job:{id}:metrics        stream of metric points (XADD; one entry per point, in order)
  job:{id}:events         stream of state changes
  job:{id}:artifact:{n}   bytes of one small artifact; job:{id}:artifacts set of names;
                          job:{id}:files hash name -> bytes of the big ones, kept as
                          files in the artifact store (settings.artifact_dir) under
                          {prefix}/{job id}/{name}
  job:{id}:cancel         flag, set by a cancel request, read by the worker each step
  job:{id}:lock           held by the worker running the job (a job never runs twice);
                          expires unless the heartbeat refreshes it
  job:{id}:heartbeat      set every few seconds by the running worker (TTL): none = lost
  job:{id}:checkpoint     the engine's latest checkpoint (bytes), for a redelivered job;
                          deleted when the job ends
  user:{u}:jobs           sorted set of the user's job ids by creation time
  user:{u}:in:{state}     set of the user's jobs now queued / running / retrying
                          (the queued and running limits count these); in:{state} the
                          same over all users (the reaper scans running and retrying)
  user:{u}:parked         list of queued jobs a worker set aside because the user had
                          max_running_jobs running; handed back as slots free up
  user:{u}:datasets       sorted set of the user's dataset ids by upload time
  user:{u}:sweeps         sorted set of the user's sweep ids by creation time
  dataset:{id}            hash: owner, name, created, bytes, info (JSON: sizes, shape,
                          classes); dataset:{id}:data the .npz bytes (kept until deleted)
  sweep:{id}              hash: owner, name, created, grid (JSON), members (JSON list of
                          {job id, overrides}); sweep:{id}:plot the overlay PNG once done
  user:{u}                hash: name, created, key (the sha256 of their key);
                          key:{sha256} -> user id; username:{name} -> user id (names
                          are unique); users: sorted set of user ids by creation
  idem:{u}:{sha256(key)}  "body-digest job-id" for an Idempotency-Key, 24 h
  rate:{u}:{minute}       requests in one minute (rate limit), 2 min; counted by the
                          AUTHENTICATE script together with the key lookup
  stats:transitions       hash: state -> times a job entered it (Prometheus)
  stats:durations         hash: "{state}|{bound}" -> finished jobs that ran <= bound
                          seconds, "{state}|sum" -> their total (a histogram)
Finished jobs' keys expire after the retention (`retention_s`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from aimc_spec.vocabulary import STATES, TERMINAL

LIVE = ("queued", "running", "retrying")  # states whose jobs are counted per user
INLINE_MAX_BYTES = 256 * 1024  # larger artifacts go to the artifact store, if there is one
RECONNECT_CAP_S = 1.0  # longest pause between two reconnect attempts of a patient store
# upper bounds (s) of the job-duration histogram: seconds-long smoke tests to day-long runs
DURATION_BUCKETS_S = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


# KEYS[1] = key:{sha256}; ARGV = rate key prefix, minute. Returns {user, requests this
# minute} or nil. The rate key is named from the looked-up user, so this runs on one
# Redis (not a cluster), which is what the service uses.
_COUNT_CALLER = """
local user = redis.call('GET', KEYS[1])
if not user then return nil end
local rate = ARGV[1] .. user .. ':' .. ARGV[2]
local count = redis.call('INCR', rate)
if count == 1 then redis.call('EXPIRE', rate, 120) end
"""
AUTHENTICATE = _COUNT_CALLER + "return {user, count}\n"


# KEYS = job hash, user's jobs zset, job events stream, stats transitions, user's queued
# set, everyone's queued set; ARGV = queued limit (-1: none), job id, owner, name, spec
# JSON, created, watched (1: the reaper watches it, see resend_if_stuck). 1 if the job
# was created, 0 if the owner already had `limit` queued.
CREATE_JOB = """
local limit = tonumber(ARGV[1])
if limit >= 0 and redis.call('SCARD', KEYS[5]) >= limit then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'name', ARGV[4], 'spec', ARGV[5],
           'state', 'queued', 'progress', '0.0', 'attempts', '0', 'created', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'state', 'queued', 't', ARGV[6])
redis.call('HINCRBY', KEYS[4], 'queued', 1)
redis.call('SADD', KEYS[5], ARGV[2])
if ARGV[7] == '1' then redis.call('SADD', KEYS[6], ARGV[2]) end
return 1
"""

# KEYS = user's running set, retrying set, parked list; ARGV = job id, limit. 1 if the
# job may run now (it holds a slot: the running set counts it), 0 if it was parked.
CLAIM_SLOT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) + redis.call('SCARD', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  return 1
end
redis.call('LREM', KEYS[3], 0, ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[1])
return 0
"""

# KEYS = user's running set, retrying set, parked list; ARGV = limit. Pops as many parked
# jobs as there are free slots, oldest first.
FREE_SLOTS = """
local free = tonumber(ARGV[1]) - redis.call('SCARD', KEYS[1]) - redis.call('SCARD', KEYS[2])
if free <= 0 then return {} end
return redis.call('LPOP', KEYS[3], free) or {}
"""


# KEYS = metrics stream; ARGV = step, point JSON. Adds the point only after a lower step.
ADD_METRIC = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local fields = last[1][2]
  if tonumber(cjson.decode(fields[2])['step']) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
return 1
"""

# KEYS = lock, heartbeat; ARGV = holder, ttl. Refreshes both while the holder holds the
# lock (taking it again if it expired, e.g. while Redis restarted); 0 if another worker
# holds it now: this run must stop, the job belongs to the other.
BEAT = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS = job hash, owner's parked list, the Celery queue (a list); ARGV = now, minimum
# age (s), job id. A queued job whose task is nowhere to be found: not in the queue, not
# parked, queued (or last re-sent) over the minimum age ago. Its message was taken by a
# worker that died before it started the job, so it sits among Celery's unacked
# messages until the visibility timeout (hours). 1 (and the time noted) if the caller
# should send the task again; a second task for a job is harmless (the job's lock).
RESEND_STUCK = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
local since = redis.call('HGET', KEYS[1], 'resent') or redis.call('HGET', KEYS[1], 'created')
since = tonumber(since)
if tonumber(ARGV[1]) - since < tonumber(ARGV[2]) then return 0 end
if redis.call('LPOS', KEYS[2], ARGV[3]) then return 0 end
for _, message in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
  if string.find(message, ARGV[3], 1, true) then return 0 end
end
redis.call('HSET', KEYS[1], 'resent', ARGV[1])
return 1
"""

# KEYS = lock; ARGV = holder. Deletes the lock only if the holder holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS = job hash, heartbeat, lock, events stream, transitions, owner's running set,
# owner's retrying set, global running set, global retrying set; ARGV = now, job id. Puts a
# running job whose worker is gone (no heartbeat, no lock) back as `retrying`, once:
# 1 if it did (the caller sends the task again), 0 if the job is alive or not running.
REQUEUE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' and state ~= 'retrying' then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if state == 'retrying' and tonumber(redis.call('HGET', KEYS[1], 'requeued') or '0') > 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'retrying', 'requeued', ARGV[1])
redis.call('XADD', KEYS[4], '*', 'state', 'retrying', 't', ARGV[1])
redis.call('HINCRBY', KEYS[5], 'retrying', 1)
redis.call('SREM', KEYS[6], ARGV[2])
redis.call('SADD', KEYS[7], ARGV[2])
redis.call('SREM', KEYS[8], ARGV[2])
redis.call('SADD', KEYS[9], ARGV[2])
return 1
"""

# AUTHENTICATE, then the job's hash, latest metric point and heartbeat: the status
# route's whole read in one round trip. ARGV 3 = the job's key (prefix + job:{id}).
AUTHENTICATED_JOB_VIEW = (
    _COUNT_CALLER
    + """
local job = ARGV[3]
return {user, count, redis.call('HGETALL', job),
        redis.call('XREVRANGE', job .. ':metrics', '+', '-', 'COUNT', 1),
        redis.call('EXISTS', job .. ':heartbeat')}
"""
)


def fail_fast() -> Retry:
    """The API's retry on a lost Redis connection: two quick tries (a dropped idle
    connection), then the error, which the API answers with 503 + Retry-After at once
    instead of holding the request for seconds (redis-py's default: 10 tries)."""
    return Retry(ExponentialBackoff(cap=0.1, base=0.02), 2)


def hash_key(api_key: str) -> str:
    """Keys are stored only as their SHA-256: a dump of Redis reveals no usable key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class JobStore:
    """Typed access to jobs, metrics, artifacts, cancel flags and users in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "aimc:",
        retention_s: int | None = None,
        *,
        artifact_dir: Path | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> None:
        self.r = client
        self.p = prefix
        self.retention_s = retention_s  # finished jobs expire after this; None keeps them
        # artifacts above inline_max_bytes go to files under artifact_dir (None: all in
        # Redis, for a worker on a host that does not share the artifact store)
        self.artifact_dir = artifact_dir
        self.inline_max_bytes = inline_max_bytes
        self._create_job = client.register_script(CREATE_JOB)
        self._claim_slot = client.register_script(CLAIM_SLOT)
        self._free_slots = client.register_script(FREE_SLOTS)
        self._add_metric = client.register_script(ADD_METRIC)
        self._beat = client.register_script(BEAT)
        self._requeue = client.register_script(REQUEUE)
        self._release = client.register_script(RELEASE)
        self._resend_stuck = client.register_script(RESEND_STUCK)

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "aimc:",
        retention_s: int | None = None,
        *,
        patient_s: float = 0.0,
        artifact_dir: Path | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> JobStore:
        """A store on `url`. With `patient_s`, every command waits up to about that long
        for an unreachable Redis to come back (a restart) instead of failing: what a
        running job wants; the API fails fast instead and answers 503."""
        retry = fail_fast()
        if patient_s > 0:
            retries = max(1, int(patient_s / RECONNECT_CAP_S))
            retry = Retry(ExponentialBackoff(cap=RECONNECT_CAP_S, base=0.05), retries)
        client = redis.Redis.from_url(url, decode_responses=False, retry=retry)
        return cls(
            client,
            prefix,
            retention_s,
            artifact_dir=artifact_dir,
            inline_max_bytes=inline_max_bytes,
        )

    def key(self, *parts: str) -> str:
        """The full Redis key of `parts` (e.g. "job", id, "metrics") under the prefix."""
        return self.p + ":".join(parts)

    # users -----------------------------------------------------------------
    def create_user(self, name: str) -> tuple[str, str] | None:
        """A new user; returns (user id, API key), or None if the name is taken. The key is
        shown once and stored hashed."""
        user_id = uuid.uuid4().hex[:12]
        if not self.r.set(self.key("username", name), user_id, nx=True):
            return None
        api_key = "aimc_" + secrets.token_urlsafe(24)
        hashed = hash_key(api_key)
        pipe = self.r.pipeline()
        pipe.hset(
            self.key("user", user_id), mapping={"name": name, "created": time.time(), "key": hashed}
        )
        pipe.set(self.key("key", hashed), user_id)
        pipe.zadd(self.key("users"), {user_id: time.time()})
        pipe.execute()
        return user_id, api_key

    def users(self) -> list[dict[str, Any]]:
        """Every user (id, name, created), oldest first; keys are never listed."""
        ids = [u.decode() for u in self.r.zrange(self.key("users"), 0, -1)]
        pipe = self.r.pipeline(transaction=False)
        for user_id in ids:
            pipe.hmget(self.key("user", user_id), ["name", "created"])
        return [
            {"id": user_id, "name": name.decode(), "created": float(created)}
            for user_id, (name, created) in zip(ids, pipe.execute(), strict=True)
            if name is not None
        ]

    def user(self, user_id: str) -> dict[str, Any] | None:
        record = self._text_hash(self.key("user", user_id))
        if record is None:
            return None
        return {"id": user_id, "name": record["name"], "created": float(record["created"])}

    def rotate_key(self, user_id: str) -> str | None:
        """A new API key for the user; the old one stops working at once. None if no
        such user."""
        old = self.r.hget(self.key("user", user_id), "key")
        if old is None and not self.r.exists(self.key("user", user_id)):
            return None
        api_key = "aimc_" + secrets.token_urlsafe(24)
        hashed = hash_key(api_key)
        pipe = self.r.pipeline()
        if old is not None:
            pipe.delete(self.key("key", old.decode()))
        pipe.set(self.key("key", hashed), user_id)
        pipe.hset(self.key("user", user_id), "key", hashed)
        pipe.execute()
        return api_key

    def delete_user(self, user_id: str) -> bool:
        """Remove the user and revoke their key; their live jobs are asked to cancel (jobs
        and datasets then expire with the retention). False if no such user."""
        record = self._text_hash(self.key("user", user_id))
        if record is None:
            return False
        live = set()
        for state in LIVE:
            live |= {j.decode() for j in self.r.smembers(self.key("user", user_id, "in", state))}
        pipe = self.r.pipeline()
        if "key" in record:
            pipe.delete(self.key("key", record["key"]))
        pipe.delete(self.key("user", user_id))
        pipe.delete(self.key("username", record["name"]))
        pipe.zrem(self.key("users"), user_id)
        for job_id in live:
            pipe.set(self.key("job", job_id, "cancel"), 1)
        pipe.execute()
        for job_id in live:
            job = self.get_job(job_id)
            if job is not None and job["state"] == "queued":
                self.set_state(job_id, "cancelled")
        return True

    # jobs ------------------------------------------------------------------
    def create_job(self, owner: str, spec: dict[str, Any]) -> str:
        """A queued job (no limit checked; no task sent, so the reaper does not watch
        it while queued: the caller sends one if it wants the job run); its id."""
        job = self.admit_job(owner, spec, None, watched=False)
        assert job is not None
        return str(job["id"])

    def admit_job(
        self, owner: str, spec: dict[str, Any], max_queued: int | None, *, watched: bool = True
    ) -> dict[str, Any] | None:
        """Create a queued job unless the owner already has `max_queued` queued; the job
        (as get_job gives it) or None. One atomic round trip: concurrent submits cannot
        overshoot the limit, and the caller needs no read-back."""
        job_id = uuid.uuid4().hex
        now = time.time()
        created = self._create_job(
            keys=[
                self.key("job", job_id),
                self.key("user", owner, "jobs"),
                self.key("job", job_id, "events"),
                self.key("stats", "transitions"),
                self.key("user", owner, "in", "queued"),
                self.key("in", "queued"),
            ],
            args=[
                max_queued if max_queued is not None else -1,
                job_id,
                owner,
                spec.get("name", ""),
                json.dumps(spec),
                repr(now),
                "1" if watched else "0",
            ],
        )
        if not created:
            return None
        job = {"id": job_id, "owner": owner, "name": spec.get("name", ""), "spec": spec}
        return {**job, "state": "queued", "progress": 0.0, "attempts": 0, "created": now}

    def _slot_keys(self, owner: str) -> list[str]:
        return [
            self.key("user", owner, "in", "running"),
            self.key("user", owner, "in", "retrying"),
            self.key("user", owner, "parked"),
        ]

    def claim_slot(self, owner: str, job_id: str, limit: int) -> bool:
        """True if the job may run now (under its owner's running limit, or already
        holding a slot after a redelivery); else the job is parked, still queued, until
        `free_slots` hands it back. Atomic, so two workers cannot both take the last slot;
        and nothing polls: a parked job costs no worker time while it waits."""
        return bool(self._claim_slot(keys=self._slot_keys(owner), args=[job_id, limit]))

    def free_slots(self, owner: str, limit: int) -> list[str]:
        """Parked jobs of the owner that now fit under the limit, oldest first (removed from
        the parked list: the caller queues them again)."""
        popped = self._free_slots(keys=self._slot_keys(owner), args=[limit])
        return [j.decode() for j in popped]

    def count_in(self, owner: str, state: str) -> int:
        """How many of the owner's jobs are in a live state, without reading every job."""
        return int(self.r.scard(self.key("user", owner, "in", state)))

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self.decode_job(job_id, self.r.hgetall(self.key("job", job_id)))

    @staticmethod
    def decode_job(job_id: str, raw: dict[bytes, bytes]) -> dict[str, Any] | None:
        """A job hash as typed data (None for an empty hash: no such job)."""
        if not raw:
            return None
        job: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
        job["id"] = job_id
        job["spec"] = json.loads(job["spec"])
        for key in ("progress", "created", "started", "finished", "engine_finished"):
            if key in job:
                job[key] = float(job[key])
        job["attempts"] = int(job["attempts"])
        if "result" in job:
            job["result"] = json.loads(job["result"])
        return job

    def set_state(self, job_id: str, state: str, **fields: Any) -> None:
        """Move a job to `state` and record the change as an event."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}")
        now = time.time()
        mapping: dict[str, Any] = {"state": state, **fields}
        if state == "running":
            mapping.setdefault("started", now)
            mapping["requeued"] = 0  # a worker holds it: it may be requeued if lost again
        if state in TERMINAL:
            mapping["finished"] = now
        owner, started = self.r.hmget(self.key("job", job_id), ["owner", "started"])
        pipe = self.r.pipeline()
        if state in TERMINAL and started is not None:
            self._observe_duration(pipe, state, now - float(started))
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
        if state in TERMINAL and self.retention_s:
            for key in self._job_keys(job_id):
                pipe.expire(key, self.retention_s)
        pipe.execute()

    def _job_keys(self, job_id: str) -> list[str]:
        """Every key of one job (its hash, streams, flags and artifacts)."""
        keys = [self.key("job", job_id)]
        keys += [self.key("job", job_id, "artifact", n) for n in self.artifact_names(job_id)]
        keys += [
            self.key("job", job_id, suffix)
            for suffix in (
                "metrics",
                "events",
                "artifacts",
                "files",
                "cancel",
                "lock",
                "checkpoint",
                "heartbeat",
            )
        ]
        return keys

    def _observe_duration(self, pipe: Any, state: str, seconds: float) -> None:
        """Count a finished job's run time into the cumulative histogram buckets."""
        key = self.key("stats", "durations")
        for bound in DURATION_BUCKETS_S:
            if seconds <= bound:
                pipe.hincrby(key, f"{state}|{bound:g}", 1)
        pipe.hincrby(key, f"{state}|+Inf", 1)
        pipe.hincrbyfloat(key, f"{state}|sum", seconds)

    def durations(self) -> dict[str, dict[str, float]]:
        """Per final state: cumulative bucket counts by upper bound ("+Inf" is the count)
        and "sum", the seconds of all finished jobs (a Prometheus histogram)."""
        out: dict[str, dict[str, float]] = {}
        for field, value in self.r.hgetall(self.key("stats", "durations")).items():
            state, bound = field.decode().split("|")
            out.setdefault(state, {})[bound] = float(value)
        return out

    def transitions(self) -> dict[str, int]:
        """How many times jobs entered each state (for the Prometheus counter)."""
        raw = self.r.hgetall(self.key("stats", "transitions"))
        return {k.decode(): int(v) for k, v in raw.items()}

    def queue_depth(self, queue: str) -> int:
        """Jobs waiting in the Celery queue (a Redis list named after the queue)."""
        return int(self.r.llen(queue))

    def add_attempt(self, job_id: str) -> int:
        return int(self.r.hincrby(self.key("job", job_id), "attempts", 1))

    def set_progress(self, job_id: str, progress: float) -> None:
        self.r.hset(self.key("job", job_id), "progress", progress)

    def set_engine_pid(self, job_id: str, pid: int) -> None:
        """The process running the job's engine (forked per job), for operators."""
        self.r.hset(self.key("job", job_id), "engine_pid", pid)

    def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        self.r.hset(self.key("job", job_id), "result", json.dumps(result))

    # metrics and events ----------------------------------------------------
    def add_metric(self, job_id: str, record: dict[str, Any]) -> bool:
        """Append a metric point unless one of its step or later is stored already: a
        write retried after a lost reply (Redis restarting) cannot add it twice. True if
        it was added."""
        added = self._add_metric(
            keys=[self.key("job", job_id, "metrics")], args=[record["step"], json.dumps(record)]
        )
        return bool(added)

    def metrics(self, job_id: str, since_step: int = -1) -> list[dict[str, Any]]:
        """Metric points in order, those with step > since_step."""
        entries = self.r.xrange(self.key("job", job_id, "metrics"))
        points = [json.loads(fields[b"m"]) for _, fields in entries]
        return [p for p in points if p["step"] > since_step]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        entries = self.r.xrange(self.key("job", job_id, "events"))
        return [{"state": f[b"state"].decode(), "t": float(f[b"t"])} for _, f in entries]

    # artifacts -------------------------------------------------------------
    def _artifact_folder(self, job_id: str) -> str:
        """A job's folder in the artifact store, relative to its root (the prefix keeps
        several deployments or test runs sharing one root apart)."""
        return f"{self.p.rstrip(':') or 'aimc'}/{job_id}"

    def put_artifact(self, job_id: str, name: str, data: bytes) -> None:
        """Keep an artifact: in Redis if small or there is no artifact store, else as a
        file in the store (written whole, then renamed: a reader never sees half)."""
        pipe = self.r.pipeline()
        if self.artifact_dir is not None and len(data) > self.inline_max_bytes:
            path = self.artifact_dir / self._artifact_folder(job_id) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".part")
            partial.write_bytes(data)
            partial.replace(path)
            pipe.hset(self.key("job", job_id, "files"), name, len(data))
        else:
            pipe.set(self.key("job", job_id, "artifact", name), data)
        pipe.sadd(self.key("job", job_id, "artifacts"), name)
        pipe.execute()

    def artifact_names(self, job_id: str) -> list[str]:
        return sorted(n.decode() for n in self.r.smembers(self.key("job", job_id, "artifacts")))

    def artifact(self, job_id: str, name: str) -> bytes | str | None:
        """The artifact's bytes if Redis keeps it; if the artifact store does, its path
        relative to the store's root (the file may have gone); None if there is none."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.key("job", job_id, "artifact", name))
        pipe.hexists(self.key("job", job_id, "files"), name)
        data, on_disk = pipe.execute()
        if data is not None:
            return bytes(data)
        return f"{self._artifact_folder(job_id)}/{name}" if on_disk else None

    def artifact_bytes(self, job_id: str, name: str) -> bytes | None:
        """The artifact's bytes wherever they are kept; None if absent or its file gone."""
        found = self.artifact(job_id, name)
        if isinstance(found, str):
            path = self.artifact_dir / found if self.artifact_dir is not None else None
            return path.read_bytes() if path is not None and path.is_file() else None
        return found

    def remove_artifact_files(self, job_id: str) -> None:
        if self.artifact_dir is not None:
            shutil.rmtree(self.artifact_dir / self._artifact_folder(job_id), ignore_errors=True)

    def remove_expired_artifact_files(self) -> list[str]:
        """Delete the artifact files of jobs whose keys expired (the retention) or were
        removed; the job ids whose files went."""
        if self.artifact_dir is None:
            return []
        root = self.artifact_dir / self._artifact_folder("")
        if not root.is_dir():
            return []
        removed = []
        for folder in root.iterdir():
            if folder.is_dir() and not self.r.exists(self.key("job", folder.name)):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed

    # datasets --------------------------------------------------------------
    def put_dataset(self, owner: str, name: str, data: bytes, info: dict[str, Any]) -> str:
        dataset_id = "ds_" + uuid.uuid4().hex[:16]
        now = time.time()
        pipe = self.r.pipeline()
        pipe.hset(
            self.key("dataset", dataset_id),
            mapping={
                "owner": owner,
                "name": name,
                "created": now,
                "bytes": len(data),
                "info": json.dumps(info),
            },
        )
        pipe.set(self.key("dataset", dataset_id, "data"), data)
        pipe.zadd(self.key("user", owner, "datasets"), {dataset_id: now})
        pipe.execute()
        return dataset_id

    def _text_hash(self, key: str) -> dict[str, str] | None:
        """A hash of text fields, decoded; None if the key does not exist."""
        raw = self.r.hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None

    def dataset(self, dataset_id: str) -> dict[str, Any] | None:
        """The dataset's record (no bytes), or None."""
        record: dict[str, Any] | None = self._text_hash(self.key("dataset", dataset_id))
        if record is None:
            return None
        info = json.loads(record.pop("info"))
        return {
            "id": dataset_id,
            **record,
            "created": float(record["created"]),
            "bytes": int(record["bytes"]),
            **info,
        }

    def dataset_bytes(self, dataset_id: str) -> bytes | None:
        data = self.r.get(self.key("dataset", dataset_id, "data"))
        return bytes(data) if data is not None else None

    def dataset_ids(self, owner: str) -> list[str]:
        """The owner's datasets, newest first."""
        return [d.decode() for d in self.r.zrevrange(self.key("user", owner, "datasets"), 0, -1)]

    def delete_dataset(self, dataset_id: str, owner: str) -> None:
        pipe = self.r.pipeline()
        pipe.delete(self.key("dataset", dataset_id), self.key("dataset", dataset_id, "data"))
        pipe.zrem(self.key("user", owner, "datasets"), dataset_id)
        pipe.execute()

    # sweeps ----------------------------------------------------------------
    def create_sweep(
        self, owner: str, name: str, grid: dict[str, Any], members: list[dict[str, Any]]
    ) -> str:
        """Record a sweep whose jobs exist already; members: [{"job": id, "overrides"}]."""
        sweep_id = "sw_" + uuid.uuid4().hex[:16]
        now = time.time()
        pipe = self.r.pipeline()
        pipe.hset(
            self.key("sweep", sweep_id),
            mapping={
                "owner": owner,
                "name": name,
                "created": now,
                "grid": json.dumps(grid),
                "members": json.dumps(members),
            },
        )
        pipe.zadd(self.key("user", owner, "sweeps"), {sweep_id: now})
        pipe.execute()
        return sweep_id

    def sweep(self, sweep_id: str) -> dict[str, Any] | None:
        record = self._text_hash(self.key("sweep", sweep_id))
        if record is None:
            return None
        return {
            "id": sweep_id,
            "owner": record["owner"],
            "name": record["name"],
            "created": float(record["created"]),
            "grid": json.loads(record["grid"]),
            "members": json.loads(record["members"]),
        }

    def sweep_ids(self, owner: str) -> list[str]:
        """The owner's sweeps, newest first."""
        return [s.decode() for s in self.r.zrevrange(self.key("user", owner, "sweeps"), 0, -1)]

    def sweep_plot(self, sweep_id: str) -> bytes | None:
        data = self.r.get(self.key("sweep", sweep_id, "plot"))
        return bytes(data) if data is not None else None

    def finish_sweep(self, sweep_id: str, plot: bytes) -> None:
        """Keep the final overlay plot; the sweep expires with its jobs' retention."""
        pipe = self.r.pipeline()
        pipe.set(self.key("sweep", sweep_id, "plot"), plot)
        if self.retention_s:
            pipe.expire(self.key("sweep", sweep_id), self.retention_s)
            pipe.expire(self.key("sweep", sweep_id, "plot"), self.retention_s)
        pipe.execute()

    # idempotency -----------------------------------------------------------
    def idempotent_job(self, user: str, key: str) -> tuple[str, str] | None:
        """(body digest, job id) remembered for this user's Idempotency-Key, if any."""
        raw = self.r.get(self.key("idem", user, hash_key(key)))
        if raw is None:
            return None
        digest, job_id = raw.decode().split(" ")
        return digest, job_id

    def remember_idempotent(
        self, user: str, key: str, digest: str, job_id: str, ttl_s: int
    ) -> None:
        self.r.set(self.key("idem", user, hash_key(key)), f"{digest} {job_id}", ex=ttl_s)

    # checkpoints and liveness ----------------------------------------------
    def put_checkpoint(self, job_id: str, blob: bytes) -> None:
        self.r.set(self.key("job", job_id, "checkpoint"), blob)

    def mark_resumed(self, job_id: str) -> None:
        """Count a run that continued from the checkpoint (`resumes` in the job's hash)."""
        self.r.hincrby(self.key("job", job_id), "resumes", 1)

    def checkpoint(self, job_id: str) -> bytes | None:
        blob = self.r.get(self.key("job", job_id, "checkpoint"))
        return bytes(blob) if blob is not None else None

    def latest_metric(self, job_id: str) -> dict[str, Any] | None:
        last = self.r.xrevrange(self.key("job", job_id, "metrics"), count=1)
        return json.loads(last[0][1][b"m"]) if last else None  # type: ignore[no-any-return]

    def last_metric_step(self, job_id: str) -> int:
        """Step of the newest stored metric point (-1 if none): a resumed run skips up to it."""
        latest = self.latest_metric(job_id)
        return int(latest["step"]) if latest else -1

    def beat(self, job_id: str, holder: str, ttl_s: int) -> bool:
        """The running worker is alive: refresh its heartbeat and its lock (taken again if
        it expired while Redis was away). False if another worker holds the lock now: the
        job was given up for lost and runs elsewhere, so this run must stop."""
        keys = [self.key("job", job_id, "lock"), self.key("job", job_id, "heartbeat")]
        return bool(self._beat(keys=keys, args=[holder, ttl_s]))

    def live_jobs(self) -> list[str]:
        """Jobs now running or retrying, of every user (the reaper looks at these)."""
        ids = self.r.sunion([self.key("in", "running"), self.key("in", "retrying")])
        return sorted(j.decode() for j in ids)

    def queued_jobs(self) -> list[str]:
        """Jobs now queued, of every user."""
        return sorted(j.decode() for j in self.r.smembers(self.key("in", "queued")))

    def resend_if_stuck(self, job_id: str, queue: str, min_age_s: float) -> bool:
        """True if the queued job's task is nowhere (see RESEND_STUCK) and the caller
        should send it again; notes the time, so it is re-sent at most every min_age_s."""
        owner = self.r.hget(self.key("job", job_id), "owner")
        if owner is None:
            return False
        keys = [self.key("job", job_id), self.key("user", owner.decode(), "parked"), queue]
        return bool(self._resend_stuck(keys=keys, args=[repr(time.time()), min_age_s, job_id]))

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
            self.key("user", u, "in", "running"),
            self.key("user", u, "in", "retrying"),
            self.key("in", "running"),
            self.key("in", "retrying"),
        ]
        return bool(self._requeue(keys=keys, args=[repr(time.time()), job_id]))

    def alive(self, job_id: str) -> bool:
        return bool(self.r.exists(self.key("job", job_id, "heartbeat")))

    # cancel and locks ------------------------------------------------------
    def request_cancel(self, job_id: str) -> None:
        self.r.set(self.key("job", job_id, "cancel"), 1)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self.key("job", job_id, "cancel")))

    def take_lock(self, job_id: str, holder: str, ttl_s: int) -> bool:
        """True if `holder` now runs the job; False if another worker holds it."""
        return bool(self.r.set(self.key("job", job_id, "lock"), holder, nx=True, ex=ttl_s))

    def release_lock(self, job_id: str, holder: str) -> None:
        """Drop the job's lock if `holder` still holds it (not one another worker took)."""
        self._release(keys=[self.key("job", job_id, "lock")], args=[holder])

    def delete_job(self, job_id: str) -> None:
        job = self.get_job(job_id)
        if job is None:
            return
        pipe = self.r.pipeline()
        self.remove_artifact_files(job_id)
        pipe.delete(*self._job_keys(job_id))
        pipe.zrem(self.key("user", job["owner"], "jobs"), job_id)
        for live in LIVE:
            pipe.srem(self.key("user", job["owner"], "in", live), job_id)
            pipe.srem(self.key("in", live), job_id)
        pipe.execute()


def _minute() -> tuple[int, int]:
    """The rate limit's current minute, and the seconds until the next one (at least 1)."""
    now = time.time()
    window = int(now // 60)
    return window, max(1, int((window + 1) * 60 - now))


class AsyncReads:
    """The reads on the hot path of every request, on redis.asyncio: authentication with
    the rate count, and the status view of a job. Async so FastAPI runs them on the event
    loop: a sync dependency and a sync route each cost a hop to the thread pool, which
    took ~40% of a status call. Keys and decoding come from the JobStore."""

    def __init__(self, client: aioredis.Redis, store: JobStore) -> None:
        self.r = client
        self.store = store
        self._authenticate = client.register_script(AUTHENTICATE)
        self._authenticated_job_view = client.register_script(AUTHENTICATED_JOB_VIEW)

    async def authenticate(self, api_key: str, per_minute: int) -> tuple[str, int | None] | None:
        """The key's user and, if this request puts them over the per-minute rate, the
        seconds until the next minute; None for an unknown key. One round trip (a Lua
        script)."""
        window, retry_at = _minute()
        found = await self._authenticate(
            keys=[self.store.key("key", hash_key(api_key))],
            args=[self.store.key("rate", ""), window],
        )
        if not found:
            return None
        return found[0].decode(), retry_at if int(found[1]) > per_minute else None

    async def authenticated_job_view(
        self, api_key: str, per_minute: int, job_id: str
    ) -> tuple[str, int | None, dict[str, Any] | None, dict[str, Any] | None, bool] | None:
        """authenticate() and job_view() in one round trip: (user, retry, job, latest
        point, alive), None for an unknown key. The status route, the one clients poll,
        then costs what a bare read of one hash costs."""
        window, retry_at = _minute()
        found = await self._authenticated_job_view(
            keys=[self.store.key("key", hash_key(api_key))],
            args=[self.store.key("rate", ""), window, self.store.key("job", job_id)],
        )
        if not found:
            return None
        user, count, flat, last, beating = found
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        latest = json.loads(last[0][1][1]) if last else None  # [[id, [b"m", json]]]
        job = self.store.decode_job(job_id, raw)
        retry = retry_at if int(count) > per_minute else None
        return user.decode(), retry, job, latest, bool(beating)

    async def job_ids(self, owner: str) -> list[str]:
        """The owner's jobs, newest first."""
        ids = await self.r.zrevrange(self.store.key("user", owner, "jobs"), 0, -1)
        return [j.decode() for j in ids]

    async def job_view(
        self, job_id: str
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
        """(job, latest metric point, worker alive) in one round trip."""
        key = self.store.key
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(key("job", job_id))
            pipe.xrevrange(key("job", job_id, "metrics"), count=1)
            pipe.exists(key("job", job_id, "heartbeat"))
            raw, last, beating = await pipe.execute()
        latest = json.loads(last[0][1][b"m"]) if last else None
        return self.store.decode_job(job_id, raw), latest, bool(beating)
