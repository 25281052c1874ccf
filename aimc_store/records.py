"""Typed records of what the store keeps, decoded from Redis in one place each: the API
builds its response models from them, the worker reads them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aimc_spec.vocabulary import TERMINAL, JobState


@dataclass(frozen=True)
class Job:
    """One job: who submitted what, where it stands, how it ended."""

    id: str
    owner: str
    name: str
    spec: dict[str, Any]  # the normalised spec, as submitted
    state: JobState
    progress: float
    attempts: int
    created: float
    started: float | None = None
    finished: float | None = None
    engine_finished: float | None = None  # the engine's training ended (then artifacts)
    error: str | None = None
    result: dict[str, Any] | None = None  # result.json, once the job ended
    worker: str | None = None  # host:pid of the worker that ran it last
    resumes: int = 0  # runs that continued from a checkpoint
    sweep: str | None = None  # the sweep it belongs to

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[bytes, bytes]) -> Job | None:
        """A job hash as a record (None for an empty hash: no such job; None too for a
        hash without an owner: what a late write of a worker, such as its progress,
        left of a job deleted meanwhile)."""
        if not raw or b"owner" not in raw:
            return None
        f = {k.decode(): v.decode() for k, v in raw.items()}

        def seconds(name: str) -> float | None:
            return float(f[name]) if name in f else None

        return cls(
            id=job_id,
            owner=f["owner"],
            name=f.get("name", ""),
            spec=json.loads(f["spec"]),
            state=JobState(f["state"]),
            progress=float(f.get("progress", 0.0)),
            attempts=int(f.get("attempts", 0)),
            created=float(f["created"]),
            started=seconds("started"),
            finished=seconds("finished"),
            engine_finished=seconds("engine_finished"),
            error=f.get("error") or None,  # the worker stores "" for no error
            result=json.loads(f["result"]) if "result" in f else None,
            worker=f.get("worker"),
            resumes=int(f.get("resumes", 0)),
            sweep=f.get("sweep"),
        )


@dataclass(frozen=True)
class JobView:
    """What the status route shows of a job: the job, its latest metric point, and
    whether its worker still beats (a running job without one is shown as lost)."""

    job: Job | None
    latest: dict[str, Any] | None
    alive: bool


@dataclass(frozen=True)
class StateChange:
    """One entry of a job's events stream."""

    state: JobState
    t: float


@dataclass(frozen=True)
class User:
    id: str
    name: str
    created: float


@dataclass(frozen=True)
class Dataset:
    """An uploaded .npz: its record and what aimc_spec.dataset_files.describe found."""

    id: str
    owner: str
    name: str
    created: float
    bytes: int
    n_train: int
    n_test: int
    sample_shape: list[int]
    classes: int
    x_dtype: str


@dataclass(frozen=True)
class SweepMember:
    """One job of a sweep and the grid values it was run with."""

    job: str
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Sweep:
    id: str
    owner: str
    name: str
    created: float
    grid: dict[str, list[Any]]
    members: list[SweepMember] = field(default_factory=list)


def decode_point(fields: Mapping[bytes, bytes] | Sequence[bytes]) -> dict[str, Any]:
    """A metric point from its stream entry's fields: {b"m": json} as redis-py parses
    XRANGE, or the flat [b"m", json] a Lua script returns."""
    raw = fields[b"m"] if isinstance(fields, Mapping) else fields[1]
    point: dict[str, Any] = json.loads(raw)
    return point


def latest_point(entries: Sequence[Any]) -> dict[str, Any] | None:
    """The point of an XREVRANGE ... COUNT 1 reply ([(id, fields)]), None if empty."""
    return decode_point(entries[0][1]) if entries else None
