"""Key naming: every Redis key the API and the workers use is named here.

Layout (all under the prefix, `StoreSettings.key_prefix`):
  job:{id}                hash: owner, name, spec (normalised JSON), state, progress,
                          attempts, created/started/finished, error, result (JSON),
                          sweep (the id of the sweep it belongs to, if any)
  job:{id}:metrics        stream of metric points (XADD; one entry per point, in order)
  job:{id}:events         stream of state changes
  job:{id}:artifact:{n}   bytes of one small artifact; job:{id}:artifacts set of names;
                          job:{id}:files hash name -> bytes of the big ones, kept as
                          files in the artifact store (artifact_dir) under
                          {prefix}/{job id}/{name}
  job:{id}:artifact_bytes the bytes of all its artifacts (the owner's storage limit)
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
                          {job id, overrides}); sweep:{id}:plot the overlay PNG, drawn by
                          the worker that ends the sweep's last job; sweep:{id}:plot_asked
                          the API asked the workers to draw it (TTL: asks again after)
  user:{u}                hash: name, created, key (the sha256 of their key);
                          key:{sha256} -> user id; username:{name} -> user id (names
                          are unique); users: sorted set of user ids by creation
  idem:{u}:{sha256(key)}  "body-digest id" for an Idempotency-Key (the id of the job or
                          sweep its first request made), 24 h
  rate:{u}:{minute}       requests in one minute (rate limit), 2 min; counted by the
                          AUTHENTICATE script together with the key lookup, and kept
                          out of the append-only file and replicas (see scripts.py)
  stats:transitions       hash: state -> times a job entered it (Prometheus)
  stats:durations         hash: "{state}|{bound}" -> finished jobs that ran <= bound
                          seconds, "{state}|sum" -> their total (a histogram)
Finished jobs' keys expire after the retention (`retention_seconds`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from aimc_spec.vocabulary import JobState

# states whose jobs are counted per user
LIVE = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)
# a job's keys besides its hash and its artifacts' (deleted and expired together)
JOB_SUFFIXES = (
    "metrics",
    "events",
    "artifacts",
    "files",
    "cancel",
    "lock",
    "checkpoint",
    "heartbeat",
    "artifact_bytes",
)


def hash_key(api_key: str) -> str:
    """Keys are stored only as their SHA-256: a dump of Redis reveals no usable key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class Keys:
    """The names of one deployment's keys: `prefix` keeps deployments (and test runs)
    sharing one Redis apart."""

    prefix: str

    def __call__(self, *parts: str) -> str:
        """The full key of `parts`, e.g. ("job", id, "metrics") -> "aimc:job:ID:metrics"."""
        return self.prefix + ":".join(parts)

    def job_keys(self, job_id: str, artifact_names: Iterable[str]) -> list[str]:
        """Every key of one job: its hash, streams, flags and artifacts."""
        keys = [self("job", job_id)]
        keys += [self("job", job_id, "artifact", name) for name in artifact_names]
        keys += [self("job", job_id, suffix) for suffix in JOB_SUFFIXES]
        return keys

    def slot_keys(self, owner: str) -> list[str]:
        """The owner's running and retrying sets and parked list (the slot scripts')."""
        return [
            self("user", owner, "in", JobState.RUNNING),
            self("user", owner, "in", JobState.RETRYING),
            self("user", owner, JobState.PARKED),
        ]

    def artifact_folder(self, job_id: str) -> str:
        """A job's folder in the artifact store, relative to its root (the prefix keeps
        several deployments or test runs sharing one root apart)."""
        return f"{self.prefix.rstrip(':') or 'aimc'}/{job_id}"
