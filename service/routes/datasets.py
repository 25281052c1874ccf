"""/v1/datasets: upload an .npz dataset (checked before it is kept), list, get, delete.

A spec trains on an upload with `dataset: {name: uploaded, id: <id>}`; only the uploader
sees it or can use it (anyone else gets 404, or 422 at submit, as if it did not exist).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response

from aimc_spec.dataset_files import DatasetError
from aimc_store.datasets import StorageFull
from aimc_store.records import Dataset
from aimc_store.store import JobStore
from service.deps import CurrentUser, OwnedDataset, SettingsDep, StoreDep
from service.errors import ProblemError, responses
from service.schemas import DatasetOut
from service.settings import Settings

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
UNPACKED_FACTOR = 4  # an upload may decompress to at most this times the upload limit


def _invalid(detail: str) -> ProblemError:
    return ProblemError(422, "Invalid dataset", detail, errors=[{"loc": "file", "msg": detail}])


async def _read_body(request: Request, limit: int) -> bytes:
    """The upload, refused with 413 as soon as it passes `limit` (chunked bodies too)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(
                413, "Payload Too Large", f"upload over {limit} bytes (max_dataset_bytes)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    responses=responses(401, 413, 422, 429),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": (
                "An .npz archive with x_train, y_train, x_test, y_test, as its bytes (read "
                "as the archive whatever the Content-Type says); other bytes get a 422 "
                "naming what is wrong with them."
            ),
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    request: Request,
    user: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    name: Annotated[str, Query(min_length=1, max_length=200)] = "dataset",
) -> DatasetOut:
    """Check the arrays (keys, shapes, dtypes, labels, finite values) and keep them."""
    data = await _read_body(request, settings.max_dataset_bytes)
    if not data:
        raise _invalid(
            "empty body; send the .npz file's bytes (Content-Type: application/octet-stream)"
        )
    # unpacking and checking a 64 MB archive takes seconds of CPU: in a process of its
    # own (service/upload_checks.py); storing it is a blocking Redis write: in a thread.
    # The event loop (/healthz, every other request) waits for neither.
    try:
        info = await request.app.state.upload_checks.check(
            data, UNPACKED_FACTOR * settings.max_dataset_bytes
        )
    except DatasetError as exc:
        raise _invalid(str(exc)) from None
    record = await anyio.to_thread.run_sync(_keep, store, settings, user, name, data, info)
    return DatasetOut.of(record)


def _keep(
    store: JobStore, settings: Settings, user: str, name: str, data: bytes, info: dict[str, Any]
) -> Dataset:
    """Keep a checked upload within its owner's storage limit; its record (413 past it)."""
    try:
        dataset_id = store.datasets.put(
            user, name, data, info, limit=settings.max_user_dataset_bytes
        )
    except StorageFull as full:
        detail = (
            f"your datasets keep {full.used} bytes; this upload of {full.size} would pass "
            f"the limit max_user_dataset_bytes = {full.limit}: delete a dataset first"
        )
        raise ProblemError(
            413, "Storage quota exceeded", detail, errors=[{"loc": "file", "msg": detail}]
        ) from None
    record = store.datasets.get(dataset_id)
    assert record is not None  # just stored
    return record


@router.get("", response_model=list[DatasetOut], responses=responses(401, 429))
def list_datasets(user: CurrentUser, store: StoreDep) -> list[DatasetOut]:
    """The caller's uploads, newest first."""
    records = (store.datasets.get(d) for d in store.datasets.ids(user))
    return [DatasetOut.of(r) for r in records if r is not None]


@router.get("/{dataset_id}", response_model=DatasetOut, responses=responses(401, 404, 422, 429))
def get_dataset(record: OwnedDataset) -> DatasetOut:
    return DatasetOut.of(record)


@router.delete("/{dataset_id}", status_code=204, responses=responses(401, 404, 422, 429))
def delete_dataset(record: OwnedDataset, store: StoreDep) -> Response:
    """Remove the upload; queued jobs that name it fail with a clear error."""
    store.datasets.delete(record.id, record.owner)
    return Response(status_code=204)
