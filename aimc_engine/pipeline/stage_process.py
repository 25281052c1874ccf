"""One pipeline stage in a process of its own: the processes executor's worker.

Stage s builds only its own layers, tiles and algorithm state, from its own random
streams (seeds.py), and runs its own action list in order: a forward takes the
micro-batch (stage 0) or the activation stage s-1 sends, a backward takes the gradient
stage s+1 sends, an update applies the stage's gradients. The stage's weights are
touched by nothing else, so each forward and backward sees the weight version the
single-process simulator gives it, and the numbers agree bit for bit on CPU.

Metric points and checkpoints come where the simulator takes them (plan.py); what a
stage does there is in stage_points.py, how stage 0 puts the run's result together
from every stage's final part in stage_result.py. Messages and stopping: transport.py.
"""

from __future__ import annotations

import datetime
import itertools
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor

from aimc_engine.artifacts import GANTT_ACTIONS
from aimc_engine.datasets import Dataset
from aimc_engine.errors import RunError
from aimc_engine.metrics import stage_pulses
from aimc_engine.pipeline import stage_points, stage_result
from aimc_engine.pipeline.compensation import compensation_for
from aimc_engine.pipeline.executor import Stage, stage_ranges
from aimc_engine.pipeline.plan import (
    CHECKPOINT,
    METRIC,
    Point,
    Points,
    iter_points,
)
from aimc_engine.pipeline.schedule import BACKWARD, FORWARD, UPDATE, Action, build_schedule
from aimc_engine.pipeline.serial import peak_rss_mb, stage_state, to_bytes
from aimc_engine.pipeline.timeline import Timeline, latency_durations
from aimc_engine.pipeline.transport import (
    CANCELLED,
    DIVERGED,
    FAILED,
    NONFINITE,
    Link,
    LostPeer,
    Stopped,
    StreamLink,
    Traffic,
    drain,
)
from aimc_engine.seeds import stage_generators
from aimc_engine.threads import LoadFollowing
from aimc_engine.tiles import TileConfig
from aimc_engine.training import (
    Shuffle,
    build_run_stage,
    learning_rate,
    microbatch_count,
)
from aimc_spec.spec import JobSpec

PROGRESS_EVERY_S = 0.1  # the last stage reports progress at most this often


class Sink(Protocol):
    """Where a stage's events go: the launcher's queue, or (torchrun) this host's files."""

    def metrics(self, record: dict[str, Any]) -> None: ...
    def progress(self, done: int, total: int, loss: float) -> None: ...
    def checkpoint(self, done: int, part: dict[str, Any]) -> None: ...
    def finish(self, output: dict[str, Any]) -> None: ...
    def stop_asked(self) -> bool: ...


@dataclass
class Neighbours:
    """A stage's links: to the stage before and after, for training and for metrics."""

    prev_train: StreamLink | None
    prev_metric: Link | None
    next_train: StreamLink | None
    next_metric: Link | None

    @property
    def all(self) -> list[Link]:
        links = [self.prev_train, self.prev_metric, self.next_train, self.next_metric]
        return [link for link in links if link is not None]


def connect(
    s: int, stages: int, device: torch.device, traffic: Traffic, timeout: datetime.timedelta
) -> Neighbours:
    """The links of stage s (its rank): training messages on the default group, metric
    points on a second group every rank creates, in the same order, with the same
    timeout (a new group would otherwise wait torch's default half hour)."""
    metric_group = dist.new_group(list(range(stages)), timeout=timeout) if stages > 1 else None

    def link(peer: int, group: dist.ProcessGroup | None) -> Link | None:
        return Link(peer, group, device, traffic) if 0 <= peer < stages else None

    def stream(peer: int) -> StreamLink | None:
        return StreamLink(peer, None, device, traffic) if 0 <= peer < stages else None

    return Neighbours(
        stream(s - 1), link(s - 1, metric_group), stream(s + 1), link(s + 1, metric_group)
    )


