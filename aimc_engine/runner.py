"""run(spec): train one job and return its metrics and result (the engine's entry point).

Sequential training (one stage): each micro-batch of b samples is a forward,
a backward and one update. Metric points come every `eval_every`
micro-batches, at the start and at the end. The simulated clock charges each
weight layer the spec's forward, backward and update latencies per sample.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import aimc_engine
from aimc_engine.algorithms import Algorithm
from aimc_engine.datasets import Dataset, DatasetError, as_images, load_dataset
from aimc_engine.metrics import analog_health, evaluate, gradient_norm_sq
from aimc_engine.models import LayeredNet, build_model
from aimc_engine.spec import JobSpec
from aimc_engine.tiles import TileConfig

GRAD_SAMPLES = 1000  # training samples on which grad_norm_sq is measured


class RunError(RuntimeError):
    """A job that cannot run as specified (message names the field)."""


@dataclass
class Callbacks:
    """Hooks for whoever drives the run (CLI progress bar, service worker)."""

    on_metrics: Callable[[dict[str, Any]], None] | None = None
    on_progress: Callable[[int, int, float], None] | None = None  # step, total, last loss
    should_stop: Callable[[], bool] | None = None


@dataclass
class RunOutput:
    result: dict[str, Any]
    metrics: list[dict[str, Any]]
    model: LayeredNet


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device: 'cuda' asked for but torch sees no CUDA device; use cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _check_supported(spec: JobSpec) -> None:
    p = spec.pipeline
    if p.stages != 1 or p.schedule != "sequential":
        raise RunError(
            f"pipeline: schedule {p.schedule!r} with {p.stages} stages is not available in this "
            "engine version; allowed: stages 1, schedule sequential"
        )


def _prepare_data(spec: JobSpec, device: torch.device) -> Dataset:
    try:
        data = load_dataset(spec.dataset, seed=spec.seed)
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


def learning_rate(spec: JobSpec, epoch: float) -> float:
    """lr after step decay: lr * factor^floor(epoch / every_epochs)."""
    opt = spec.optimizer
    if opt.lr_decay is None:
        return opt.lr
    return opt.lr * opt.lr_decay.factor ** math.floor(epoch / opt.lr_decay.every_epochs)


def sequential_timeline(spec: JobSpec, samples: int) -> dict[str, Any]:
    """Timeline of a one-stage run: every layer busy in turn, no bubbles, no staleness."""
    lat = spec.pipeline.latency_ns
    makespan = samples * spec.model.num_weight_layers * (lat.forward + lat.backward + lat.update)
    return {
        "makespan_ns": makespan,
        "bubble_fraction": 0.0,
        "utilisation": [1.0],
        "staleness": [0],
        "samples_per_sim_second": samples / (makespan * 1e-9) if makespan else None,
        "speedup_vs_sequential": 1.0,
    }


def versions() -> dict[str, str]:
    return {
        "aimc": aimc_engine.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def run(spec: JobSpec, callbacks: Callbacks | None = None) -> RunOutput:
    """Train the job the spec describes; return metrics, result and the trained model."""
    cb = callbacks or Callbacks()
    _check_supported(spec)
    device = resolve_device(spec.device)
    data = _prepare_data(spec, device)
    init_gen = torch.Generator().manual_seed(spec.seed)
    data_gen = torch.Generator().manual_seed(spec.seed + 1)
    noise_gen = torch.Generator(device=device).manual_seed(spec.seed + 2)
    config = TileConfig(spec.analog, init_gen, noise_gen, device)
    model = build_model(spec, data.input_shape, data.classes, config)
    algorithm = Algorithm(spec, model, config)

    t = spec.training
    b = t.micro_batch_size
    n_train = len(data.x_train)
    per_epoch = n_train // b  # the last partial micro-batch of an epoch is dropped
    total = t.steps if t.steps is not None else max(1, math.ceil((t.epochs or 0) * per_epoch))
    grad_x, grad_y = data.x_train[:GRAD_SAMPLES], data.y_train[:GRAD_SAMPLES]
    metrics: list[dict[str, Any]] = []
    start = time.perf_counter()
    running, running_n = 0.0, 0
    status, error = "succeeded", None

    def metric_point(step: int) -> dict[str, Any]:
        nonlocal running, running_n
        grad_sq, subset_loss = gradient_norm_sq(model, grad_x, grad_y)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        saturation, near = analog_health(model)
        samples = step * b
        record = {
            "step": step,
            "samples": samples,
            "epoch": samples / n_train,
            "sim_time_ns": sequential_timeline(spec, samples)["makespan_ns"],
            "wall_s": time.perf_counter() - start,
            "lr": learning_rate(spec, samples / n_train),
            "train_loss": running / running_n if running_n else subset_loss,
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "grad_norm_sq": grad_sq,
            "saturation": saturation,
            "near_bound_fraction": near,
        }
        running, running_n = 0.0, 0
        metrics.append(record)
        if cb.on_metrics:
            cb.on_metrics(record)
        return record

    metric_point(0)
    perm = torch.empty(0, dtype=torch.long)
    step = 0
    while step < total:
        if cb.should_stop and cb.should_stop():
            status = "cancelled"
            break
        if step % per_epoch == 0:
            perm = torch.randperm(n_train, generator=data_gen).to(device)
        idx = perm[(step % per_epoch) * b : (step % per_epoch + 1) * b]
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        loss.backward()
        algorithm.step(learning_rate(spec, step * b / n_train))
        step += 1
        value = loss.item()
        if not math.isfinite(value):
            status = "failed"
            error = f"training diverged: loss is {value} at step {step}; lower optimizer.lr"
            break
        running += value
        running_n += 1
        if cb.on_progress:
            cb.on_progress(step, total, value)
        if step % t.eval_every == 0 and step < total:
            metric_point(step)
    if status != "failed":
        metric_point(step)

    last = metrics[-1]
    result = {
        "status": status,
        "error": error,
        "final": {
            "test_accuracy": last["test_accuracy"],
            "test_loss": last["test_loss"],
            "train_loss": last["train_loss"],
        },
        "samples": step * b,
        "updates": algorithm.updates,
        "wall_seconds": time.perf_counter() - start,
        "timeline": sequential_timeline(spec, step * b),
        "spec": spec.normalised(),
        "versions": versions(),
    }
    return RunOutput(result=result, metrics=metrics, model=model)
