"""A job's metric points, a stream of at most one per step, in step order (its other
stream, of state changes, is the job's own: aimc_store.jobs). The API's SSE route reads
both live (service/events.py)."""

from __future__ import annotations

import json
from typing import Any

from aimc_store.base import Part
from aimc_store.records import decode_point, latest_point


class Metrics(Part):
    """`store.metrics`: what a running job reports, step by step."""

    def add(self, job_id: str, record: dict[str, Any]) -> bool:
        """Append a metric point unless one of its step or later is stored already: a
        write retried after a lost reply (Redis restarting) cannot add it twice. True if
        it was added."""
        added = self.scripts.add_metric(
            keys=[self.key("job", job_id, "metrics")], args=[record["step"], json.dumps(record)]
        )
        return bool(added)

    def points(self, job_id: str, since_step: int = -1) -> list[dict[str, Any]]:
        """Metric points in order, those with step > since_step."""
        entries = self.r.xrange(self.key("job", job_id, "metrics"))
        points = [decode_point(fields) for _, fields in entries]
        return [p for p in points if p["step"] > since_step]

    def latest(self, job_id: str) -> dict[str, Any] | None:
        return latest_point(self.r.xrevrange(self.key("job", job_id, "metrics"), count=1))

    def last_step(self, job_id: str) -> int:
        """Step of the newest stored metric point (-1 if none): a resumed run skips up to it."""
        latest = self.latest(job_id)
        return int(latest["step"]) if latest else -1
