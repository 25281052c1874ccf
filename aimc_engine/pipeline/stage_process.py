"""One pipeline stage in a process of its own: the processes executor's worker.

Stage s builds only its own layers, tiles and algorithm state, from its own random
streams (seeds.py), and runs its own action list in order: a forward takes the
micro-batch (stage 0) or the activation stage s-1 sends, a backward takes the gradient
stage s+1 sends, an update applies the stage's gradients. The stage's weights are
touched by nothing else, so each forward and backward sees the weight version the
single-process simulator gives it, and the numbers agree bit for bit on CPU.

Metric points and checkpoints come where the simulator takes them (plan.py): at a
metric point the stages evaluate the test set and probe the gradient as a small
pipeline of their own (on the metric links), the last stage adds its losses and sends
a report back, each stage adds its part, and stage 0 writes the record. At a
checkpoint each stage hands its own part to the sink; the launcher puts the parts
together. Messages and stopping: transport.py.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import resource
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor

from aimc_engine import checkpoint
from aimc_engine.artifacts import GANTT_ACTIONS
from aimc_engine.datasets import Dataset
from aimc_engine.errors import RunError
from aimc_engine.metrics import (
    Probe,
    chunks,
    combine_health,
    mean_of,
    norm_sq,
    observing,
    tile_health,
)
from aimc_engine.metrics import tally as chunk_tally
from aimc_engine.pipeline.compensation import compensation_for
from aimc_engine.pipeline.executor import Stage, stage_ranges
from aimc_engine.pipeline.plan import (
    CHECKPOINT,
    METRIC,
    Halt,
    Point,
    Points,
    halt_before,
    iter_points,
)
from aimc_engine.pipeline.schedule import BACKWARD, FORWARD, UPDATE, Action, build_schedule
from aimc_engine.pipeline.timeline import Timeline, latency_durations, sequential_makespan
from aimc_engine.pipeline.transport import (
    CANCELLED,
    DIVERGED,
    FAILED,
    NONFINITE,
    Link,
    LostPeer,
    Stopped,
    Traffic,
    drain,
)
from aimc_engine.seeds import stage_generators
from aimc_engine.tiles import TileConfig
from aimc_engine.training import (
    GRAD_SAMPLES,
    Shuffle,
    build_run_stage,
    learning_rate,
    metric_record,
    microbatch_count,
    versions,
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


def to_bytes(obj: Any) -> bytes:
    """Tensors and plain data as torch.save bytes (copied: the weights change after)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def from_bytes(raw: bytes) -> Any:
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def stage_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """A stage's state_dict under the whole model's keys (`units.<index>....`)."""
    return {f"units.{key}": value for key, value in module.state_dict().items()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Neighbours:
    """A stage's links: to the stage before and after, for training and for metrics."""

    prev_train: Link | None
    prev_metric: Link | None
    next_train: Link | None
    next_metric: Link | None

    @property
    def all(self) -> list[Link]:
        links = [self.prev_train, self.prev_metric, self.next_train, self.next_metric]
        return [link for link in links if link is not None]


def connect(s: int, stages: int, device: torch.device, traffic: Traffic) -> Neighbours:
    """The links of stage s (its rank): training messages on the default group, metric
    points on a second group every rank creates, in the same order."""
    metric_group = dist.new_group(list(range(stages))) if stages > 1 else None

    def link(peer: int, group: dist.ProcessGroup | None) -> Link | None:
        return Link(peer, group, device, traffic) if 0 <= peer < stages else None

    return Neighbours(
        link(s - 1, None), link(s - 1, metric_group), link(s + 1, None), link(s + 1, metric_group)
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
        self.links = connect(s, p.stages, device, self.traffic)
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
        if resume is not None:
            self._restore(resume)

    # -- the schedule's pieces ---------------------------------------------------------

    def _layers_per_stage(self) -> list[int]:
        counts = self.spec.model.layers_per_unit
        return [sum(counts[i] for i in r) for r in self.ranges]

    def timeline(self) -> Timeline:
        """A fresh replay of the run's schedule under the latency model."""
        p = self.spec.pipeline
        duration = latency_durations(
            self._layers_per_stage(), self.b, self.schedule.group, p.latency_ns
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
            grad = None if self.last else self._recv(self.links.next_train)
            grad_in = self.compute.backward(j, grad)
            if not self.first:
                self._send(self.links.prev_train, grad_in)
        else:
            self.compute.update(j, self.lr(j))
            if self.first:
                self.done = j + 1
        self.executed += 1
        wait = self.traffic.wait_s - waited
        self.compute_s[action.kind] += time.perf_counter() - started - wait
        self.train_wait_s += wait

    def _forward(self, j: int) -> None:
        idx: Tensor | None = None
        if self.first:
            if self.sink.stop_asked():
                raise Stopped(CANCELLED, j)
            idx = self.shuffle.indices(j)
            x = self.data.x_train[idx]
        else:
            x = self._recv(self.links.prev_train)
        target = None
        if self.last:
            idx = self.shuffle.indices(j) if idx is None else idx
            target = self.data.y_train[idx]
        out = self.compute.forward(j, x, target)
        if not self.last:
            self._send(self.links.next_train, out)
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

    def _recv(self, link: Link | None) -> Tensor:
        assert link is not None
        return link.tensor()

    def _send(self, link: Link | None, tensor: Tensor | None) -> None:
        assert link is not None and tensor is not None
        link.send(tensor)

    # -- metric points and checkpoints -------------------------------------------------

    def _take_point(self, point: Point) -> None:
        if point.kind == CHECKPOINT:
            self.sink.checkpoint(point.done, self._checkpoint_part(point))
        else:
            self._measure(point)

    @torch.no_grad()
    def _evaluate(self) -> tuple[float, float] | None:
        """This stage's part of the test-set evaluation; the last stage's (loss, acc)."""
        data, links = self.data, self.links
        tallies = []
        with observing(self.module, self.gens.observe):
            for part in chunks(len(data.x_test)):
                h = data.x_test[part] if self.first else self._recv(links.prev_metric)
                h = self.module(h)
                if self.last:
                    tallies.append(chunk_tally(h, data.y_test[part]))
                else:
                    self._send(links.next_metric, h)
        return mean_of(tallies, len(data.x_test)) if self.last else None

    def _measure(self, point: Point) -> None:
        """This stage's part of a metric point (training.Training.measure, spread out)."""
        data, links = self.data, self.links
        test = self._evaluate()
        probe = Probe(self.module)
        x = data.x_train[:GRAD_SAMPLES] if self.first else self._recv(links.prev_metric)
        out = probe.forward(x, first=self.first)
        grad: Tensor | None = None
        if self.last:
            subset_loss = probe.loss(data.y_train[:GRAD_SAMPLES])
            report: dict[str, Any] = {
                "weights": [],
                "biases": [],
                "health": [],
                "test": test,
                "train_loss": self.running / self.running_n if self.running_n else subset_loss,
            }
            self.running, self.running_n = 0.0, 0
        else:
            self._send(links.next_metric, out)
            grad = self._recv(links.next_metric)
            assert links.next_metric is not None
            report = links.next_metric.obj()
        grad_in, weights, biases = probe.backward(grad)
        report["weights"].insert(0, weights)
        report["biases"].insert(0, biases)
        report["health"][:0] = tile_health(self.module)
        if not self.first:
            self._send(links.prev_metric, grad_in)
            assert links.prev_metric is not None
            links.prev_metric.send_object(report)
            return
        record = metric_record(
            self.spec,
            len(data.x_train),
            step=self.compute.algorithm.updates,
            done=point.done,
            sim_time_ns=point.sim_time_ns,
            wall_s=time.perf_counter() - self.start,
            train_loss=report["train_loss"],
            test=report["test"],
            grad_norm_sq=norm_sq(report["weights"], report["biases"]),
            health=combine_health(report["health"]),
        )
        self.metrics.append(record)
        self.sink.metrics(record)

    def _checkpoint_part(self, point: Point) -> dict[str, Any]:
        """This stage's share of a checkpoint (the launcher merges the stages' shares)."""
        part: dict[str, Any] = {
            "stage": self.s,
            "model": stage_state(self.module),
            "updates": self.compute.algorithm.updates,
            "noise_gen": self.gens.noise.get_state(),
            "observe_gen": self.gens.observe.get_state(),
            "executed": point.counts[self.s],
        }
        if self.first:
            part.update(
                data_gen=self.shuffle.generator.get_state(),
                order=self.shuffle.order,
                metrics=list(self.metrics),
                done=point.done,
                wall=time.perf_counter() - self.start,
            )
        if self.last:
            part["running"] = (self.running, self.running_n)
        return {"stage": self.s, "bytes": to_bytes(part)}

    def _restore(self, blob: bytes) -> None:
        """Continue from a checkpoint: this stage's weights, streams and place in its list."""
        saved = checkpoint.load(blob, self.spec, self.device)
        own = {str(i) for i in self.ranges[self.s]}
        state = {}
        for key, value in saved.model.items():
            _, unit, rest = key.split(".", 2)
            if unit in own:
                state[f"{unit}.{rest}"] = value
        self.module.load_state_dict(state)
        self.compute.algorithm.updates = saved.updates[self.s]
        self.gens.noise.set_state(saved.noise_gens[self.s].cpu())
        self.gens.observe.set_state(saved.observe_gens[self.s].cpu())
        self.shuffle.generator.set_state(saved.data_gen.cpu())
        self.shuffle.order = saved.order
        self.metrics = list(saved.metrics)
        self.running, self.running_n = saved.running if self.last else (0.0, 0)
        self.done = self.points.done = self.points.last_checkpoint = saved.done
        self.executed = saved.executed[self.s]
        self.skip = sum(saved.executed)
        self.start -= saved.wall

    # -- the end -------------------------------------------------------------------------

    def _final_part(self, stop: Stopped | None, error: str | None) -> dict[str, Any]:
        wall = time.perf_counter() - self.start
        part: dict[str, Any] = {
            "stage": self.s,
            "state": to_bytes(stage_state(self.module)),
            "stop": None if stop is None else (stop.reason, stop.microbatch, stop.detail),
            "error": error,
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
        if self.first:
            part.update(
                metrics=self.metrics, done=self.done, updates=self.compute.algorithm.updates
            )
        return part

    def output(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """Stage 0: the run's result from every stage's final part (what run() returns)."""
        mine = parts[0]
        errors = [p["error"] for p in parts if p["error"]]
        stops = sorted(p["stop"] for p in parts if p["stop"] is not None)
        status, message, halt_at = "succeeded", None, None
        done, updates = mine["done"], mine["updates"]
        if errors:
            status, message = "failed", errors[0]
        elif stops and stops[0][0] == DIVERGED:
            _, j, code = stops[0]
            status = "failed"
            message = (
                f"training diverged: loss is {NONFINITE[code]} at micro-batch {j}; "
                "lower optimizer.lr"
            )
            halt_at = Action(self.stages - 1, FORWARD, j)
            halt: Halt = halt_before(self.timeline(), self.compensation, halt_at)
            done, updates = halt.done, halt.updates
        elif stops and stops[0][0] == CANCELLED:
            status, halt_at = "cancelled", Action(0, FORWARD, stops[0][1])
        elif stops:
            status, message = "failed", "a stage process failed"
        timeline = self._replayed(halt_at, ran=status == "failed")
        samples = done * self.b
        p = self.spec.pipeline
        sequential_ns = sequential_makespan(
            p.stages,
            self.total,
            latency_durations(self._layers_per_stage(), self.b, 1, p.latency_ns),
        )
        metrics = mine["metrics"]
        last = metrics[-1]
        result = {
            "status": status,
            "error": message,
            "final": {
                "test_accuracy": last["test_accuracy"],
                "test_loss": last["test_loss"],
                "train_loss": last["train_loss"],
            },
            "samples": samples,
            "updates": updates,
            "wall_seconds": time.perf_counter() - self.start,
            "timeline": timeline.summary(samples, sequential_ns=sequential_ns),
            "processes": [part["process"] for part in parts],
            "spec": self.spec.normalised(),
            "versions": versions(),
        }
        state: dict[str, Tensor] = {}
        for part in parts:
            state.update(from_bytes(part["state"]))
        return {
            "result": result,
            "metrics": metrics,
            "state": to_bytes(state),
            "timeline": timeline.first,
        }

    def _replayed(self, stop: Action | None, *, ran: bool) -> Timeline:
        """The timeline with the actions the single-process run would have done recorded:
        all, or those before `stop` (and `stop` itself if it `ran`: a diverging forward
        runs, a forward a cancel comes before does not)."""
        timeline = self.timeline()
        for timed in timeline:
            if timed.action == stop:
                if ran:
                    timeline.record(timed)
                break
            timeline.record(timed)
        timeline.finish()
        return timeline
