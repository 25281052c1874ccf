"""What a validated spec must pass before it is queued, for single jobs and sweeps alike:
its dataset (an upload must be the caller's), its cost under the ceiling, and room in
the caller's queued limit. Then queuing itself: the job in the store, a task to Celery.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from aimc_spec.cost import data_shape, job_cost
from aimc_spec.fit import fit_problem
from aimc_spec.resources import action_flops, resources
from aimc_spec.slots import slots_problem
from aimc_spec.spec import JobSpec
from aimc_spec.vocabulary import RUN_JOB_TASK, JobState
from aimc_store.fair_share import priority
from aimc_store.records import Job
from aimc_store.store import JobStore
from service.errors import ProblemError
from service.settings import Settings

UNKNOWN_DATA = (60000, (1, 28, 28))  # an npz whose header cannot be read: MNIST-sized


def check_spec(spec: JobSpec, store: JobStore, settings: Settings, user: str, at: str = "") -> None:
    """422 naming the field if the spec's upload is not the caller's, its model does not fit
    its data (where the data's shape is known without loading it) or it costs too much;
    `at` prefixes the field path (a sweep's combination)."""
    uploaded = None
    if spec.dataset.name == "uploaded":
        dataset = store.datasets.get(spec.dataset.id or "")
        if dataset is None or dataset.owner != user:  # another's upload: as if absent
            detail = f"no dataset {spec.dataset.id!r}; upload one with POST /v1/datasets"
            raise ProblemError(
                422, "Invalid request", detail, errors=[{"loc": f"{at}dataset.id", "msg": detail}]
            )
        uploaded = (dataset.n_train, tuple(dataset.sample_shape))
    known = data_shape(spec, uploaded)
    problem = fit_problem(spec, known[1]) if known else None
    if problem:
        loc, msg = f"{at}{problem[0]}", problem[1]
        raise ProblemError(
            422, "Invalid request", f"{loc}: {msg}", errors=[{"loc": loc, "msg": msg}]
        )
    problem = slots_problem(spec, settings.worker_slots)
    if problem:
        loc, msg = f"{at}{problem[0]}", problem[1]
        raise ProblemError(
            422, "Invalid request", f"{loc}: {msg}", errors=[{"loc": loc, "msg": msg}]
        )
    check_resources(spec, uploaded, settings, at)
    cost = job_cost(spec, uploaded)
    if cost.total > settings.max_job_cost:
        detail = (
            f"{cost.samples} samples x {cost.parameters} parameters = {cost.total:.3g} exceeds "
            f"the limit max_job_cost = {settings.max_job_cost:.3g}; train fewer epochs or a "
            "smaller model"
        )
        raise ProblemError(
            422, "Job too large", detail, errors=[{"loc": f"{at}training", "msg": detail}]
        )


def check_resources(
    spec: JobSpec,
    uploaded: tuple[int, tuple[int, ...]] | None,
    settings: Settings,
    at: str = "",
) -> None:
    """422 naming the limit if the job's estimated peak memory or run time passes the
    service's ceilings (aimc_spec.resources: weights, device state, activations per
    micro-batch, stashes, pulses, data, checkpoint; FLOPs at worker_gflops)."""
    n_train, shape = data_shape(spec, uploaded) or UNKNOWN_DATA
    estimate = resources(spec, n_train, shape)
    limit = settings.max_job_memory_mib * 2**20
    if estimate.peak_bytes > limit:
        raise _too_large(
            f"{at}model",
            f"estimated peak memory {estimate.peak_bytes / 2**20:.0f} MiB "
            f"({estimate.describe()}) exceeds the limit max_job_memory_mib = "
            f"{settings.max_job_memory_mib}; use a smaller model, micro-batch or dataset",
        )
    seconds = estimate.seconds(settings.worker_gflops)
    if seconds > settings.max_job_seconds:
        raise _too_large(
            f"{at}training",
            f"estimated run time {seconds:.0f} s ({estimate.flops:.3g} FLOPs at "
            f"{settings.worker_gflops:g} GFLOP/s) exceeds the limit max_job_seconds = "
            f"{settings.max_job_seconds:g}; train fewer epochs or a smaller model",
        )
    action = action_flops(spec, shape) / (settings.worker_gflops * 1e9)
    if action > settings.max_action_seconds:
        raise _too_large(
            f"{at}training.micro_batch_size",
            f"one micro-batch's backward takes an estimated {action:.1f} s at "
            f"{settings.worker_gflops:g} GFLOP/s, over the limit max_action_seconds = "
            f"{settings.max_action_seconds:g} (a cancel waits for the action in progress); "
            "use a smaller micro_batch_size or model",
        )


def _too_large(loc: str, detail: str) -> ProblemError:
    """The 422 of a job past one of the service's ceilings, naming the field and limit."""
    return ProblemError(422, "Job too large", detail, errors=[{"loc": loc, "msg": detail}])


def check_room(store: JobStore, settings: Settings, user: str, jobs: int = 1) -> None:
    """429 with Retry-After if `jobs` more would exceed the caller's queued limit (422 if
    they never could: a sweep larger than the limit itself)."""
    if jobs > settings.max_queued_jobs:
        detail = (
            f"{jobs} jobs in one request; the limit max_queued_jobs is "
            f"{settings.max_queued_jobs}: split the grid"
        )
        raise ProblemError(422, "Too many jobs", detail, errors=[{"loc": "grid", "msg": detail}])
    queued = store.jobs.count_in(user, JobState.QUEUED)
    if queued + jobs > settings.max_queued_jobs:
        raise _over_queued(queued, jobs, settings)


def check_storage(store: JobStore, settings: Settings, user: str) -> None:
    """422 naming the limit if the artifacts of the caller's kept jobs fill their storage
    (max_user_artifact_bytes): a job would add more. A soft limit: jobs queued before
    it was reached may pass it by their own artifacts."""
    used = store.artifacts.usage(user)
    if used >= settings.max_user_artifact_bytes:
        detail = (
            f"your jobs' artifacts keep {used} bytes, at the limit max_user_artifact_bytes = "
            f"{settings.max_user_artifact_bytes}; delete finished jobs (DELETE /v1/jobs/ID)"
        )
        raise ProblemError(
            422, "Storage quota exceeded", detail, errors=[{"loc": "artifacts", "msg": detail}]
        )


def _over_queued(queued: int, jobs: int, settings: Settings) -> ProblemError:
    return ProblemError(
        429,
        "Too Many Requests",
        f"{queued} jobs queued and {jobs} more asked for; the limit is {settings.max_queued_jobs}",
        headers={"Retry-After": "30"},
    )


def admit(store: JobStore, settings: Settings, user: str, normalised: dict[str, Any]) -> Job:
    """Create the job, queued (429 if the caller's queued limit is full); no worker knows
    of it until `send`. (A sweep's jobs: JobStore.admit_sweep, after check_room.)"""
    job = store.jobs.admit(user, normalised, settings.max_queued_jobs)
    if job is None:
        raise _over_queued(store.jobs.count_in(user, JobState.QUEUED), 1, settings)
    return job


def send(request: Request, job_id: str, ahead: int) -> None:
    """Hand a queued job to the workers (its task on the Celery queue), at the priority
    of its rank in its owner's backlog: `ahead` of their jobs were queued before it
    (fair share between users, aimc_store.fair_share)."""
    request.app.state.celery.send_task(
        RUN_JOB_TASK,
        args=[job_id],
        queue=request.app.state.settings.queue,
        ignore_result=True,
        priority=priority(ahead),
    )


def queue_job(
    request: Request, store: JobStore, settings: Settings, user: str, normalised: dict[str, Any]
) -> Job:
    """Create the job (429 if the caller's queued limit is full) and hand it to the
    workers; the job."""
    check_storage(store, settings, user)
    job = admit(store, settings, user, normalised)
    send(request, job.id, ahead=store.jobs.count_in(user, JobState.QUEUED) - 1)
    return job
