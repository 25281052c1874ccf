"""The run's output from its stage processes' final parts, assembled by stage 0.

Status, error and stage 0's progress are the single-process run's: after a divergence
they are read off the timeline at the diverging forward (plan.halt_before), after a
cancel they are how far stage 0 got. The timeline summary records the actions the
single-process run would have done.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from torch import Tensor

from aimc_engine.pipeline.plan import Halt, halt_before
from aimc_engine.pipeline.schedule import FORWARD, Action
from aimc_engine.pipeline.serial import from_bytes, to_bytes
from aimc_engine.pipeline.timeline import Timeline, latency_durations, sequential_makespan
from aimc_engine.pipeline.transport import CANCELLED, DIVERGED, NONFINITE
from aimc_engine.training import versions
from aimc_spec import energy

if TYPE_CHECKING:
    from aimc_engine.pipeline.stage_process import StageRun


def output(run: StageRun, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Stage 0: the run's result from every stage's final part (what run() returns)."""
    status, message, halt_at, done, updates = ending(run, parts)
    timeline = replayed(run, halt_at, ran=status == "failed")
    samples = done * run.b
    p = run.spec.pipeline
    sequential_ns = sequential_makespan(
        p.stages,
        run.total,
        latency_durations(run.layers_per_stage(), run.b, 1, p.latency_ns),
    )
    metrics = parts[0]["metrics"]
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
        "wall_seconds": time.perf_counter() - run.start,
        "timeline": timeline.summary(samples, sequential_ns=sequential_ns),
        "energy": energy.summary(
            run.spec,
            run.data.input_shape,
            run.ranges,
            samples,
            [energy.StageWork(*part["work"]) for part in parts],
            metrics,
        ),
        "processes": [part["process"] for part in parts],
        "spec": run.spec.normalised(),
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


def ending(
    run: StageRun, parts: list[dict[str, Any]]
) -> tuple[str, str | None, Action | None, int, int]:
    """How the run ended, from the stages' parts: (status, error message, the action
    it stopped before, micro-batches done, updates) as the single-process run's."""
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
            f"training diverged: loss is {NONFINITE[code]} at micro-batch {j}; lower optimizer.lr"
        )
        halt_at = Action(run.stages - 1, FORWARD, j)
        halt: Halt = halt_before(run.timeline(), run.compensation, halt_at)
        done, updates = halt.done, halt.updates
    elif stops and stops[0][0] == CANCELLED:
        status, halt_at = "cancelled", Action(0, FORWARD, stops[0][1])
    elif stops:
        status, message = "failed", "a stage process failed"
    return status, message, halt_at, done, updates


def replayed(run: StageRun, stop: Action | None, *, ran: bool) -> Timeline:
    """The timeline with the actions the single-process run would have done recorded:
    all, or those before `stop` (and `stop` itself if it `ran`: a diverging forward
    runs, a forward a cancel comes before does not)."""
    timeline = run.timeline()
    for timed in timeline:
        if timed.action == stop:
            if ran:
                timeline.record(timed)
            break
        timeline.record(timed)
    return timeline
