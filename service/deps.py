"""Dependencies injected into routes: settings, the store, the current user, and the
caller's own job, sweep or dataset (404 alike for a missing one and another user's)."""

from __future__ import annotations

import hmac
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Header, Request

from aimc_store.reads import AsyncReads
from aimc_store.records import Dataset, Job, Sweep
from aimc_store.store import JobStore
from service.errors import ProblemError
from service.ids import DatasetId, JobId, SweepId
from service.settings import Settings, get_settings


async def app_settings(request: Request) -> Settings:
    """The settings the app was created with (create_app), else the environment's (async:
    no thread hop for a dependency that does no I/O)."""
    return getattr(request.app.state, "settings", None) or get_settings()


SettingsDep = Annotated[Settings, Depends(app_settings)]


async def get_store(request: Request) -> JobStore:
    """Async only so FastAPI calls it inline: a sync dependency costs a thread hop."""
    return request.app.state.store  # type: ignore[no-any-return]


StoreDep = Annotated[JobStore, Depends(get_store)]


def bearer(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise ProblemError(
            401,
            "Unauthorized",
            "send Authorization: Bearer <API key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return authorization[7:].strip()


async def get_reads(request: Request) -> AsyncReads:
    return request.app.state.reads  # type: ignore[no-any-return]


ReadsDep = Annotated[AsyncReads, Depends(get_reads)]


async def current_user(
    reads: ReadsDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> str:
    """The caller, by API key; each call counts against the per-minute rate (429 past it)."""
    found = await reads.authenticate(bearer(authorization), settings.requests_per_minute)
    return admitted(found, settings)


def admitted(found: tuple[str, int | None] | None, settings: Settings) -> str:
    """The user of an authenticate() answer: 401 for an unknown key, 429 over the rate."""
    if found is None:
        raise ProblemError(
            401, "Unauthorized", "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )
    user, retry = found
    if retry is not None:
        raise ProblemError(
            429,
            "Too Many Requests",
            f"over {settings.requests_per_minute} requests per minute",
            headers={"Retry-After": str(retry)},
        )
    return user


def admin(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """Only the admin key passes; compared in constant time, so response timing tells a
    guesser nothing about how much of a key was right."""
    given = bearer(authorization).encode()
    if not settings.admin_key or not hmac.compare_digest(given, settings.admin_key.encode()):
        raise ProblemError(
            401,
            "Unauthorized",
            "this route needs the admin key",
            headers={"WWW-Authenticate": "Bearer"},
        )


CurrentUser = Annotated[str, Depends(current_user)]


class _Owned(Protocol):
    @property
    def owner(self) -> str: ...


R = TypeVar("R", bound=_Owned)


def _yours(record: R | None, user: str, what: str, ident: str) -> R:
    """The record if it exists and is the caller's: 404 alike otherwise (do not reveal it)."""
    if record is None or record.owner != user:
        raise ProblemError(404, "Not Found", f"no {what} {ident!r}")
    return record


def owned_job(job_id: JobId, user: CurrentUser, store: StoreDep) -> Job:
    """The caller's job (404 for another user's, as for a missing one)."""
    return _yours(store.jobs.get(job_id), user, "job", job_id)


OwnedJob = Annotated[Job, Depends(owned_job)]


def owned_sweep(sweep_id: SweepId, user: CurrentUser, store: StoreDep) -> Sweep:
    """The caller's sweep (404 for another user's, as for a missing one)."""
    return _yours(store.sweeps.get(sweep_id), user, "sweep", sweep_id)


OwnedSweep = Annotated[Sweep, Depends(owned_sweep)]


def owned_dataset(dataset_id: DatasetId, user: CurrentUser, store: StoreDep) -> Dataset:
    """The caller's dataset record (404 for another user's, as for a missing one)."""
    return _yours(store.datasets.get(dataset_id), user, "dataset", dataset_id)


OwnedDataset = Annotated[Dataset, Depends(owned_dataset)]
