"""Uploaded .npz datasets: the record (sizes, shape, classes) and the bytes, kept until
their owner deletes them."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aimc_store.base import StoreBase
from aimc_store.records import Dataset


class Datasets(StoreBase):
    def put_dataset(self, owner: str, name: str, data: bytes, info: dict[str, Any]) -> str:
        """Keep a checked upload; `info` is aimc_spec.dataset_files.describe's. Its id."""
        dataset_id = "ds_" + uuid.uuid4().hex[:16]
        now = time.time()
        pipe = self.r.pipeline()
        pipe.hset(
            self.key("dataset", dataset_id),
            mapping={
                "owner": owner,
                "name": name,
                "created": now,
                "bytes": len(data),
                "info": json.dumps(info),
            },
        )
        pipe.set(self.key("dataset", dataset_id, "data"), data)
        pipe.zadd(self.key("user", owner, "datasets"), {dataset_id: now})
        pipe.execute()
        return dataset_id

    def dataset(self, dataset_id: str) -> Dataset | None:
        """The dataset's record (no bytes), or None."""
        record = self._text_hash(self.key("dataset", dataset_id))
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

    def dataset_bytes(self, dataset_id: str) -> bytes | None:
        data = self.r.get(self.key("dataset", dataset_id, "data"))
        return bytes(data) if data is not None else None

    def dataset_ids(self, owner: str) -> list[str]:
        """The owner's datasets, newest first."""
        return [d.decode() for d in self.r.zrevrange(self.key("user", owner, "datasets"), 0, -1)]

    def delete_dataset(self, dataset_id: str, owner: str) -> None:
        pipe = self.r.pipeline()
        pipe.delete(self.key("dataset", dataset_id), self.key("dataset", dataset_id, "data"))
        pipe.zrem(self.key("user", owner, "datasets"), dataset_id)
        pipe.execute()
