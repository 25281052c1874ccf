"""The API's request and response bodies, in one place: what a client sends and gets
back, as the OpenAPI document names them. The routes (service/routes/) build these from
the store's records (aimc_store.records); the job spec's own models are aimc_spec's."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from aimc_spec.sweep import GRID_PATHS, MAX_SWEEP_JOBS, grid_path_problem
from aimc_spec.vocabulary import JobState
from aimc_store.records import Dataset, User


# RFC 9457 problem+json; service/errors.py turns every error into one
class Problem(BaseModel):
    """The body of every error response."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


# jobs ------------------------------------------------------------------------
class JobOut(BaseModel):
    id: str
    name: str
    state: str
    progress: float
    attempts: int
    created: float
    started: float | None = None
    finished: float | None = None
    engine_finished: float | None = Field(
        None, description="When the engine's training ended (then artifacts were stored)."
    )
    error: str | None = None
    latest_metrics: dict[str, Any] | None = None
    eta_seconds: float | None = None
    spec: dict[str, Any]


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


# sweeps ----------------------------------------------------------------------


def _grid_path(path: str) -> str:
    """A grid key the spec has (aimc_spec.sweep.GRID_PATHS); else a 422 naming it."""
    if (problem := grid_path_problem(path)) is not None:
        raise PydanticCustomError("grid_path", problem)  # the message as it is
    return path


# documented as the list of allowed paths: the document allows exactly the keys the API
# takes (a pattern allowed `foo.bar`, which the API refused)
GridPath = Annotated[
    str, AfterValidator(_grid_path), WithJsonSchema({"type": "string", "enum": [*GRID_PATHS]})
]


class SweepIn(BaseModel):
    name: str = Field("sweep", min_length=1, max_length=100, description="Names the sweep.")
    spec: dict[str, Any] = Field(
        default_factory=dict, description="The base job spec every combination starts from."
    )
    grid: dict[GridPath, Annotated[list[Any], Field(min_length=1)]] = Field(
        min_length=1,
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
    state: str = Field(
        description=f"The job's state; `{JobState.EXPIRED}` once deleted or expired."
    )
    final: dict[str, Any] = Field(description="Its latest metric point's comparison columns.")


class SweepOut(BaseModel):
    id: str
    name: str
    created: float
    grid: dict[str, list[Any]]
    jobs: list[SweepJob]
    states: dict[str, int] = Field(description="How many jobs are in each state.")
    done: bool = Field(description="Every job has ended and a worker has drawn the overlay plot.")
    plot: str = Field(description="Path of the overlay plot (PNG).")


# configurations ---------------------------------------------------------------
class ConfigOut(BaseModel):
    """One aihwkit training configuration, as `analog.config` takes it."""

    name: str = Field(description="aihwkit's class name, e.g. TTv2EcRamPreset.")
    alias: str = Field(description="aimc's snake_case name for it, e.g. ttv2_ecram.")
    summary: str = Field(description="What it trains with, in one line.")
    spec: dict[str, Any] = Field(
        description="The part of a job spec it expands to (analog, optimizer)."
    )


# datasets --------------------------------------------------------------------
class DatasetOut(BaseModel):
    id: str
    name: str
    created: float
    bytes: int
    n_train: int
    n_test: int
    sample_shape: list[int]
    classes: int
    x_dtype: str

    @classmethod
    def of(cls, record: Dataset) -> DatasetOut:
        """The public view of a stored dataset (its owner is not shown)."""
        return cls.model_validate(record, from_attributes=True)


# users -----------------------------------------------------------------------
class NewUser(BaseModel):
    name: str = Field(
        min_length=1,
        max_length=100,
        # NUL, CR, LF and the other control characters split log lines and headers
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Who the key is for; unique on the service; no control characters.",
    )


class UserOut(BaseModel):
    id: str
    name: str
    created: float

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, name=user.name, created=user.created)


class UserKey(BaseModel):
    id: str
    name: str
    api_key: str = Field(description="Shown once; only its hash is stored.")
