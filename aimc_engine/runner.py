"""run(spec): train one job and return its metrics and result (the engine's entry point).

The model is cut into `pipeline.stages` stages and trained by the schedule's
actions (sequential: one micro-batch at a time). Metric points come every
`eval_every` micro-batches, at the start and at the end. The simulated clock is
the timeline replay of the schedule with the spec's per-layer latencies.
"""

from __future__ import annotations

import io
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import aimc_engine
from aimc_engine.artifacts import GANTT_ACTIONS
from aimc_engine.datasets import Dataset, DatasetError, as_images, load_dataset
from aimc_engine.metrics import analog_health, evaluate, gradient_norm_sq
from aimc_engine.models import LayeredNet, build_model
from aimc_engine.pipeline.compensation import compensation_for
from aimc_engine.pipeline.executor import PipelineExecutor
from aimc_engine.pipeline.schedule import FORWARD, UPDATE, Schedule, build_schedule
from aimc_engine.pipeline.timeline import (
    Clock,
    Tally,
    Timed,
    iter_replay,
    latency_durations,
    sequential_makespan,
    summarise,
    unit_duration,
)
from aimc_engine.seeds import run_generators
from aimc_engine.tiles import TileConfig
from aimc_spec.spec import JobSpec

GRAD_SAMPLES = 1000  # first training samples on which grad_norm_sq is measured (exactly)
# Bumped when a checkpoint's contents or the run's random streams change: a checkpoint
# of another format cannot continue the run it came from.
CHECKPOINT_FORMAT = 2


class RunError(RuntimeError):
    """A job that cannot run as specified (message names the field)."""


@dataclass
class Callbacks:
    """Hooks for whoever drives the run (CLI progress bar, service worker)."""

    on_metrics: Callable[[dict[str, Any]], None] | None = None
    on_progress: Callable[[int, int, float], None] | None = None  # step, total, last loss
    should_stop: Callable[[], bool] | None = None
    # gets a checkpoint (bytes for run(..., resume=)) every `checkpoint_every`
    # micro-batches, at points with no micro-batch in flight (not under async schedules)
    on_checkpoint: Callable[[bytes], None] | None = None
    checkpoint_every: int = 200


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


def _prepare_data(spec: JobSpec, device: torch.device, uploaded: Path | None) -> Dataset:
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


def learning_rate(spec: JobSpec, epoch: float) -> float:
    """lr after step decay: lr * factor^floor(epoch / every_epochs)."""
    opt = spec.optimizer
    if opt.lr_decay is None:
        return opt.lr
    return opt.lr * opt.lr_decay.factor ** math.floor(epoch / opt.lr_decay.every_epochs)


