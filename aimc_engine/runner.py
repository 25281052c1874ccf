"""run(spec): train one job and return its metrics and result (the engine's entry point).

The model is cut into `pipeline.stages` stages and trained by the schedule's
actions: in this process, in the timeline's order (training.py), or with
`pipeline.executor: processes` one process per stage (pipeline/launch.py), which gives
the same numbers. Metric points come
every `eval_every` micro-batches, at the start and at the end. The simulated clock
is the timeline replay of the schedule with the spec's per-layer latencies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aimc_engine.datasets import Dataset, DatasetError, as_images, load_dataset
from aimc_engine.errors import RunError
from aimc_engine.models import LayeredNet
from aimc_engine.pipeline.timeline import Timed
from aimc_engine.threads import Threads, largest_product, policy_threads
from aimc_engine.training import Callbacks, Training
from aimc_spec.spec import JobSpec

__all__ = ["Callbacks", "RunError", "RunOutput", "prepare_data", "resolve_device", "run"]


@dataclass
class RunOutput:
    result: dict[str, Any]
    metrics: list[dict[str, Any]]
    model: LayeredNet
    timeline: list[Timed]  # the first actions that ran, with simulated start and end


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device: 'cuda' asked for but torch sees no CUDA device; use cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare_data(spec: JobSpec, device: torch.device, uploaded: Path | None) -> Dataset:
    try:
        data = load_dataset(spec.dataset, seed=spec.seed, uploaded=uploaded)
        if spec.model.kind != "mlp":
            data = as_images(data)
    except DatasetError as exc:
        raise RunError(str(exc)) from None
    if len(data.x_train) < spec.training.micro_batch_size:
        raise RunError(
            f"training.micro_batch_size: {spec.training.micro_batch_size} exceeds the "
            f"{len(data.x_train)} training samples"
        )
    return Dataset(
        data.x_train.to(device),
        data.y_train.to(device),
        data.x_test.to(device),
        data.y_test.to(device),
        data.classes,
    )


def run(
    spec: JobSpec,
    callbacks: Callbacks | None = None,
    *,
    resume: bytes | None = None,
    uploaded: Path | None = None,
) -> RunOutput:
    """Train the job the spec describes; return metrics, result and the trained model.

    `resume` continues from a checkpoint of the same spec (checkpoint.py): the run then
    goes on exactly as the uninterrupted one would (same metrics, on CPU, on the same
    threads: not under AIMC_THREADS=auto, docs/settings.md), and metric
    points before the checkpoint are not emitted again; a checkpoint of another spec or
    format is refused (RunError). `uploaded` is the .npz file of a
    `dataset: {name: uploaded}` spec (the service fetches it by id).
    """
    if spec.pipeline.executor == "processes":  # here: the shapes only, and the weights after
        data = prepare_data(spec, torch.device("cpu"), uploaded)
        return _run_processes(spec, data, callbacks or Callbacks(), resume, uploaded)
    device = resolve_device(spec.device)
    data = prepare_data(spec, device, uploaded)
    # the thread policy (threads.py): the caller's torch threads are the cores it may use
    with policy_threads(work_per_op(spec, data)) as threads:
        output = _train(spec, data, device, _retuning(callbacks or Callbacks(), threads), resume)
        if threads.following is not None:  # what the result's last bits depend on
            output.result["threads"] = list(threads.following.counts)
        return output


def _retuning(callbacks: Callbacks, threads: Threads) -> Callbacks:
    """The callbacks, with the run's threads looked at again after each micro-batch when
    they follow the machine's load (AIMC_THREADS=auto: threads.LoadFollowing)."""
    if threads.following is None:
        return callbacks
    told = callbacks.on_progress

    def on_progress(done: int, total: int, loss: float) -> None:
        threads.retune()
        if told is not None:
            told(done, total, loss)

    return dataclasses.replace(callbacks, on_progress=on_progress)


def work_per_op(spec: JobSpec, data: Dataset) -> int:
    """The run's work per operation for the thread policy (threads.largest_product)."""
    return largest_product(spec, tuple(data.x_train.shape[1:]))


def _train(
    spec: JobSpec, data: Dataset, device: torch.device, callbacks: Callbacks, resume: bytes | None
) -> RunOutput:
    """run() in this process: measure, train and collect what the caller gets."""
    training = Training(spec, data, device, callbacks)
    if resume is None:
        training.measure(stoppable=False)  # the point before any training
    else:
        training.restore(resume)
    training.train()
    return RunOutput(
        result=training.result(),
        metrics=training.metrics,
        model=training.model,
        timeline=training.timeline.first,
    )


def _run_processes(
    spec: JobSpec,
    data: Dataset,
    callbacks: Callbacks,
    resume: bytes | None,
    uploaded: Path | None,
) -> RunOutput:
    """The job with one process per stage (pipeline/launch.py); the weights come back to
    this process as the whole model."""
    from aimc_engine.pipeline.launch import run_processes, whole_model
    from aimc_engine.pipeline.serial import from_bytes

    work = work_per_op(spec, data)
    output = run_processes(spec, callbacks, resume=resume, uploaded=uploaded, work=work)
    model = whole_model(spec, data, from_bytes(output["state"]))
    return RunOutput(
        result=output["result"],
        metrics=output["metrics"],
        model=model,
        timeline=output["timeline"],
    )
