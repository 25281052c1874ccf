"""A job's training in progress: the state the training loop carries, and the loop.

Every schedule, sequential included, runs through the pipeline executor in the order
the timeline replay gives. Stage 0's update of micro-batch j completes j + 1
micro-batches (`done`): metric points are taken there every `eval_every`
micro-batches (and at the start and the end), checkpoints every `checkpoint_every`.
A metric point draws only from the observation stream (seeds.py), so the trained
weights do not depend on `eval_every`.
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
from torch import Tensor, nn

import aimc_engine
from aimc_engine import checkpoint
from aimc_engine.algorithms import Algorithm
from aimc_engine.artifacts import GANTT_ACTIONS
from aimc_engine.datasets import Dataset
from aimc_engine.errors import RunError
from aimc_engine.metrics import (
    EvaluationStopped,
    analog_health,
    evaluate,
    gradient_norm_sq,
    stage_pulses,
)
from aimc_engine.models import assemble, build_stage
from aimc_engine.pipeline.compensation import compensation_for
from aimc_engine.pipeline.executor import Batch, PipelineExecutor, stage_ranges
from aimc_engine.pipeline.plan import Points
from aimc_engine.pipeline.schedule import FORWARD, UPDATE, build_schedule
from aimc_engine.pipeline.timeline import Timed, Timeline, latency_durations, sequential_makespan
from aimc_engine.seeds import StageGenerators, data_generator, stage_generators
from aimc_engine.tiles import TileConfig
from aimc_spec import energy
from aimc_spec.resources import eval_chunk
from aimc_spec.spec import JobSpec

GRAD_SAMPLES = 1000  # first training samples on which grad_norm_sq is measured (exactly)


@dataclass
class Callbacks:
    """Hooks for whoever drives the run (CLI progress bar, service worker)."""

    on_metrics: Callable[[dict[str, Any]], None] | None = None
    # micro-batches done (their losses known), micro-batches in all, the last loss
    on_progress: Callable[[int, int, float], None] | None = None
    should_stop: Callable[[], bool] | None = None
    # gets a checkpoint (bytes for run(..., resume=)) every `checkpoint_every`
    # micro-batches, at points with no micro-batch in flight (not under async schedules)
    on_checkpoint: Callable[[bytes], None] | None = None
    checkpoint_every: int = 200


def learning_rate(spec: JobSpec, epoch: float) -> float:
    """lr after step decay: lr * factor^floor(epoch / every_epochs)."""
    opt = spec.optimizer
    if opt.lr_decay is None:
        return opt.lr
    return opt.lr * opt.lr_decay.factor ** math.floor(epoch / opt.lr_decay.every_epochs)


def microbatch_count(spec: JobSpec, per_epoch: int) -> int:
    """Micro-batches to train: `steps` updates (B micro-batches each for gpipe/1f1b) or
    `epochs` passes, rounded down to whole mini-batches for the synchronous schedules."""
    t, group = spec.training, spec.pipeline.group
    if t.steps is not None:
        return t.steps * group
    n = max(1, math.ceil((t.epochs or 0) * per_epoch))
    return max(group, n // group * group)


def versions() -> dict[str, str]:
    return {
        "aimc": aimc_engine.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


class Shuffle:
    """Micro-batch j of the training set: a slice of its epoch's seeded shuffle. Stage 0
    (inputs) and the last stage (targets) each keep one; asked for j in increasing order,
    both draw the same shuffles from the run's data stream."""

    def __init__(self, spec: JobSpec, n_train: int, device: torch.device) -> None:
        self.b = spec.training.micro_batch_size
        self.n_train, self.device = n_train, device
        self.per_epoch = n_train // self.b  # a last partial micro-batch: dropped
        self.generator = data_generator(spec.seed)
        self.order = torch.empty(0, dtype=torch.long)  # this epoch's shuffle

    def indices(self, j: int) -> Tensor:
        if j % self.per_epoch == 0:  # a new epoch: a new seeded shuffle
            self.order = torch.randperm(self.n_train, generator=self.generator).to(self.device)
        first = (j % self.per_epoch) * self.b
        return self.order[first : first + self.b]


