"""CIFAR-10 in its python format: the `cifar-10-batches-py` folder on an operator's disk.

The folder holds five training batches `data_batch_1` .. `data_batch_5` and `test_batch`,
each a pickled dict with `data` (N, 3072) uint8, one row per image, channel-major: 1024
red, 1024 green, 1024 blue values of a 32x32 image, rows first; and `labels` (N,) in 0..9.
The official files were pickled by Python 2, so their keys are bytes (b"data").

A pickle can run code when loaded. These files are read on a worker on behalf of whoever
submitted the spec, so they are unpickled by an Unpickler that resolves only the handful of
numpy names an ndarray needs; any other object in the file is refused, not built.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from aimc_spec.dataset_files import DatasetError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)  # (channels, height, width)

# The globals a pickled ndarray refers to (numpy 1.x writes numpy.core, 2.x numpy._core),
# and the codec Python 3 writes bytes with at protocol 2 (a pure function).
_ALLOWED = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of one python-format batch file."""
    where = f"dataset.path: {path.parent.name}/{path.name}"
    try:
        with path.open("rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
    except OSError as exc:
        raise DatasetError(f"{where}: cannot read: {exc.strerror}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{where}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: not a CIFAR-10 python batch (holds no dict)")
    entries = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in entries or "labels" not in entries:
        raise DatasetError(f"{where}: lacks 'data' or 'labels'")
    data, labels = np.asarray(entries["data"]), np.asarray(entries["labels"])
    size = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        raise DatasetError(
            f"{where}: data must be uint8 (N, {size}), got {data.dtype} {tuple(data.shape)}"
        )
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{where}: labels must be {len(data)} integers")
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64)


def read_cifar10(folder: Path) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) from a cifar-10-batches-py folder, images uint8."""
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / n).is_file()]
    if missing:
        raise DatasetError(
            f"dataset.path: {folder} lacks {', '.join(missing)}; expected the python-format "
            "CIFAR-10 folder (cifar-10-batches-py: data_batch_1..5 and test_batch)"
        )
    train = [read_batch(folder / n) for n in TRAIN_BATCHES]
    x_test, y_test = read_batch(folder / TEST_BATCH)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test
