"""The task that runs one job through the engine, streaming into the store."""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import time
from pathlib import Path

from aimc_engine.spec import SpecError, parse_spec
from service.settings import get_settings
from service.store import TERMINAL, JobStore
from worker.app import HARD_TIME_LIMIT_S, app

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # a job that kills its worker this often is failed, not retried forever
CANCEL_POLL_S = 0.5  # how often a running job looks at its cancel flag
PROGRESS_EVERY_S = 1.0


def _store() -> JobStore:
    settings = get_settings()
    return JobStore.from_url(settings.redis_url, settings.key_prefix, settings.retention_seconds)


@app.task(name="aimc.run_job")
def run_job(job_id: str) -> str:
    """Run job `job_id` unless it is finished, cancelled or held by another worker."""
    store = _store()
    job = store.get_job(job_id)
    if job is None:
        return "missing"
    if job["state"] in TERMINAL:
        return job["state"]
    if store.cancel_requested(job_id):
        store.set_state(job_id, "cancelled")
        return "cancelled"
    if not store.take_lock(job_id, socket.gethostname(), HARD_TIME_LIMIT_S):
        return "locked"
    try:
        if store.add_attempt(job_id) > MAX_ATTEMPTS:
            store.set_state(job_id, "failed", error=f"gave up after {MAX_ATTEMPTS} attempts")
            return "failed"
        store.set_state(job_id, "running")
        return _run(store, job_id, job["spec"])
    except Exception as exc:  # the job fails; the worker stays up for the next one
        log.exception("job %s failed", job_id)
        store.set_state(job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        store.release_lock(job_id)


def _run(store: JobStore, job_id: str, spec_data: dict) -> str:
    from aimc_engine.artifacts import write_run
    from aimc_engine.runner import Callbacks, RunError, run

    try:
        spec = parse_spec(spec_data)
    except SpecError as exc:
        store.set_state(job_id, "failed", error=str(exc))
        return "failed"
    last = {"cancel": 0.0, "progress": 0.0}

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last["cancel"] < CANCEL_POLL_S:
            return False
        last["cancel"] = now
        return store.cancel_requested(job_id)

    def on_progress(step: int, total: int, loss: float) -> None:
        now = time.monotonic()
        if now - last["progress"] >= PROGRESS_EVERY_S or step == total:
            last["progress"] = now
            store.set_progress(job_id, step / total)

    callbacks = Callbacks(
        on_metrics=lambda record: store.add_metric(job_id, record),
        on_progress=on_progress,
        should_stop=should_stop,
    )
    try:
        output = run(spec, callbacks)
    except RunError as exc:
        store.set_state(job_id, "failed", error=str(exc))
        return "failed"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_run(out, output.result, output.metrics, output.model, output.timeline)
        (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in output.metrics))
        for path in sorted(out.iterdir()):
            store.put_artifact(job_id, path.name, path.read_bytes())
    store.set_result(job_id, output.result)
    status = output.result["status"]
    store.set_state(job_id, status, error=output.result["error"] or "", progress=1.0)
    return status