def metric_record(
    spec: JobSpec,
    n_train: int,
    *,
    step: int,
    done: int,
    sim_time_ns: float,
    wall_s: float,
    train_loss: float,
    test: tuple[float, float],
    grad_norm_sq: float,
    health: tuple[float | None, float | None],
    energy_pj: float,
) -> dict[str, Any]:
    """One metric point's record (metric_record.py's fields), the same for every executor."""
    samples = done * spec.training.micro_batch_size
    return {
        "step": step,  # updates, not micro-batches
        "samples": samples,
        "epoch": samples / n_train,
        "sim_time_ns": sim_time_ns,
        "wall_s": wall_s,
        "lr": learning_rate(spec, samples / n_train),
        "train_loss": train_loss,
        "test_loss": test[0],
        "test_accuracy": test[1],
        "grad_norm_sq": grad_norm_sq,
        "saturation": health[0],
        "near_bound_fraction": health[1],
        "energy_pj": energy_pj,  # cumulative, aimc_spec/energy.py
    }


def stage_configs(
    spec: JobSpec, device: torch.device
) -> tuple[list[StageGenerators], list[TileConfig]]:
    """Each stage's generators and the tile config its layers draw from."""
    gens = [stage_generators(spec.seed, s, device) for s in range(spec.pipeline.stages)]
    return gens, [TileConfig(spec.analog, g.init, g.noise, device) for g in gens]


def build_run_stage(
    spec: JobSpec, data: Dataset, s: int, ranges: list[range], config: TileConfig
) -> tuple[nn.Sequential, Algorithm]:
    """Stage s's layers and algorithm, drawing from its own config (Tiki-Taka's fast
    arrays after the layers, in that order in every executor)."""
    module = build_stage(spec, data.input_shape, data.classes, ranges[s], config)
    return module, Algorithm(spec, module, config)


