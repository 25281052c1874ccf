"""A job's two streams: metric points (at most one per step, in step order) and state
changes. The API's SSE route reads both live (service/events.py)."""

from __future__ import annotations

import json
from typing import Any

from aimc_store.base import StoreBase
from aimc_store.records import StateChange, decode_point, latest_point


class Metrics(StoreBase):
    def add_metric(self, job_id: str, record: dict[str, Any]) -> bool:
        """Append a metric point unless one of its step or later is stored already: a
        write retried after a lost reply (Redis restarting) cannot add it twice. True if
        it was added."""
        added = self.scripts.add_metric(
            keys=[self.key("job", job_id, "metrics")], args=[record["step"], json.dumps(record)]
        )
        return bool(added)

    def metrics(self, job_id: str, since_step: int = -1) -> list[dict[str, Any]]:
        """Metric points in order, those with step > since_step."""
        entries = self.r.xrange(self.key("job", job_id, "metrics"))
        points = [decode_point(fields) for _, fields in entries]
        return [p for p in points if p["step"] > since_step]

    def latest_metric(self, job_id: str) -> dict[str, Any] | None:
        return latest_point(self.r.xrevrange(self.key("job", job_id, "metrics"), count=1))

    def last_metric_step(self, job_id: str) -> int:
        """Step of the newest stored metric point (-1 if none): a resumed run skips up to it."""
        latest = self.latest_metric(job_id)
        return int(latest["step"]) if latest else -1

    def events(self, job_id: str) -> list[StateChange]:
        """The job's state changes, oldest first."""
        entries = self.r.xrange(self.key("job", job_id, "events"))
        return [StateChange(f[b"state"].decode(), float(f[b"t"])) for _, f in entries]
