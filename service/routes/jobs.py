"""/v1/jobs: submit, list, inspect, stream, download, cancel, delete."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import WithJsonSchema

from aimc_spec.metric_record import metrics_csv
from aimc_spec.spec import JobSpec
from aimc_spec.vocabulary import JobState
from aimc_store.reads import AsyncReads
from aimc_store.records import Job
from service.admission import check_spec, queue_job
from service.deps import (
    CurrentUser,
    OwnedJob,
    ReadsDep,
    SettingsDep,
    StoreDep,
    admitted,
    bearer,
    owned_job,
)
from service.errors import ProblemError, responses
from service.events import CURSOR_PATTERN, job_events, parse_cursor
from service.idempotency import body_digest, made_before, remember
from service.ids import ArtifactName, JobId, check_id
from service.schemas import JobOut, JobPage
from service.settings import Settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# an optional header or query value is a string or absent: documented as `string | null`
# a client sent the text "null" (a 422) for the null
CURSOR_SCHEMA = WithJsonSchema({"type": "string", "pattern": CURSOR_PATTERN})
JSON = "application/json"


def job_out(job: Job, latest: dict[str, Any] | None = None, *, alive: bool = True) -> JobOut:
    """The public view; a running job whose worker stopped beating is shown as lost."""
    state = JobState.LOST if job.state == JobState.RUNNING and not alive else job.state
    eta = None
    if job.state == JobState.RUNNING and job.started and 0 < job.progress < 1:
        elapsed = time.time() - job.started
        eta = elapsed / job.progress * (1 - job.progress)
    return JobOut(
        id=job.id,
        name=job.name,
        state=state,
        progress=job.progress,
        attempts=job.attempts,
        created=job.created,
        started=job.started,
        finished=job.finished,
        engine_finished=job.engine_finished,
        error=job.error,
        latest_metrics=latest,
        eta_seconds=eta,
        spec=job.spec,
    )


@router.post(
    "", status_code=202, response_model=JobOut, responses=responses(400, 401, 409, 413, 422, 429)
)
def submit(
    request: Request,
    user: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    spec: Annotated[JobSpec, Body(description="A job spec; every field has a default.")],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Validate and queue a job; the same Idempotency-Key and body return the same job."""
    check_spec(spec, store, settings, user)  # validated by FastAPI already (422 otherwise)
    normalised = spec.normalised()
    digest = body_digest(normalised)
    made = made_before(store, user, idempotency_key, digest)
    if made is not None and (job := store.jobs.get(made)) is not None:
        return _accepted(job)
    job = queue_job(request, store, settings, user, normalised)
    remember(store, user, idempotency_key, digest, job.id)
    return _accepted(job)