class Training:
    """The model cut into stages, its random streams, the schedule being run and how far
    it got (`executed` actions, `done` micro-batches), the metric points so far."""

    def __init__(
        self, spec: JobSpec, data: Dataset, device: torch.device, callbacks: Callbacks
    ) -> None:
        self.spec, self.data, self.device, self.callbacks = spec, data, device, callbacks
        # independent streams of the one seed: per stage, and the data shuffle
        self.stage_gens, configs = stage_configs(spec, device)
        t, p = spec.training, spec.pipeline
        try:  # the model, cut into stages, must fit the data: fields of the spec
            self.b = t.micro_batch_size
            self.shuffle = Shuffle(spec, len(data.x_train), device)
            self.total = microbatch_count(spec, self.shuffle.per_epoch)
            self.schedule = build_schedule(p.schedule, p.stages, self.total, p.micro_batches)
            self.ranges = ranges = stage_ranges(spec)
            built = [build_run_stage(spec, data, s, ranges, configs[s]) for s in range(p.stages)]
            compensation = compensation_for(p.compensation, self.schedule)
        except ValueError as exc:
            raise RunError(str(exc)) from None
        stages = [module for module, _ in built]
        self.model = assemble(stages)
        self.executor = PipelineExecutor(stages, [a for _, a in built], self.schedule)
        self.executor.compensation = compensation
        layers = self.executor.layers_per_stage
        duration = latency_durations(layers, self.b, self.schedule.group, p.latency_ns)
        self.timeline = Timeline(self.schedule, duration, keep=GANTT_ACTIONS)
        self.sequential_ns = sequential_makespan(
            p.stages, self.total, latency_durations(layers, self.b, 1, p.latency_ns)
        )
        self.metrics: list[dict[str, Any]] = []
        self.running, self.running_n = 0.0, 0  # train losses since the last metric point
        self.done = self.executed = 0
        self.stage_executed = [0] * p.stages  # actions run, per stage
        self.skip = 0  # actions run before the checkpoint resumed from
        every = (
            callbacks.checkpoint_every if callbacks.on_checkpoint and self.schedule.drains else None
        )
        self.points = Points(t.eval_every, self.total, every)
        self.status = "succeeded"
        self.error: str | None = None
        self.start = time.perf_counter()

    def fetch(self, j: int) -> Batch:
        """Micro-batch j: a slice of its epoch's seeded shuffle of the training set."""
        idx = self.shuffle.indices(j)
        return self.data.x_train[idx], self.data.y_train[idx]

    def lr(self, j: int) -> float:
        """The learning rate of the update that micro-batch j completes."""
        return learning_rate(self.spec, j * self.b / len(self.data.x_train))

    def measure(self, stoppable: bool = True) -> None:
        """A metric point after `done` micro-batches: train loss (the mean since the last
        point), test loss and accuracy, gradient norm, analog health, both clocks.

        A stop asked during the evaluation abandons the point and cancels the run
        (`stoppable`; the point before training always completes: a result needs one)."""
        data, stages = self.data, self.executor.stages
        grad_sq, subset_loss = gradient_norm_sq(
            stages, data.x_train[:GRAD_SAMPLES], data.y_train[:GRAD_SAMPLES]
        )
        observe = [g.observe for g in self.stage_gens]
        ask = self._stop_asked if stoppable else None
        try:
            test = evaluate(
                stages,
                data.x_test,
                data.y_test,
                generator=observe,
                should_stop=ask,
                chunk=eval_chunk(self.spec, tuple(data.x_test.shape[1:])),
            )
        except EvaluationStopped:
            self.status = "cancelled"
            return
        record = metric_record(
            self.spec,
            len(data.x_train),
            step=self.executor.algorithms[0].updates,
            done=self.done,
            sim_time_ns=self.timeline.clock.after(self.done),
            wall_s=time.perf_counter() - self.start,
            train_loss=self.running / self.running_n if self.running_n else subset_loss,
            test=test,
            grad_norm_sq=grad_sq,
            health=analog_health(self.model),
            energy_pj=energy.estimate(
                self.spec, self.data.input_shape, self.ranges, self.done * self.b, self.work()
            ).total,
        )
        self.running, self.running_n = 0.0, 0
        self.metrics.append(record)
        if self.callbacks.on_metrics:
            self.callbacks.on_metrics(record)

    def work(self) -> list[energy.StageWork]:
        """Each stage's updates and device pulses so far, for the energy estimate."""
        return [
            energy.StageWork(a.updates, stage_pulses(m))
            for a, m in zip(self.executor.algorithms, self.executor.stages, strict=True)
        ]

    def checkpoint(self) -> bytes:
        return checkpoint.dump(
            checkpoint.Checkpoint(
                model=self.model.state_dict(),
                updates=[a.updates for a in self.executor.algorithms],
                data_gen=self.shuffle.generator.get_state(),
                noise_gens=[g.noise.get_state() for g in self.stage_gens],
                observe_gens=[g.observe.get_state() for g in self.stage_gens],
                order=self.shuffle.order,
                metrics=self.metrics,
                running=(self.running, self.running_n),
                done=self.done,
                executed=list(self.stage_executed),
                wall=time.perf_counter() - self.start,
            ),
            self.spec,
        )

    def restore(self, blob: bytes) -> None:
        """Continue from a checkpoint of this spec: the actions it had run are replayed
        on the clock only, its metric points are not emitted again."""
        saved = checkpoint.load(blob, self.spec, self.device)
        self.model.load_state_dict(saved.model)
        for algorithm, updates in zip(self.executor.algorithms, saved.updates, strict=True):
            algorithm.updates = updates
        # generator states are CPU byte tensors, whatever map_location moved them to
        self.shuffle.generator.set_state(saved.data_gen.cpu())
        for gens, noise, observe in zip(
            self.stage_gens, saved.noise_gens, saved.observe_gens, strict=True
        ):
            gens.noise.set_state(noise.cpu())
            gens.observe.set_state(observe.cpu())
        self.shuffle.order, self.metrics[:] = saved.order, saved.metrics
        self.running, self.running_n = saved.running
        self.done = self.points.done = self.points.last_checkpoint = saved.done
        self.skip = sum(saved.executed)
        self.stage_executed = list(saved.executed)
        self.start -= saved.wall

    def train(self) -> None:
        """Run the schedule to its end, or until stopped or diverged; then the last
        metric point (none after a divergence or a cancel: a cancel acts at once, and
        the run's final figures are its last point's, as on stage processes)."""
        for timed in self.timeline:
            if not self.run_action(timed):
                break
        if self.status not in ("failed", "cancelled"):
            self.measure()

    def run_action(self, timed: Timed) -> bool:
        """Run one action of the schedule (only its clock before a resumed checkpoint);
        False when the run must stop there (cancelled or diverged)."""
        if self.executed < self.skip:  # run before the checkpoint: only the clock moves
            self.executed += 1
            self.timeline.record(timed)
            return True
        action = timed.action
        # asked before every action, not once per micro-batch: a cancel of a large
        # model or a long pipeline acts within one action (callers throttle the ask);
        # a metric point abandoned for a stop has already set the status
        if self.status == "cancelled" or self._stop_asked():
            self.status = "cancelled"
            return False
        self.executor.execute(action, self.lr, self.fetch)
        self.executed += 1
        self.stage_executed[action.stage] += 1
        self.timeline.record(timed)
        if action.kind == FORWARD and action.stage == self.schedule.stages - 1:
            return self._took_loss(action.microbatch)
        if action.kind == UPDATE and action.stage == 0:
            self._completed(action.microbatch + 1)
        return True

    def _stop_asked(self) -> bool:
        return self.callbacks.should_stop is not None and self.callbacks.should_stop()

    def _took_loss(self, j: int) -> bool:
        """Count micro-batch j's loss; False (the run failed) if it is not finite."""
        value = self.executor.losses.pop(j)
        if not math.isfinite(value):
            self.status = "failed"
            self.error = (
                f"training diverged: loss is {value} at micro-batch {j}; lower optimizer.lr"
            )
            return False
        self.running += value
        self.running_n += 1
        if self.callbacks.on_progress:
            self.callbacks.on_progress(j + 1, self.total, value)
        return True

    def _completed(self, done: int) -> None:
        """Stage 0 has updated `done` micro-batches: a metric point or a checkpoint due?"""
        self.done = done
        metric, checkpoint_due = self.points.completed(done)
        if metric:
            self.measure()
        if checkpoint_due and self.callbacks.on_checkpoint:
            self.callbacks.on_checkpoint(self.checkpoint())

    def result(self) -> dict[str, Any]:
        """The job's result: status, final metrics, counts, the timeline's figures."""
        last = self.metrics[-1]
        samples = self.done * self.b
        return {
            "status": self.status,
            "error": self.error,
            "final": {
                "test_accuracy": last["test_accuracy"],
                "test_loss": last["test_loss"],
                "train_loss": last["train_loss"],
            },
            "samples": samples,
            "updates": self.executor.algorithms[0].updates,
            "wall_seconds": time.perf_counter() - self.start,
            "timeline": self.timeline.summary(samples, sequential_ns=self.sequential_ns),
            "energy": energy.summary(
                self.spec,
                self.data.input_shape,
                self.ranges,
                samples,
                self.work(),
                self.metrics,
            ),
            "spec": self.spec.normalised(),
            "versions": versions(),
        }
