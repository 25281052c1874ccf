"""Uploaded .npz datasets: the record (sizes, shape, classes) and the bytes, kept until
their owner deletes them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aimc_store.base import Part
from aimc_store.records import Dataset


class StorageFull(Exception):
    """An upload that would take its owner's datasets past their storage limit."""

    def __init__(self, used: int, size: int, limit: int) -> None:
        super().__init__(f"{used} bytes kept + {size} > {limit}")
        self.used, self.size, self.limit = used, size, limit


class Datasets(Part):
    """`store.datasets`: each user's uploads."""

    def put(
        self,
        owner: str,
        name: str,
        data: bytes,
        info: dict[str, Any],
        *,
        limit: int | None = None,
    ) -> str:
        """Keep a checked upload; `info` is aimc_spec.dataset_files.describe's. Its id.
        Raises StorageFull, keeping nothing, if the owner's datasets would pass `limit`
        bytes (checked and kept in one script: two uploads cannot both squeeze in)."""
        dataset_id = "ds_" + uuid.uuid4().hex[:16]
        keys = [
            self.key("dataset", dataset_id),
            self.key("dataset", dataset_id, "data"),
            self.key("user", owner, "datasets"),
        ]
        args = [
            -1 if limit is None else limit,
            dataset_id,
            owner,
            name,
            repr(time.time()),
            len(data),
            json.dumps(info),
            data,
            self.key("dataset", ""),
        ]
        used = int(self.scripts.put_dataset(keys=keys, args=args))
        if used >= 0:
            raise StorageFull(used, len(data), limit if limit is not None else -1)
        return dataset_id

    def usage(self, owner: str) -> int:
        """Bytes of the owner's kept uploads."""
        pipe = self.r.pipeline(transaction=False)
        for dataset_id in self.ids(owner):
            pipe.hget(self.key("dataset", dataset_id), "bytes")
        return sum(int(n) for n in pipe.execute() if n is not None)

    def get(self, dataset_id: str) -> Dataset | None:
        """The dataset's record (no bytes), or None."""
        record = self.backend.text_hash(self.key("dataset", dataset_id))
        if record is None:
            return None
        info = json.loads(record["info"])
        return Dataset(
            id=dataset_id,
            owner=record["owner"],
            name=record["name"],
            created=float(record["created"]),
            bytes=int(record["bytes"]),
            n_train=int(info["n_train"]),
            n_test=int(info["n_test"]),
            sample_shape=[int(n) for n in info["sample_shape"]],
            classes=int(info["classes"]),
            x_dtype=str(info["x_dtype"]),
        )

    def read(self, dataset_id: str) -> bytes | None:
        data = self.r.get(self.key("dataset", dataset_id, "data"))
        return bytes(data) if data is not None else None

    def ids(self, owner: str) -> list[str]:
        """The owner's datasets, newest first."""
        return [d.decode() for d in self.r.zrevrange(self.key("user", owner, "datasets"), 0, -1)]

    def delete(self, dataset_id: str, owner: str) -> None:
        pipe = self.r.pipeline()
        pipe.delete(self.key("dataset", dataset_id), self.key("dataset", dataset_id, "data"))
        pipe.zrem(self.key("user", owner, "datasets"), dataset_id)
        pipe.execute()
