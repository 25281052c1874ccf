"""/v1/sweeps: one base spec and a grid of overrides -> one job per combination, and
their comparison (states, final metrics, an overlay plot of the loss curves)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Body, Header, Request, Response

from aimc_spec.spec import SpecError
from aimc_spec.sweep import expand
from aimc_spec.vocabulary import DRAW_SWEEP_PLOT_TASK, JobState
from aimc_store.records import Sweep
from aimc_store.store import JobStore
from aimc_store.sweeps import all_ended
from aimc_study.comparison import final_metrics
from service.admission import check_room, check_spec, check_storage, send
from service.deps import CurrentUser, OwnedSweep, SettingsDep, StoreDep
from service.errors import ProblemError, responses
from service.idempotency import body_digest, made_before, remember
from service.schemas import SweepIn, SweepJob, SweepOut

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


PLOT_RETRY_AFTER_S = 2  # a worker draws an ended sweep's plot in about a second
PLOT_ASK_EVERY_S = 60  # an ended sweep without a plot: ask the workers at most this often


def _ask_for_plot(request: Request, store: JobStore, sweep_id: str) -> None:
    """Have a worker draw the plot of an ended sweep that has none: its last job ended
    while no worker could tell it was the sweep's last (the API never draws)."""
    if store.sweeps.ask_for_plot(sweep_id, PLOT_ASK_EVERY_S):
        request.app.state.celery.send_task(
            DRAW_SWEEP_PLOT_TASK,
            args=[sweep_id],
            queue=request.app.state.settings.queue,
            ignore_result=True,
        )


def _view(request: Request, store: JobStore, sweep: Sweep) -> SweepOut:
    jobs = []
    states = store.sweeps.member_states(sweep)
    for member, state in zip(sweep.members, states, strict=True):
        latest = store.metrics.latest(member.job) if state != JobState.EXPIRED else None
        final = final_metrics([latest]) if latest else {}
        jobs.append(SweepJob(id=member.job, overrides=member.overrides, state=state, final=final))
    ended = all_ended(states)
    plotted = ended and store.sweeps.has_plot(sweep.id)
    if ended and not plotted:
        _ask_for_plot(request, store, sweep.id)
    return SweepOut(
        id=sweep.id,
        name=sweep.name,
        created=sweep.created,
        grid=sweep.grid,
        jobs=jobs,
        states=dict(Counter(j.state for j in jobs)),
        done=plotted,
        plot=f"/v1/sweeps/{sweep.id}/plot.png",
    )


@router.post(
    "",
    status_code=202,
    response_model=SweepOut,
    responses=responses(400, 401, 409, 413, 422, 429),
)
def create_sweep(
    request: Request,
    response: Response,
    user: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    body: Annotated[SweepIn, Body()],
    idempotency_key: Annotated[str | None, Header()] = None,
) -> SweepOut:
    """Validate every combination, then queue one job each; nothing is queued if any
    combination is invalid (422 naming the grid entry and the combination). The same
    Idempotency-Key and body return the same sweep (even once the queue is full) while
    all its jobs exist; one with a job deleted or expired is queued anew (a resumed
    study sends its request again to replace such jobs)."""
    digest = body_digest(body.model_dump(mode="json"))
    made = made_before(store, user, idempotency_key, digest)
    sweep = store.sweeps.get(made) if made is not None else None
    if sweep is not None and JobState.EXPIRED not in store.sweeps.member_states(sweep):
        response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
        return _view(request, store, sweep)
    try:
        points = expand(body.spec, body.grid)
    except SpecError as exc:
        errors = [{"loc": loc, "msg": msg} for loc, msg in exc.problems]
        raise ProblemError(
            422,
            "Invalid sweep",
            "; ".join(f"{e['loc']}: {e['msg']}" for e in errors),
            errors=errors,
        ) from None
    for point in points:
        check_spec(point.spec, store, settings, user, at=f"grid[{point.label}].")
    check_room(store, settings, user, len(points))
    check_storage(store, settings, user)
    specs = []
    for point in points:
        normalised = point.spec.normalised()
        normalised["name"] = f"{body.name} [{point.label}]"[:200]
        specs.append((normalised, point.overrides))
    # the jobs and the sweep in one transaction (all or nothing), recorded before any
    # job is sent: the worker that ends the last job sees the sweep
    sweep, jobs = store.sweeps.admit(user, body.name, body.grid, specs)
    remember(store, user, idempotency_key, digest, sweep.id)
    # the owner's jobs already waiting
    before = store.jobs.count_in(user, JobState.QUEUED) - len(jobs)
    for rank, job in enumerate(jobs):
        send(request, job.id, ahead=before + rank)
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    return _view(request, store, sweep)


@router.get("", response_model=list[SweepOut], responses=responses(401, 429))
def list_sweeps(request: Request, user: CurrentUser, store: StoreDep) -> list[SweepOut]:
    """The caller's sweeps, newest first."""
    sweeps = (store.sweeps.get(s) for s in store.sweeps.ids(user))
    return [_view(request, store, s) for s in sweeps if s is not None]


@router.get("/{sweep_id}", response_model=SweepOut, responses=responses(401, 404, 422, 429))
def get_sweep(request: Request, sweep: OwnedSweep, store: StoreDep) -> SweepOut:
    """The sweep's jobs with their states and final metrics; `done` once every job has
    ended and the overlay plot is drawn."""
    return _view(request, store, sweep)


@router.get(
    "/{sweep_id}/plot.png",
    responses={**responses(401, 404, 409, 422, 429), 200: {"content": {"image/png": {}}}},
)
def sweep_plot(request: Request, sweep: OwnedSweep, store: StoreDep) -> Response:
    """Test loss against samples and simulated time, one line per setting (the mean over
    its seeds with a 95% band): drawn by a worker once every job has ended (409 with
    Retry-After until then)."""
    sweep_id = sweep.id
    png = store.sweeps.plot(sweep_id)
    if png is not None:
        return Response(png, media_type="image/png")
    states = store.sweeps.member_states(sweep)
    unended = [state for state in states if not all_ended([state])]
    if unended:
        detail = (
            f"{len(unended)} of the sweep's {len(states)} jobs have not ended; the overlay plot "
            "is drawn when the last one ends (compare the jobs so far with GET "
            f"/v1/sweeps/{sweep_id})"
        )
        retry = "30"
    else:
        _ask_for_plot(request, store, sweep_id)
        detail = "every job has ended; a worker is drawing the overlay plot: retry shortly"
        retry = str(PLOT_RETRY_AFTER_S)
    raise ProblemError(409, "Conflict", detail, headers={"Retry-After": retry})