def _accepted(job: Job) -> Response:
    """202 with the job and its Location, serialised once (not re-validated by FastAPI)."""
    return Response(
        job_out(job).model_dump_json(),
        status_code=202,
        media_type=JSON,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


@router.get("", response_model=JobPage, responses=responses(401, 422, 429))
async def list_jobs(
    user: CurrentUser,
    reads: ReadsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
    state: str | None = None,
    name: str | None = None,
) -> JobPage:
    """The caller's jobs, newest first; pass `next_cursor` back as `cursor` for more."""
    ids = await reads.job_ids(user)
    start = int(cursor) if cursor else 0
    jobs: list[JobOut] = []
    position = start
    while position < len(ids) and len(jobs) < limit:
        view = await reads.job_view(ids[position])
        position += 1
        job = view.job
        if job and (state is None or job.state == state) and (name is None or job.name == name):
            jobs.append(job_out(job, view.latest, alive=view.alive))
    return JobPage(jobs=jobs, next_cursor=str(position) if position < len(ids) else None)


async def get_job(
    job_id: JobId,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """State, progress, ETA, latest metric point, error. Authentication, the rate count
    and the job's reads are one Redis round trip: this is the route clients poll."""
    # reads and settings from the app's state, not as dependencies (ReadsDep, SettingsDep):
    # solving those took a sixth of the route's time in the API process
    reads: AsyncReads = request.app.state.reads
    settings: Settings = request.app.state.settings
    found = await reads.authenticated_job_view(
        bearer(authorization), settings.requests_per_minute, job_id
    )
    user = admitted(found[:2] if found else None, settings)
    assert found is not None  # admitted() answered 401 otherwise
    view = found[2]
    if view.job is None or view.job.owner != user:
        raise ProblemError(404, "Not Found", f"no job {job_id!r}")
    # serialised once here: returning the model would have FastAPI validate it again
    body = job_out(view.job, view.latest, alive=view.alive).model_dump_json()
    return Response(body, media_type=JSON)


class _PolledRoute(APIRoute):
    """get_job's route: FastAPI documents its parameters (OpenAPI) from the signature as
    usual, but each request calls it with them read straight off the request instead of
    through FastAPI's parameter solving, which cost ~70 us of the route's ~540 us of API
    CPU. Nothing is lost: a path string and an optional header need no validation, and
    these are the values FastAPI passes (the first Authorization header, as it takes)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def handler(request: Request) -> Response:
            # the id's pattern is checked here, as FastAPI would (422), before any read
            job_id = check_id("job_id", request.path_params["job_id"])
            return await get_job(job_id, request, request.headers.get("authorization"))

        return handler


router.add_api_route(
    "/{job_id}",
    get_job,
    methods=["GET"],
    response_model=JobOut,
    responses=responses(401, 404, 422, 429),
    route_class_override=_PolledRoute,
)


@router.get(
    "/{job_id}/metrics",
    responses={
        **responses(401, 404, 422, 429),
        200: {"content": {"application/json": {}, "text/csv": {}}},
    },
)
def metrics(
    job: OwnedJob,
    store: StoreDep,
    since: Annotated[int, Query(ge=-1)] = -1,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """Metric points with step > since, as JSON or (Accept: text/csv) CSV."""
    points = store.metrics.points(job.id, since)
    if accept and "text/csv" in accept:
        return Response(metrics_csv(points), media_type="text/csv")
    return Response(json.dumps(points), media_type="application/json")


@router.get(
    "/{job_id}/events",
    responses={**responses(401, 404, 422, 429), 200: {"content": {"text/event-stream": {}}}},
)
def events(
    request: Request,
    job: OwnedJob,
    user: CurrentUser,
    store: StoreDep,
    reads: ReadsDep,
    last_event_id: Annotated[
        str | None,
        # the pattern is documented (CURSOR_SCHEMA) and checked below, where the 422
        # names the header as clients know it
        Header(description="Resume after this event (the `id:` of the last one received)."),
        CURSOR_SCHEMA,
    ] = None,
    after: Annotated[
        str | None,
        Query(
            description="As Last-Event-ID, for clients that cannot set headers.",
            pattern=CURSOR_PATTERN,
        ),
        CURSOR_SCHEMA,
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: `state` on every state change, `metric` per metric point, live
    until the job ends (pushed by XREAD BLOCK, not polled). Each event's `id:` is its
    position in the job's two Redis streams (`<metrics id>,<events id>`); reconnect with
    it as Last-Event-ID to get every later event exactly once. `:` comment lines keep a
    quiet stream open. The stream ends once its API key is rotated or its user deleted."""
    cursor = parse_cursor(last_event_id or after)
    if cursor is None:
        detail = "Last-Event-ID: expected the id of an event of this stream, like 1-0,1-0"
        raise ProblemError(
            422, "Invalid request", detail, errors=[{"loc": "Last-Event-ID", "msg": detail}]
        )
    job_id = job.id
    api_key = bearer(request.headers.get("authorization"))

    async def allowed() -> bool:
        """The stream's key still names its user (not rotated, the user not deleted)."""
        return await reads.key_holder(api_key) == user

    frames = job_events(
        request.app.state.stream_redis,
        store.key("job", job_id),
        store.key("job", job_id, "metrics"),
        store.key("job", job_id, "events"),
        after=cursor,
        allowed=allowed,
    )
    return StreamingResponse(
        frames,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{job_id}/result", responses=responses(401, 404, 409, 422, 429))
def result(job: OwnedJob) -> dict[str, Any]:
    """result.json of a finished job."""
    if job.result is None:
        raise ProblemError(409, "Conflict", f"job is {job.state}; no result yet")
    return job.result


@router.get("/{job_id}/artifacts", responses=responses(401, 404, 422, 429))
def artifacts(job: OwnedJob, store: StoreDep) -> list[str]:
    return store.artifacts.names(job.id)


MEDIA = {
    ".png": "image/png",
    ".csv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
}


@router.get(
    "/{job_id}/artifacts/{name}",
    responses={
        **responses(401, 404, 410, 422, 429),
        # every type an artifact is served as (timeline.png was undocumented)
        200: {"content": {media: {} for media in (*MEDIA.values(), "application/octet-stream")}},
    },
)
def artifact(job_id: JobId, name: ArtifactName, user: CurrentUser, store: StoreDep) -> Response:
    """One artifact; big ones stream from the artifact store's file. 410 if the store's
    file has gone (removed outside the service, or this API does not see the store)."""
    # the id and the name are checked together (422 for either, whoever asks) before the
    # job is looked up: as OwnedJob, a 404 for another user's job came before the name's
    job = owned_job(job_id, user, store)
    found = store.artifacts.find(job.id, name)
    if found is None:
        raise ProblemError(404, "Not Found", f"no artifact {name!r}")
    suffix = name[name.rfind(".") :] if "." in name else ""
    media_type = MEDIA.get(suffix, "application/octet-stream")
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    if isinstance(found, bytes):
        return Response(found, media_type=media_type, headers=disposition)
    if store.artifact_dir is None:
        detail = (
            f"artifact {name!r} is kept in the artifact store, which this API does not see "
            "(set AIMC_ARTIFACT_DIR to the store's directory)"
        )
        raise ProblemError(410, "Gone", detail)
    path = store.artifact_dir / found
    if not path.is_file():
        detail = (
            f"artifact {name!r} is gone from the artifact store (removed outside the "
            "service); the job's other artifacts and metrics are kept; run it again for it"
        )
        raise ProblemError(410, "Gone", detail)
    return FileResponse(path, media_type=media_type, headers=disposition)


@router.post("/{job_id}/cancel", response_model=JobOut, responses=responses(401, 404, 422, 429))
def cancel(job: OwnedJob, store: StoreDep) -> JobOut:
    """Cooperative: a running job stops at its next check; a queued one never starts."""
    if not job.ended:
        store.jobs.request_cancel(job.id)
        if job.state == JobState.QUEUED:
            store.jobs.set_state(job.id, JobState.CANCELLED)
    refreshed = store.jobs.get(job.id)
    assert refreshed is not None
    return job_out(refreshed)


@router.delete("/{job_id}", status_code=204, responses=responses(401, 404, 409, 422, 429))
def delete(job: OwnedJob, store: StoreDep) -> Response:
    """Remove a finished job and all its data."""
    if not job.ended:
        raise ProblemError(409, "Conflict", f"job is {job.state}; cancel it first")
    store.jobs.delete(job.id)
    return Response(status_code=204)
