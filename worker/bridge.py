"""The bridge from the engine to the store: the body of a job's own process.

It runs the engine on the job (`aimc_engine.runner.run`) with callbacks that stream
into the store: metric points (each stored once, even by a resumed attempt), progress,
checkpoints, the cancel flag; then writes the run's artifacts (plots included) and its
result and final state. It runs in a process forked for the job (fresh_process.py).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from aimc_engine.threads import cores_share
from aimc_spec.spec import DATASET_ROOTS, JobSpec, SpecError, parse_spec
from aimc_spec.vocabulary import JobState
from aimc_store.store import JobStore
from worker.fits import misfit
from worker.memory_limit import describe_failure
from worker.settings import get_settings

log = logging.getLogger(__name__)
CANCEL_POLL_S = 0.5  # how often a running job looks at its cancel flag
PROGRESS_EVERY_S = 1.0
CHECKPOINT_EVERY = 200  # micro-batches between checkpoints
REDIS_PATIENCE_S = 120  # a running job waits this long for a restarting Redis, then fails


def patient_store() -> JobStore:
    """The worker's store: patient, so a Redis restart pauses a job instead of failing it."""
    return JobStore.from_settings(get_settings(), patient_s=REDIS_PATIENCE_S)


def job_process(job_id: str, spec: dict[str, Any], owner: str) -> int:
    """The body of the job's own process: fresh Redis connections (none is shared across
    the fork), at most cores // concurrency torch threads (shared among its stage
    processes, if it has them; aimc_engine/threads.py), the run. 0 once the job's final
    state is stored, whatever it is."""
    import multiprocessing.process

    import torch

    # The pool process it was forked from is a billiard daemon, which multiprocessing
    # forbids children, and whose authentication key multiprocessing cannot pickle. This
    # process owns its lifetime (fresh_process.py) and ends the stage processes of a
    # `processes` job itself: it starts them as the main process it now is.
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    config["daemon"] = False
    config["authkey"] = multiprocessing.process.AuthenticationString(os.urandom(32))  # type: ignore[attr-defined]
    # the cores this job may use; the engine's thread policy picks its threads within
    concurrency = int(os.environ.get("AIMC_WORKER_CONCURRENCY", "1"))
    torch.set_num_threads(cores_share(concurrency))
    # server-side dataset paths only under this worker's allowed directories (checked
    # again here: the API that admitted the spec may run on another machine)
    DATASET_ROOTS.set(get_settings().dataset_roots())
    store = patient_store()
    store.jobs.set_engine_pid(job_id, os.getpid())
    try:
        run_and_store(store, job_id, spec, owner)
    except Exception as exc:
        fail(store, job_id, exc)
    return 0


def fail(store: JobStore, job_id: str, exc: Exception) -> None:
    """An unexpected error ends the job as failed, naming it; the traceback goes to the log."""
    log.exception("job %s failed", job_id)
    error = describe_failure(exc)  # names a memory limit
    store.jobs.set_state(job_id, JobState.FAILED, error=error)


def _fetch_upload(store: JobStore, spec: JobSpec, owner: str, path: Path) -> Path | None:
    """The .npz of an `uploaded` dataset, written to `path`, if the owner's and still kept."""
    from aimc_engine.runner import RunError

    if spec.dataset.name != "uploaded":
        return None
    record = store.datasets.get(spec.dataset.id or "")
    data = store.datasets.read(spec.dataset.id or "") if record else None
    if record is None or record.owner != owner or data is None:
        raise RunError(f"dataset.id: no dataset {spec.dataset.id!r} (deleted, or not yours)")
    path.write_bytes(data)
    return path


def store_callbacks(store: JobStore, job_id: str, reached: list[float]) -> Any:
    """The engine's callbacks for job `job_id`: metric points stored once (not those a
    previous attempt stored), progress and the cancel flag at most so often, checkpoints.
    `reached` gets the share of training done at the latest step."""
    from aimc_engine.runner import Callbacks

    last = {"cancel": 0.0, "progress": 0.0}
    stored_up_to = store.metrics.last_step(job_id)  # points a previous attempt already stored

    def on_metrics(record: dict[str, Any]) -> None:
        if record["step"] > stored_up_to:
            store.metrics.add(job_id, record)

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last["cancel"] < CANCEL_POLL_S:
            return False
        last["cancel"] = now
        return store.jobs.cancel_requested(job_id)

    def on_progress(step: int, total: int, loss: float) -> None:
        reached[:] = [step / total]
        now = time.monotonic()
        if now - last["progress"] >= PROGRESS_EVERY_S or step == total:
            last["progress"] = now
            store.jobs.set_progress(job_id, step / total)

    return Callbacks(
        on_metrics=on_metrics,
        on_progress=on_progress,
        should_stop=should_stop,
        on_checkpoint=lambda blob: store.jobs.put_checkpoint(job_id, blob),
        checkpoint_every=CHECKPOINT_EVERY,
    )


def run_and_store(store: JobStore, job_id: str, spec_data: dict[str, Any], owner: str) -> None:
    """Run the engine on the job and store its metrics, artifacts, result and final state."""
    from aimc_engine.artifacts import write_run
    from aimc_engine.runner import RunError, run

    try:
        spec = parse_spec(spec_data)
    except SpecError as exc:
        store.jobs.set_state(job_id, JobState.FAILED, error=str(exc))
        return
    reached: list[float] = []  # the share of training done at the latest step
    callbacks = store_callbacks(store, job_id, reached)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        try:
            uploaded = _fetch_upload(store, spec, owner, out / "uploaded.npz")
            too_big = misfit(spec, uploaded, get_settings().job_max_memory_mib)
            if too_big is not None:
                raise RunError(too_big)
            resume = store.jobs.checkpoint(job_id)
            if resume is not None:
                store.jobs.mark_resumed(job_id)
            output = run(spec, callbacks, resume=resume, uploaded=uploaded)
        except RunError as exc:
            store.jobs.set_state(job_id, JobState.FAILED, error=str(exc))
            return
        engine_finished = time.time()
        if uploaded is not None:
            uploaded.unlink()  # not an artifact
        write_run(out, output.result, output.metrics, output.model, output.timeline)
        (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in output.metrics))
        for path in sorted(out.iterdir()):
            store.artifacts.put(job_id, path.name, path.read_bytes())
    store.jobs.set_result(job_id, output.result)
    status = output.result["status"]
    # a cancelled or failed job's progress is where it stopped, not 100% (and stays as
    # stored if it stopped before its first step of this attempt)
    progress: dict[str, float] = {}
    if status == JobState.SUCCEEDED or reached:
        progress["progress"] = 1.0 if status == JobState.SUCCEEDED else reached[0]
    store.jobs.set_state(
        job_id,
        status,
        error=output.result["error"] or "",
        engine_finished=engine_finished,
        **progress,
    )