def microbatch_count(spec: JobSpec, per_epoch: int) -> int:
    """Micro-batches to train: `steps` updates (B micro-batches each for gpipe/1f1b) or
    `epochs` passes, rounded down to whole mini-batches for the synchronous schedules."""
    t, p = spec.training, spec.pipeline
    group = p.group
    if t.steps is not None:
        return t.steps * group
    n = max(1, math.ceil((t.epochs or 0) * per_epoch))
    return max(group, n // group * group)


def unit_time_summary(schedule: Schedule) -> dict[str, object]:
    """The schedule's figures with F = B = 1 per stage and free updates: the textbook
    bubble (P-1)/(B+P-1) of gpipe, utilisation -> 1 for async."""
    tally = Tally.of(iter_replay(schedule, unit_duration), schedule.stages)
    seq = sequential_makespan(schedule.stages, schedule.microbatches, unit_duration)
    summary = summarise(schedule, tally, 0, sequential_makespan=seq)
    return {
        "makespan": summary.makespan_ns,
        "bubble_fraction": summary.bubble_fraction,
        "utilisation": summary.utilisation,
        "speedup_vs_sequential": summary.speedup_vs_sequential,
    }


def versions() -> dict[str, str]:
    return {
        "aimc": aimc_engine.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def run(
    spec: JobSpec,
    callbacks: Callbacks | None = None,
    *,
    resume: bytes | None = None,
    uploaded: Path | None = None,
) -> RunOutput:
    """Train the job the spec describes; return metrics, result and the trained model.

    Every schedule, sequential included, runs through the pipeline executor in
    the order the timeline replay gives; a metric point is taken when stage 0
    finishes the update that completes a multiple of `eval_every` micro-batches; it
    draws only from the observation stream (seeds.py), so the trained weights do not
    depend on `eval_every`.
    `resume` continues from a checkpoint of the same spec: the run then goes on
    exactly as the uninterrupted one would (same metrics, on CPU), and metric
    points before the checkpoint are not emitted again. `uploaded` is the .npz file of
    a `dataset: {name: uploaded}` spec (the service fetches it by id).
    """
    cb = callbacks or Callbacks()
    device = resolve_device(spec.device)
    data = _prepare_data(spec, device, uploaded)
    gens = run_generators(spec.seed, device)  # independent streams of the one seed
    data_gen, noise_gen, observe_gen = gens.data, gens.noise, gens.observe
    config = TileConfig(spec.analog, gens.init, noise_gen, device)
    try:
        model = build_model(spec, data.input_shape, data.classes, config)
    except ValueError as exc:  # the model does not fit the data: a field of the spec
        raise RunError(str(exc)) from None

    t, p = spec.training, spec.pipeline
    b = t.micro_batch_size
    n_train = len(data.x_train)
    per_epoch = n_train // b  # the last partial micro-batch of an epoch is dropped
    total = microbatch_count(spec, per_epoch)
    try:
        schedule = build_schedule(p.schedule, p.stages, total, p.micro_batches)
        executor = PipelineExecutor(spec, model, config, schedule)
        executor.compensation = compensation_for(p.compensation, schedule)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    layers = executor.layers_per_stage
    duration = latency_durations(layers, b, schedule.group, p.latency_ns)
    clock, tally = Clock(), Tally(schedule.stages)
    drawn: list[Timed] = []  # the first actions, for timeline.png
    seq_makespan = sequential_makespan(
        p.stages, total, latency_durations(layers, b, 1, p.latency_ns)
    )

    grad_x, grad_y = data.x_train[:GRAD_SAMPLES], data.y_train[:GRAD_SAMPLES]
    metrics: list[dict[str, Any]] = []
    start = time.perf_counter()
    running, running_n = 0.0, 0
    status, error = "succeeded", None
    order: torch.Tensor = torch.empty(0, dtype=torch.long)

    def fetch(j: int) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal order
        if j % per_epoch == 0:  # a new epoch: a new seeded shuffle
            order = torch.randperm(n_train, generator=data_gen).to(device)
        idx = order[(j % per_epoch) * b : (j % per_epoch + 1) * b]
        return data.x_train[idx], data.y_train[idx]

    def lr_for(j: int) -> float:
        return learning_rate(spec, j * b / n_train)

    def metric_point(done: int) -> None:
        nonlocal running, running_n
        grad_sq, subset_loss = gradient_norm_sq(model, grad_x, grad_y)
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test, generator=observe_gen)
        saturation, near = analog_health(model)
        samples = done * b
        record = {
            "step": executor.algorithms[0].updates,
            "samples": samples,
            "epoch": samples / n_train,
            "sim_time_ns": clock.after(done),
            "wall_s": time.perf_counter() - start,
            "lr": lr_for(done),
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

    def checkpoint() -> bytes:
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "updates": [a.updates for a in executor.algorithms],
            "data_gen": data_gen.get_state(),
            "noise_gen": noise_gen.get_state(),
            "observe_gen": observe_gen.get_state(),
            "order": order,
            "metrics": metrics,
            "running": (running, running_n),
            "done": done,
            "executed": executed,
            "wall": time.perf_counter() - start,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    done = executed = skip = 0
    if resume is None:
        metric_point(0)
    else:
        state = torch.load(io.BytesIO(resume), map_location=device, weights_only=False)
        if state.get("format", 1) != CHECKPOINT_FORMAT:
            raise RunError(
                f"resume: the checkpoint is of format {state.get('format', 1)}, written by "
                f"another aimc version; this one continues format {CHECKPOINT_FORMAT} only "
                "(run the job again from the start)"
            )
        model.load_state_dict(state["model"])
        for algorithm, updates in zip(executor.algorithms, state["updates"], strict=True):
            algorithm.updates = updates
        # generator states are CPU byte tensors, whatever map_location moved them to
        data_gen.set_state(state["data_gen"].cpu())
        noise_gen.set_state(state["noise_gen"].cpu())
        observe_gen.set_state(state["observe_gen"].cpu())
        order, metrics[:] = state["order"], state["metrics"]
        (running, running_n), done, skip = state["running"], state["done"], state["executed"]
        start -= state["wall"]
    quiescent = not schedule.name.startswith("async")
    last_checkpoint = done
    for timed_action in iter_replay(schedule, duration):
        action = timed_action.action
        s, j = action.stage, action.microbatch
        if executed < skip:  # already done before the checkpoint: only the clock moves
            executed += 1
            clock.record(timed_action)
            tally.add(timed_action)
            if len(drawn) < GANTT_ACTIONS:
                drawn.append(timed_action)
            continue
        if action.kind == FORWARD and s == 0 and cb.should_stop and cb.should_stop():
            status = "cancelled"
            break
        executor.execute(action, lr_for, fetch)
        executed += 1
        clock.record(timed_action)
        tally.add(timed_action)
        if len(drawn) < GANTT_ACTIONS:
            drawn.append(timed_action)
        if action.kind == FORWARD and s == schedule.stages - 1:
            value = executor.losses.pop(j)
            if not math.isfinite(value):
                status = "failed"
                error = f"training diverged: loss is {value} at micro-batch {j}; lower optimizer.lr"
                break
            running += value
            running_n += 1
            if cb.on_progress:
                cb.on_progress(j + 1, total, value)
        elif action.kind == UPDATE and s == 0:
            previous, done = done, j + 1
            if done < total and done // t.eval_every > previous // t.eval_every:
                metric_point(done)
            if (
                cb.on_checkpoint
                and quiescent
                and done < total
                and done - last_checkpoint >= cb.checkpoint_every
            ):
                last_checkpoint = done
                cb.on_checkpoint(checkpoint())
    if status != "failed":
        metric_point(done)

    last = metrics[-1]
    summary = summarise(schedule, tally, done * b, sequential_makespan=seq_makespan).as_dict()
    summary["unit_time"] = unit_time_summary(schedule)
    result = {
        "status": status,
        "error": error,
        "final": {
            "test_accuracy": last["test_accuracy"],
            "test_loss": last["test_loss"],
            "train_loss": last["train_loss"],
        },
        "samples": done * b,
        "updates": executor.algorithms[0].updates,
        "wall_seconds": time.perf_counter() - start,
        "timeline": summary,
        "spec": spec.normalised(),
        "versions": versions(),
    }
    return RunOutput(result=result, metrics=metrics, model=model, timeline=drawn)
