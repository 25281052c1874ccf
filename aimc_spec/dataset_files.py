"""Dataset arrays from .npz files: reading and checking them, without torch.

Shared by the engine (which loads `npz` and `uploaded` datasets) and the API (which
checks an upload before it accepts it), so an upload the API took is one the engine
can train on, and both say what is wrong in the same words.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
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
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # a damaged archive: a flipped byte (bad CRC, a corrupt deflate stream), a member
        # shorter or longer than its entry says
        reason = "it holds pickled objects" if "pickle" in str(exc) else str(exc)
        raise DatasetError(f"{where}: cannot read as .npz: {reason}") from None


def _check_unpacked(stream: Path | io.BytesIO, where: str, limit: int) -> None:
    """Refuse, before any array is allocated, an archive that would unpack to more than
    `limit` bytes, or whose member's .npy header claims more data than the member's entry
    holds (a (2**40, 16) header in a small file made numpy allocate 140 TB: MemoryError)."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise DatasetError(f"{where}: not an .npz (zip) archive") from None
    with archive:
        members = archive.infolist()
        unpacked = sum(info.file_size for info in members)
        if unpacked > limit:
            raise DatasetError(f"{where}: unpacks to {unpacked} bytes; the limit is {limit}")
        try:
            for info in members:
                if info.filename.endswith(".npy"):
                    _check_header(archive, info, where)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
            # a flipped byte (bad CRC, a broken deflate stream), an entry whose size lies
            raise DatasetError(f"{where}: cannot read as .npz: {exc}") from None
    if isinstance(stream, io.BytesIO):
        stream.seek(0)


def _check_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> None:
    """The member's .npy header names a shape and dtype whose bytes its entry holds."""
    name = info.filename.removesuffix(".npy")
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise DatasetError(f"{where}: {name} is .npy format {version}; 1.0 or 2.0 only")
        except DatasetError:
            raise
        except ValueError as exc:
            raise DatasetError(f"{where}: {name} has no valid .npy header: {exc}") from None
        if dtype.hasobject:
            raise DatasetError(f"{where}: {name}: cannot read as .npz: it holds pickled objects")
        needed = math.prod(shape) * dtype.itemsize
        held = info.file_size - member.tell()
        if needed > held:
            raise DatasetError(
                f"{where}: {name}'s header claims shape {tuple(shape)} of {dtype} "
                f"({needed} bytes) but its entry holds {held} bytes"
            )


def checked_info(data: bytes, max_unpacked: int) -> dict[str, Any]:
    """describe() of an upload's bytes, read with the unpacked limit (a function of the
    module, so a process pool can run it: service/upload_checks.py)."""
    return describe(read_npz(data, "upload", max_unpacked=max_unpacked))


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
