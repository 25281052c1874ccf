"""A stage process's part in metric points and checkpoints (stage_process.py's StageRun).

At a metric point the stages evaluate the test set and probe the gradient as a small
pipeline of their own, on the metric links: the activations go forward, the last stage
computes the losses and sends a report back, each stage adds its part on the way, and
stage 0 writes the record (the same floats as training.Training.measure). At a
checkpoint each stage hands its own share to the sink; the launcher merges them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from aimc_engine import checkpoint
from aimc_engine.metrics import (
    Probe,
    chunks,
    combine_health,
    mean_of,
    norm_sq,
    observing,
    stage_pulses,
    tile_health,
)
from aimc_engine.metrics import tally as chunk_tally
from aimc_engine.pipeline.plan import Point
from aimc_engine.pipeline.serial import stage_state, to_bytes
from aimc_engine.training import GRAD_SAMPLES, metric_record
from aimc_spec import energy
from aimc_spec.resources import eval_chunk

if TYPE_CHECKING:
    from aimc_engine.pipeline.stage_process import StageRun


@torch.no_grad()
def evaluate(run: StageRun) -> tuple[float, float] | None:
    """This stage's part of the test-set evaluation; the last stage's (loss, acc)."""
    data, links = run.data, run.links
    tallies = []
    with observing(run.module, run.gens.observe):
        size = eval_chunk(run.spec, tuple(data.x_test.shape[1:]))
        for part in chunks(len(data.x_test), size):
            h = data.x_test[part] if run.first else run.recv(links.prev_metric)
            h = run.module(h)
            if run.last:
                tallies.append(chunk_tally(h, data.y_test[part]))
            else:
                run.send(links.next_metric, h)
    return mean_of(tallies, len(data.x_test)) if run.last else None


def measure(run: StageRun, point: Point) -> None:
    """This stage's part of a metric point (training.Training.measure, spread out)."""
    data, links = run.data, run.links
    test = evaluate(run)
    probe = Probe(run.module)
    x = data.x_train[:GRAD_SAMPLES] if run.first else run.recv(links.prev_metric)
    out = probe.forward(x, first=run.first)
    grad: Tensor | None = None
    if run.last:
        subset_loss = probe.loss(data.y_train[:GRAD_SAMPLES])
        report: dict[str, Any] = {
            "weights": [],
            "biases": [],
            "health": [],
            "work": [],
            "test": test,
            "train_loss": run.running / run.running_n if run.running_n else subset_loss,
        }
        run.running, run.running_n = 0.0, 0
    else:
        run.send(links.next_metric, out)
        grad = run.recv(links.next_metric)
        assert links.next_metric is not None
        report = links.next_metric.obj()
    grad_in, weights, biases = probe.backward(grad)
    report["weights"].insert(0, weights)
    report["biases"].insert(0, biases)
    report["health"][:0] = tile_health(run.module)
    report["work"].insert(0, (run.compute.algorithm.updates, stage_pulses(run.module)))
    if not run.first:
        run.send(links.prev_metric, grad_in)
        assert links.prev_metric is not None
        links.prev_metric.send_object(report)
        return
    record = metric_record(
        run.spec,
        len(data.x_train),
        step=run.compute.algorithm.updates,
        done=point.done,
        sim_time_ns=point.sim_time_ns,
        wall_s=time.perf_counter() - run.start,
        train_loss=report["train_loss"],
        test=report["test"],
        grad_norm_sq=norm_sq(report["weights"], report["biases"]),
        health=combine_health(report["health"]),
        energy_pj=energy.estimate(
            run.spec,
            run.data.input_shape,
            run.ranges,
            point.done * run.b,
            [energy.StageWork(*w) for w in report["work"]],
        ).total,
    )
    run.metrics.append(record)
    run.sink.metrics(record)


def checkpoint_part(run: StageRun, point: Point) -> dict[str, Any]:
    """This stage's share of a checkpoint (the launcher merges the stages' shares)."""
    part: dict[str, Any] = {
        "stage": run.s,
        "model": stage_state(run.module),
        "updates": run.compute.algorithm.updates,
        "noise_gen": run.gens.noise.get_state(),
        "observe_gen": run.gens.observe.get_state(),
        "executed": point.counts[run.s],
    }
    if run.first:
        part.update(
            data_gen=run.shuffle.generator.get_state(),
            order=run.shuffle.order,
            metrics=list(run.metrics),
            done=point.done,
            wall=time.perf_counter() - run.start,
        )
    if run.last:
        part["running"] = (run.running, run.running_n)
    return {"stage": run.s, "bytes": to_bytes(part)}


def restore(run: StageRun, blob: bytes) -> None:
    """Continue from a checkpoint: this stage's weights, streams and place in its list."""
    saved = checkpoint.load(blob, run.spec, run.device)
    own = {str(i) for i in run.ranges[run.s]}
    state = {}
    for key, value in saved.model.items():
        _, unit, rest = key.split(".", 2)
        if unit in own:
            state[f"{unit}.{rest}"] = value
    run.module.load_state_dict(state)
    run.compute.algorithm.updates = saved.updates[run.s]
    run.gens.noise.set_state(saved.noise_gens[run.s].cpu())
    run.gens.observe.set_state(saved.observe_gens[run.s].cpu())
    run.shuffle.generator.set_state(saved.data_gen.cpu())
    run.shuffle.order = saved.order
    run.metrics = list(saved.metrics)
    run.running, run.running_n = saved.running if run.last else (0.0, 0)
    run.done = run.points.done = run.points.last_checkpoint = saved.done
    run.executed = saved.executed[run.s]
    run.skip = sum(saved.executed)
    run.start -= saved.wall
