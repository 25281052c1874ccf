"""Dataset arrays from .npz files: reading and checking them, without torch.

Shared by the engine (which loads `npz` and `uploaded` datasets) and the API (which
checks an upload before it accepts it), so an upload the API took is one the engine
can train on, and both say what is wrong in the same words.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the field or file."""


def read_npz(
    source: Path | bytes, where: str, max_unpacked: int | None = None
) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) from an .npz file or its bytes; `where` names the
    source in messages (a spec field, an upload). Pickled arrays are refused, and with
    `max_unpacked` so is an archive that would decompress to more bytes (a zip bomb)."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    if max_unpacked is not None:
        _check_unpacked(stream, where, max_unpacked)
    try:
        handle = np.load(stream)
        with handle as data:
            if not hasattr(data, "files"):
                raise DatasetError(f"{where}: holds one array, not an .npz archive of arrays")
            missing = set(NPZ_KEYS) - set(data.files)
            if missing:
                raise DatasetError(
                    f"{where}: lacks {sorted(missing)}; an npz dataset needs "
                    "x_train, y_train, x_test, y_test"
                )
            return tuple(data[k] for k in NPZ_KEYS)
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        reason = "it holds pickled objects" if "pickle" in str(exc) else str(exc)
        raise DatasetError(f"{where}: cannot read as .npz: {reason}") from None


def _check_unpacked(stream: Path | io.BytesIO, where: str, limit: int) -> None:
    try:
        with zipfile.ZipFile(stream) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        raise DatasetError(f"{where}: not an .npz (zip) archive") from None
    if unpacked > limit:
        raise DatasetError(f"{where}: unpacks to {unpacked} bytes; the limit is {limit}")
    if isinstance(stream, io.BytesIO):
        stream.seek(0)


def check_arrays(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> int:
    """Validate shapes, dtypes and labels; return the number of classes."""
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
            raise DatasetError(
                f"dataset: x_{name} must be (N, features...) and y_{name} (N,) with N > 0; "
                f"got {x.shape} and {y.shape}"
            )
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DatasetError(f"dataset: x_{name} must be real numbers, got {x.dtype}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"dataset: y_{name} must hold integer class labels, got {y.dtype}")
        if y.min() < 0:
            raise DatasetError(f"dataset: y_{name} has negative labels")
        if not np.isfinite(x).all():
            raise DatasetError(f"dataset: x_{name} has NaN or infinite values")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"dataset: x_train samples are {x_train.shape[1:]} but x_test's are {x_test.shape[1:]}"
        )
    classes = int(max(y_train.max(), y_test.max())) + 1
    if classes < 2:
        raise DatasetError("dataset: labels name only one class; classification needs two")
    return classes


def describe(arrays: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """What a user sees of a checked dataset: sizes, sample shape, classes, dtype."""
    x_train, y_train, x_test, y_test = arrays
    return {
        "n_train": len(x_train),
        "n_test": len(x_test),
        "sample_shape": list(x_train.shape[1:]),
        "classes": check_arrays(x_train, y_train, x_test, y_test),
        "x_dtype": str(x_train.dtype),
    }