class StageRun:
    """Stage s of a run, in this process: its state and its loop."""

    def __init__(
        self,
        spec: JobSpec,
        data: Dataset,
        s: int,
        device: torch.device,
        sink: Sink,
        resume: bytes | None = None,
    ) -> None:
        self.spec, self.data, self.s, self.device, self.sink = spec, data, s, device, sink
        p = spec.pipeline
        self.stages, self.b = p.stages, spec.training.micro_batch_size
        self.first, self.last = s == 0, s == p.stages - 1
        self.start = time.perf_counter()
        self.gens = stage_generators(spec.seed, s, device)
        config = TileConfig(spec.analog, self.gens.init, self.gens.noise, device)
        try:
            self.shuffle = Shuffle(spec, len(data.x_train), device)
            self.total = microbatch_count(spec, self.shuffle.per_epoch)
            self.schedule = build_schedule(p.schedule, p.stages, self.total, p.micro_batches)
            self.ranges = stage_ranges(spec)
            self.module, algorithm = build_run_stage(spec, data, s, self.ranges, config)
            self.compensation = compensation_for(p.compensation, self.schedule)
        except ValueError as exc:
            raise RunError(str(exc)) from None
        self.compute = Stage(s, self.module, algorithm, self.schedule)
        self.compute.compensation = self.compensation
        self.traffic = Traffic()
        timeout = datetime.timedelta(seconds=p.timeout_s)
        self.links = connect(s, p.stages, device, self.traffic, timeout)
        self.metrics: list[dict[str, Any]] = []
        self.running, self.running_n = 0.0, 0
        self.last_progress = 0.0
        self.executed = 0  # this stage's actions run
        self.done = 0  # stage 0: micro-batches its updates completed
        # seconds in this stage's own actions by kind, waits for messages left out
        self.compute_s = dict.fromkeys((FORWARD, BACKWARD, UPDATE), 0.0)
        self.train_wait_s = 0.0  # of those waits, the ones inside training actions
        self.skip = 0
        self.points = Points(spec.training.eval_every, self.total, None)
        # AIMC_THREADS=auto: the stage's threads, looked at again after each update
        self.following: LoadFollowing | None = None
        if resume is not None:
            stage_points.restore(self, resume)

    # -- the schedule's pieces ---------------------------------------------------------

    def layers_per_stage(self) -> list[int]:
        counts = self.spec.model.layers_per_unit
        return [sum(counts[i] for i in r) for r in self.ranges]

    def timeline(self) -> Timeline:
        """A fresh replay of the run's schedule under the latency model."""
        p = self.spec.pipeline
        duration = latency_durations(
            self.layers_per_stage(), self.b, self.schedule.group, p.latency_ns
        )
        return Timeline(self.schedule, duration, keep=GANTT_ACTIONS)

    def lr(self, j: int) -> float:
        return learning_rate(self.spec, j * self.b / len(self.data.x_train))

    # -- the loop ----------------------------------------------------------------------

    def run(self, checkpoint_every: int | None) -> dict[str, Any]:
        """Run this stage's actions to the end (or a stop); returns its final part."""
        if checkpoint_every is not None and self.schedule.drains:
            self.points.checkpoint_every = checkpoint_every
        plan = iter_points(self.timeline(), self.points, skip=self.skip)
        if not self.skip:  # a fresh run measures before any training (all counts 0)
            plan = itertools.chain([Point(METRIC, 0, (0,) * self.stages, 0.0)], plan)
        order = self.schedule.per_stage[self.s]
        left = Counter(a.kind for a in itertools.islice(order, self.executed, None))
        if self.links.prev_train is not None:  # an activation for each forward left
            self.links.prev_train.expected = left[FORWARD]
        if self.links.next_train is not None:  # a gradient for each backward left
            self.links.next_train.expected = left[BACKWARD]
        stop: Stopped | None = None
        error: str | None = None
        try:
            point: Point | None = next(plan)
            for k in range(self.executed, len(order) + 1):
                while point is not None and point.counts[self.s] == k:
                    self._take_point(point)
                    point = next(plan, None)
                if k < len(order):
                    self._execute(order[k])
        except Stopped as stopped:
            stop = stopped
        except LostPeer:
            raise  # no draining through a dead neighbour: the launcher ends the others
        except RunError as exc:
            error, stop = str(exc), Stopped(FAILED)
        except Exception as exc:  # the run fails, naming the stage; the others stop cleanly
            error, stop = f"stage {self.s}: {type(exc).__name__}: {exc}", Stopped(FAILED)
        if stop is not None:
            try:
                stop = drain(self.links.all, stop)
            except LostPeer as exc:  # a neighbour died meanwhile: nobody is left to tell
                raise LostPeer(error or str(exc)) from None
        for link in self.links.all:
            link.flush()
        return self._final_part(stop, error)

    def _execute(self, action: Action) -> None:
        started, waited = time.perf_counter(), self.traffic.wait_s
        j = action.microbatch
        if action.kind == FORWARD:
            self._forward(j)
        elif action.kind == BACKWARD:
            grad = None if self.last else self.recv(self.links.next_train)
            grad_in = self.compute.backward(j, grad)
            if not self.first:
                self.send(self.links.prev_train, grad_in)
        else:
            self.compute.update(j, self.lr(j))
            if self.first:
                self.done = j + 1
        self.executed += 1
        wait = self.traffic.wait_s - waited
        self.compute_s[action.kind] += time.perf_counter() - started - wait
        self.train_wait_s += wait
        if action.kind == UPDATE and self.following is not None:  # not timed as the update's
            self.following.retune()

    def _forward(self, j: int) -> None:
        idx: Tensor | None = None
        if self.first:
            if self.sink.stop_asked():
                raise Stopped(CANCELLED, j)
            idx = self.shuffle.indices(j)
            x = self.data.x_train[idx]
        else:
            x = self.recv(self.links.prev_train)
        target = None
        if self.last:
            idx = self.shuffle.indices(j) if idx is None else idx
            target = self.data.y_train[idx]
        out = self.compute.forward(j, x, target)
        if not self.last:
            self.send(self.links.next_train, out)
            return
        loss = out.item()
        if not math.isfinite(loss):
            code = next(k for k, v in NONFINITE.items() if str(v) == str(loss))
            raise Stopped(DIVERGED, j, code)
        self.running += loss
        self.running_n += 1
        now = time.perf_counter()
        if now - self.last_progress >= PROGRESS_EVERY_S or j + 1 == self.total:
            self.last_progress = now
            self.sink.progress(j + 1, self.total, loss)

    def recv(self, link: Link | None) -> Tensor:
        assert link is not None
        return link.tensor()

    def send(self, link: Link | None, tensor: Tensor | None) -> None:
        assert link is not None and tensor is not None
        link.send(tensor)

    # -- metric points and checkpoints -------------------------------------------------

    def _take_point(self, point: Point) -> None:
        if point.kind == CHECKPOINT:
            self.sink.checkpoint(point.done, stage_points.checkpoint_part(self, point))
        else:
            stage_points.measure(self, point)

    # -- the end -------------------------------------------------------------------------

    def _final_part(self, stop: Stopped | None, error: str | None) -> dict[str, Any]:
        wall = time.perf_counter() - self.start
        part: dict[str, Any] = {
            "stage": self.s,
            "state": to_bytes(stage_state(self.module)),
            "stop": None if stop is None else (stop.reason, stop.microbatch, stop.detail),
            "error": error,
            "work": (self.compute.algorithm.updates, stage_pulses(self.module)),
            "process": {
                "stage": self.s,
                "pid": os.getpid(),
                "device": str(self.device),
                "actions": self.executed,
                "wall_s": wall,
                "compute_s": dict(self.compute_s),
                "wait_s": self.traffic.wait_s,
                "train_wait_s": self.train_wait_s,
                "send_s": self.traffic.send_s,
                "messages_sent": self.traffic.sent,
                "peak_rss_mb": peak_rss_mb(),
            },
        }
        if self.following is not None:  # the counts it ran on, as a run's result has them
            part["process"]["threads"] = list(self.following.counts)
        if self.first:
            part.update(
                metrics=self.metrics, done=self.done, updates=self.compute.algorithm.updates
            )
        return part

    def finish(self, part: dict[str, Any]) -> None:
        """Every stage's final part to stage 0, which hands the run's output to the sink."""
        parts: list[Any] | None = [None] * self.stages if self.first else None
        dist.gather_object(part, parts, dst=0)
        if parts is not None:
            self.sink.finish(stage_result.output(self, parts))
