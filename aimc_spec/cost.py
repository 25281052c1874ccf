"""How much work a job is, from its spec alone (torch-free): samples x parameters.

The service refuses jobs above a ceiling so one request cannot occupy a worker
for days. Exact for the built-in datasets' sizes and the models' weight counts;
npz files are measured from their array headers; classes are taken as 10.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from aimc_spec.spec import JobSpec

CLASSES = 10
# (training samples, input shape) of the datasets whose size the spec does not give
KNOWN = {
    "digits": (round(1797 * 0.8), (1, 8, 8)),
    "mnist_idx": (60000, (1, 28, 28)),
    "mnist_subset": (4000, (1, 28, 28)),
    "cifar10": (50000, (3, 32, 32)),
}


@dataclass(frozen=True)
class JobCost:
    samples: int
    parameters: int

    @property
    def total(self) -> float:
        return float(self.samples) * self.parameters


def npz_train_shape(path: str) -> tuple[int, ...] | None:
    """Shape of x_train from its .npy header, without loading the array."""
    try:
        with zipfile.ZipFile(Path(path).expanduser()) as z, z.open("x_train.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read(f)
            return tuple(int(s) for s in shape)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def data_shape(
    spec: JobSpec, uploaded: tuple[int, tuple[int, ...]] | None
) -> tuple[int, tuple[int, ...]] | None:
    """(training samples, sample shape) of the spec's dataset as far as it is known without
    loading it; None for an npz file whose header cannot be read."""
    d = spec.dataset
    if d.name == "uploaded":
        return uploaded
    if d.name in KNOWN:
        return KNOWN[d.name]
    if d.name == "synthetic":
        return d.synthetic.n_train, (d.synthetic.features,)
    if d.name == "mnist1d":
        return d.mnist1d.n_train, (40,)
    shape = npz_train_shape(d.path) if d.path else None
    return None if shape is None else (shape[0], shape[1:])


def _data(
    spec: JobSpec, uploaded: tuple[int, tuple[int, ...]] | None
) -> tuple[int, tuple[int, ...]]:
    return data_shape(spec, uploaded) or (60000, (1, 28, 28))  # unknown: MNIST-sized


def parameters(spec: JobSpec, input_shape: tuple[int, ...]) -> int:
    """Weights and biases of the model the spec describes."""
    m = spec.model
    if m.kind == "mlp":
        widths = [math.prod(input_shape), *m.hidden, CLASSES]
        return sum(a * b + b for a, b in pairwise(widths))
    c = input_shape[0] if len(input_shape) == 3 else 1
    h = input_shape[-2] if len(input_shape) == 3 else math.isqrt(math.prod(input_shape))
    w = input_shape[-1] if len(input_shape) == 3 else h
    total = 0
    if m.kind == "cnn":
        for ch in m.channels:
            total += c * ch * 25 + ch
            c, h, w = ch, h // 2, w // 2
        return total + c * h * w * m.fc + m.fc + m.fc * CLASSES + CLASSES
    total += c * m.channels[0] * 9 + m.channels[0]
    c_in = m.channels[0]
    for i, ch in enumerate(m.channels):
        total += c_in * ch * 9 + ch + ch * ch * 9 + ch + (c_in * ch + ch if i > 0 else 0)
        c_in = ch
    return total + c_in * CLASSES + CLASSES


def job_cost(spec: JobSpec, uploaded: tuple[int, tuple[int, ...]] | None = None) -> JobCost:
    """Samples x parameters; `uploaded` gives (training samples, sample shape) of an
    uploaded dataset, which the spec names only by id."""
    n_train, shape = _data(spec, uploaded)
    t, b = spec.training, spec.training.micro_batch_size
    if t.steps is not None:
        samples = t.steps * spec.pipeline.group * b
    else:
        samples = math.ceil((t.epochs or 0) * (n_train // b)) * b
    return JobCost(samples=samples, parameters=parameters(spec, shape))
