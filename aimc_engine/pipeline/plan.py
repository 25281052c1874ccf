"""Where each stage process measures and checkpoints: the simulator's points, per stage.

The single-process run takes a metric point or a checkpoint right after stage 0's
update that completes `done` micro-batches, in the timeline's order of actions
(training.Points decides which). At that moment stage s has run a definite number of
its own actions, `counts[s]`: the timeline's order respects every dependency, so a
stage process can reach its count without waiting for any action after the point, and
the weights every stage holds there are the simulator's. `iter_points` replays the
timeline (streaming, as the run does) and yields each point with its counts; the
stage processes take part in a point once they have run `counts[s]` actions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aimc_engine.pipeline.compensation import Compensation
from aimc_engine.pipeline.schedule import UPDATE, Action
from aimc_engine.pipeline.timeline import Timeline

METRIC, CHECKPOINT = "metric", "checkpoint"


@dataclass
class Points:
    """Where a run measures and checkpoints: at stage 0's update completing `done`
    micro-batches, a metric point every `eval_every` micro-batches (the start and the end
    are measured too), a checkpoint every `checkpoint_every` where nothing is in flight."""

    eval_every: int
    total: int
    checkpoint_every: int | None  # None: no checkpoints
    done: int = 0
    last_checkpoint: int = 0

    def completed(self, done: int) -> tuple[bool, bool]:
        """(metric point due, checkpoint due) once stage 0's update brings `done`."""
        previous, self.done = self.done, done
        every = self.eval_every
        metric = done < self.total and done // every > previous // every
        checkpoint = (
            self.checkpoint_every is not None
            and done < self.total
            and done - self.last_checkpoint >= self.checkpoint_every
        )
        if checkpoint:
            self.last_checkpoint = done
        return metric, checkpoint


@dataclass(frozen=True)
class Point:
    """A metric point or checkpoint after `done` micro-batches, stage s at counts[s]."""

    kind: str
    done: int
    counts: tuple[int, ...]
    sim_time_ns: float


@dataclass(frozen=True)
class Halt:
    """Where a run stopped early stands in the timeline: micro-batches stage 0 had
    completed and the updates it had applied before `action`."""

    done: int
    updates: int


def _applies(compensation: Compensation | None, action: Action) -> bool:
    """Whether stage 0's update `action` writes the tiles (accumulate may keep it)."""
    return compensation is None or compensation.rate(0, action.microbatch, 1.0) is not None


def iter_points(
    timeline: Timeline,
    points: Points,
    *,
    skip: int = 0,
) -> Iterator[Point]:
    """The points of a run in order, from a fresh `timeline` (every action recorded on its
    clock, as the run records them) and the run's `Points`. The first `skip`
    actions ran before a checkpoint: they move the clock only, as in Training.train.
    The last point, after every action,
    is the final measurement."""
    counts = [0] * timeline.schedule.stages
    for index, timed in enumerate(timeline):
        timeline.record(timed)
        action = timed.action
        counts[action.stage] += 1
        if action.stage != 0 or action.kind != UPDATE or index < skip:
            continue
        done = action.microbatch + 1
        metric, checkpoint = points.completed(done)
        sim = timeline.clock.after(done) if metric else 0.0
        if metric:
            yield Point(METRIC, done, tuple(counts), sim)
        if checkpoint:
            yield Point(CHECKPOINT, done, tuple(counts), 0.0)
    done = points.done
    yield Point(METRIC, done, tuple(counts), timeline.clock.after(done))


def halt_before(timeline: Timeline, compensation: Compensation | None, stop: Action) -> Halt:
    """Stage 0's progress when the single-process run reaches `stop` (a divergence at the
    last stage's forward, or a cancel at stage 0's forward), from a fresh timeline."""
    done = updates = 0
    for timed in timeline:
        action = timed.action
        if action == stop:
            break
        if action.stage == 0 and action.kind == UPDATE:
            done = action.microbatch + 1
            updates += _applies(compensation, action)
    return Halt(done, updates)
