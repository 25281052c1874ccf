"""/v1/sweeps: one base spec and a grid of overrides -> one job per combination, and
their comparison (states, final metrics, an overlay plot of the loss curves)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, Field

from aimc_spec.comparison import final_metrics, plot_overlay
from aimc_spec.spec import SpecError
from aimc_spec.sweep import MAX_SWEEP_JOBS, expand, label
from aimc_spec.vocabulary import TERMINAL
from service.admission import check_room, check_spec, queue_job
from service.deps import CurrentUser, OwnedSweep, SettingsDep, StoreDep
from service.errors import ProblemError, responses
from service.store import JobStore

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


class SweepIn(BaseModel):
    name: str = Field("sweep", min_length=1, max_length=100, description="Names the sweep.")
    spec: dict[str, Any] = Field(
        default_factory=dict, description="The base job spec every combination starts from."
    )
    grid: dict[str, list[Any]] = Field(
        description=(
            "Dotted spec paths to the values to try, e.g. {'pipeline.schedule': ['gpipe', "
            "'async'], 'analog.device.states': [300, 1200]}; at most "
            f"{MAX_SWEEP_JOBS} combinations."
        ),
        examples=[{"pipeline.schedule": ["gpipe", "async"]}],
    )


class SweepJob(BaseModel):
    id: str
    overrides: dict[str, Any]
    state: str = Field(description="The job's state; `expired` once it was deleted or expired.")
    final: dict[str, Any] = Field(description="Its latest metric point's comparison columns.")


class SweepOut(BaseModel):
    id: str
    name: str
    created: float
    grid: dict[str, list[Any]]
    jobs: list[SweepJob]
    states: dict[str, int] = Field(description="How many jobs are in each state.")
    done: bool = Field(description="Every job has ended; the plot is final.")
    plot: str = Field(description="Path of the overlay plot (PNG).")


def _state(store: JobStore, job_id: str) -> str:
    job = store.get_job(job_id)
    return str(job["state"]) if job else "expired"


def _done(states: list[str]) -> bool:
    return all(state in (*TERMINAL, "expired") for state in states)


def _view(store: JobStore, sweep: dict[str, Any]) -> SweepOut:
    jobs = []
    for member in sweep["members"]:
        state = _state(store, member["job"])
        latest = store.latest_metric(member["job"]) if state != "expired" else None
        final = final_metrics([latest]) if latest else {}
        jobs.append(
            SweepJob(id=member["job"], overrides=member["overrides"], state=state, final=final)
        )
    return SweepOut(
        id=sweep["id"],
        name=sweep["name"],
        created=sweep["created"],
        grid=sweep["grid"],
        jobs=jobs,
        states=dict(Counter(j.state for j in jobs)),
        done=_done([j.state for j in jobs]),
        plot=f"/v1/sweeps/{sweep['id']}/plot.png",
    )


@router.post(
    "", status_code=202, response_model=SweepOut, responses=responses(400, 401, 413, 422, 429)
)
def create_sweep(
    request: Request,
    response: Response,
    user: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    body: Annotated[SweepIn, Body()],
) -> SweepOut:
    """Validate every combination, then queue one job each; nothing is queued if any
    combination is invalid (422 naming the grid entry and the combination)."""
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
    members = []
    for point in points:
        normalised = point.spec.normalised()
        normalised["name"] = f"{body.name} [{point.label}]"[:200]
        job = queue_job(request, store, settings, user, normalised, room_checked=True)
        members.append({"job": job["id"], "overrides": point.overrides})
    sweep_id = store.create_sweep(user, body.name, body.grid, members)
    response.headers["Location"] = f"/v1/sweeps/{sweep_id}"
    sweep = store.sweep(sweep_id)
    assert sweep is not None
    return _view(store, sweep)


@router.get("", response_model=list[SweepOut], responses=responses(401, 429))
def list_sweeps(user: CurrentUser, store: StoreDep) -> list[SweepOut]:
    """The caller's sweeps, newest first."""
    sweeps = (store.sweep(s) for s in store.sweep_ids(user))
    return [_view(store, s) for s in sweeps if s is not None]


@router.get("/{sweep_id}", response_model=SweepOut, responses=responses(401, 404, 429))
def get_sweep(sweep: OwnedSweep, store: StoreDep) -> SweepOut:
    """The sweep's jobs with their states and final metrics."""
    return _view(store, sweep)


@router.get(
    "/{sweep_id}/plot.png",
    responses={**responses(401, 404, 429), 200: {"content": {"image/png": {}}}},
)
def sweep_plot(sweep: OwnedSweep, store: StoreDep) -> Response:
    """Test loss against samples and simulated time, one line per job (drawn from the
    points so far while jobs run; kept once all have ended)."""
    sweep_id = sweep["id"]
    png = store.sweep_plot(sweep_id)
    if png is None:
        done = _done([_state(store, m["job"]) for m in sweep["members"]])
        series = [(label(m["overrides"]), store.metrics(m["job"])) for m in sweep["members"]]
        png = plot_overlay(series, f"sweep {sweep['name']} ({sweep_id})")
        if done:
            store.finish_sweep(sweep_id, png)
    return Response(png, media_type="image/png")
