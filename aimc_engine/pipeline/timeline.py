"""Timeline replay: when each action of a schedule runs, given how long it takes.

Every action starts as soon as its stage is free and the actions it depends on
(`schedule.dependencies`) have finished. From the resulting start and end times
come makespan, per-stage utilisation, bubble fraction, staleness and the
simulated clock of each metric point. The replay streams: its memory does not grow
with the number of micro-batches. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from aimc_engine.pipeline.schedule import (
    BACKWARD,
    FORWARD,
    UPDATE,
    Action,
    Schedule,
    awaited,
    build_schedule,
    dependencies,
)
from aimc_spec.spec import UPDATE_NS, LatencySpec


@dataclass(frozen=True, slots=True)
class Timed:
    action: Action
    start: float
    end: float


def replay(schedule: Schedule, duration: Callable[[Action], float]) -> list[Timed]:
    """All actions with start and end times, in order of start (a valid execution order)."""
    return list(iter_replay(schedule, duration))


def iter_replay(schedule: Schedule, duration: Callable[[Action], float]) -> Iterator[Timed]:
    """`replay`, one action at a time, holding O(P) state: of all the actions that ran,
    only those another stage still waits for are kept (see `Timer`)."""
    p = schedule.stages
    timer = Timer(p, duration)
    orders = [iter(actions) for actions in schedule.per_stage]
    heads = [next(order, None) for order in orders]  # each stage's next action, if any
    # when each head can start (None: not ready, or the stage is done); running an
    # action at stage s changes only the heads of s - 1, s and s + 1
    starts = [None if head is None else timer.start(head) for head in heads]
    while True:
        best: tuple[float, int] | None = None  # (start, stage) of the earliest ready head
        for s, start in enumerate(starts):
            if start is not None and (best is None or start < best[0]):
                best = (start, s)
        if best is None:
            waiting = [str(head) for head in heads if head is not None]
            if waiting:
                raise RuntimeError(f"schedule {schedule.name} deadlocks waiting on {waiting}")
            return
        s = best[1]
        action = heads[s]
        assert action is not None  # a stage with a start has a head
        heads[s] = next(orders[s], None)
        yield timer.run(action)
        for r in range(max(0, s - 1), min(p, s + 2)):
            head = heads[r]
            starts[r] = None if head is None else timer.start(head)


class Timer:
    """Start and end of each action, fed one at a time after the actions it depends on.

    An action starts as soon as its stage is free and the actions of other stages it
    waits for (`dependencies`) have ended. With each stage's order fixed, these times
    do not depend on the order the stages' actions are interleaved in, so a second
    Timer fed the same actions gives the times under another duration model (the run
    times its actions in unit time as it goes). State: each stage's free time and the
    ends of the forwards and backwards another stage has yet to use (`awaited`): the
    micro-batches in flight (a mini-batch, or the P - s of an async stage), never one
    entry per action done.
    """

    def __init__(self, stages: int, duration: Callable[[Action], float]) -> None:
        self.stages = stages
        self.duration = duration
        self.free = [0.0] * stages
        self.awaited: dict[Action, float] = {}  # end time, until the dependent action runs

    def start(self, action: Action) -> float | None:
        """When `action` can start; None while an action it depends on has not run."""
        start = self.free[action.stage]
        for d in dependencies(action, self.stages):
            end = self.awaited.get(d)
            if end is None:
                return None
            start = max(start, end)
        return start

    def run(self, action: Action) -> Timed:
        """Time `action` (its dependencies must have run) and advance its stage."""
        start = self.start(action)
        if start is None:
            raise RuntimeError(f"{action} timed before the actions it depends on")
        for d in dependencies(action, self.stages):
            del self.awaited[d]
        end = start + self.duration(action)
        self.free[action.stage] = end
        if awaited(action, self.stages):
            self.awaited[action] = end
        return Timed(action, start, end)


def unit_duration(action: Action) -> float:
    """The textbook clock: a forward or backward takes 1, an update nothing."""
    return 0.0 if action.kind == UPDATE else 1.0


def latency_durations(
    layers_per_stage: list[int], micro_batch_size: int, group: int, latency: LatencySpec
) -> Callable[[Action], float]:
    """Durations from per-layer, per-sample latencies (pipeline.md): F and B cost
    latency x b x layers of the stage; an update covers the `group` micro-batches
    it applies (rank-one updates, one per sample). A LatencySpec outside a JobSpec
    may leave the update unset: Analog SGD's latency then."""
    update = latency.update if latency.update is not None else UPDATE_NS["analog_sgd"]
    per_kind = {
        FORWARD: latency.forward * micro_batch_size,
        BACKWARD: latency.backward * micro_batch_size,
        UPDATE: update * micro_batch_size * group,
    }

    def duration(action: Action) -> float:
        return per_kind[action.kind] * layers_per_stage[action.stage]

    return duration


class Lag:
    """Per stage, the most updates any forward seen so far lags behind sequential
    training.

    Sequential training has applied j // group updates before micro-batch j; a
    stage that has applied fewer when it runs the forward of j computes with
    weights that many updates old (d_s = P-1-s for the async schedules).
    """

    def __init__(self, stages: int, group: int) -> None:
        self.group = group
        self.updates = [0] * stages
        self.worst = [0] * stages

    def add(self, a: Action) -> None:
        if a.kind == UPDATE:
            self.updates[a.stage] += 1
        elif a.kind == FORWARD:
            lag = a.microbatch // self.group - self.updates[a.stage]
            self.worst[a.stage] = max(self.worst[a.stage], lag)


def staleness(schedule: Schedule) -> list[int]:
    """Per stage, the most updates any forward of the whole schedule lags (Lag)."""
    lag = Lag(schedule.stages, schedule.group)
    for actions in schedule.per_stage:
        for a in actions:
            lag.add(a)
    return lag.worst


@dataclass(frozen=True)
class TimelineSummary:
    makespan_ns: float
    utilisation: list[float]
    bubble_fraction: float
    staleness: list[int]
    samples_per_sim_second: float | None
    speedup_vs_sequential: float | None

    def as_dict(self) -> dict[str, object]:
        return {
            "makespan_ns": self.makespan_ns,
            "bubble_fraction": self.bubble_fraction,
            "utilisation": self.utilisation,
            "staleness": self.staleness,
            "samples_per_sim_second": self.samples_per_sim_second,
            "speedup_vs_sequential": self.speedup_vs_sequential,
        }


class Tally:
    """Busy time per stage and makespan of the actions seen so far."""

    def __init__(self, stages: int) -> None:
        self.busy = [0.0] * stages
        self.makespan = 0.0

    def add(self, t: Timed) -> None:
        self.busy[t.action.stage] += t.end - t.start
        self.makespan = max(self.makespan, t.end)

    @classmethod
    def of(cls, timed: Iterable[Timed], stages: int) -> Tally:
        tally = cls(stages)
        for t in timed:
            tally.add(t)
        return tally


def summarise(
    schedule: Schedule,
    tally: Tally,
    samples: int,
    *,
    sequential_makespan: float | None = None,
    lag: Lag | None = None,
) -> TimelineSummary:
    """Makespan, utilisation (busy / makespan per stage), bubble = 1 - mean utilisation;
    the staleness of the actions `lag` saw, else of the whole schedule."""
    makespan = tally.makespan
    utilisation = [b / makespan if makespan else 0.0 for b in tally.busy]
    return TimelineSummary(
        makespan_ns=makespan,
        utilisation=utilisation,
        bubble_fraction=1 - sum(utilisation) / len(utilisation),
        staleness=lag.worst if lag is not None else staleness(schedule),
        samples_per_sim_second=samples / (makespan * 1e-9) if makespan else None,
        speedup_vs_sequential=(sequential_makespan / makespan)
        if sequential_makespan and makespan
        else None,
    )


def sequential_makespan(
    stages: int, microbatches: int, duration: Callable[[Action], float]
) -> float:
    """Makespan of the same micro-batches run one at a time (durations per micro-batch).

    One micro-batch at a time is periodic: each adds the same time as the second
    did, so two are replayed and the rest extrapolated exactly.
    """

    def makespan(n: int) -> float:
        return Tally.of(
            iter_replay(build_schedule("sequential", stages, n), duration), stages
        ).makespan

    if microbatches <= 2:
        return makespan(microbatches)
    first, second = makespan(1), makespan(2)
    return first + (microbatches - 1) * (second - first)


class Clock:
    """The simulated time by which the first m micro-batches are fully processed.

    Fed every replayed action; `after(m)` is asked for growing m, once all actions
    of the first m micro-batches have been recorded. `settle(m)` says no later
    question asks about fewer than m micro-batches: their ends fold into one number,
    so the clock holds the micro-batches in flight, not one entry per micro-batch.
    """

    def __init__(self) -> None:
        self._ends: dict[int, float] = {}  # micro-batch >= settled -> its latest end
        self._settled_end = 0.0  # the latest end among micro-batches in [counted, settled)
        self._settled = 0
        self._counted = 0
        self._time = 0.0

    def record(self, t: Timed) -> None:
        j = t.action.microbatch
        if j < self._counted:
            return  # a question already answered: no later one reads it
        if j < self._settled:
            self._settled_end = max(self._settled_end, t.end)
        else:
            self._ends[j] = max(self._ends.get(j, 0.0), t.end)

    def settle(self, m: int) -> None:
        """No later `after` asks about fewer than m micro-batches."""
        while self._settled < m:
            self._settled_end = max(self._settled_end, self._ends.pop(self._settled, 0.0))
            self._settled += 1

    def after(self, m: int) -> float:
        """Clock after m micro-batches (0 before any)."""
        if self._counted < m < self._settled:
            raise ValueError(f"clock: asked after {m} micro-batches, {self._settled} settled")
        if m > self._counted:
            self.settle(m)
            self._time = max(self._time, self._settled_end)
            self._settled_end, self._counted = 0.0, m
        return self._time if m > 0 else 0.0


class Timeline:
    """One run's replay as it streams: the clock of its metric points, busy time per
    stage under the latency model and in unit time, the first `keep` actions (for the
    Gantt chart). Memory does not grow with the run's length.

    Iterating gives the latency model's actions in order; the run `record`s those it
    has done. Every action iterated over is also timed in unit time (`Timer`: the
    same per-stage orders give the same times as a replay of its own), so the
    textbook figures need no second replay. A stopped run's unit figures are those of
    the actions it reached: timing the rest of a long schedule took as long as the
    run, and a cancel must end the job at once.
    """

    def __init__(
        self, schedule: Schedule, duration: Callable[[Action], float], *, keep: int
    ) -> None:
        self.schedule = schedule
        self.clock = Clock()
        self.tally = Tally(schedule.stages)
        self.unit_tally = Tally(schedule.stages)
        self.lag = Lag(schedule.stages, schedule.group)
        self.first: list[Timed] = []
        self._keep = keep
        self._replay = self._timed(duration)

    def _timed(self, duration: Callable[[Action], float]) -> Iterator[Timed]:
        unit = Timer(self.schedule.stages, unit_duration)
        for t in iter_replay(self.schedule, duration):
            self.unit_tally.add(unit.run(t.action))
            self.lag.add(t.action)
            yield t

    def __iter__(self) -> Iterator[Timed]:
        return self._replay

    def record(self, t: Timed) -> None:
        """An action the run has done (or, resuming, had done before its checkpoint)."""
        self.clock.record(t)
        self.tally.add(t)
        if len(self.first) < self._keep:
            self.first.append(t)
        if t.action.kind == UPDATE and t.action.stage == 0:
            # metric points are taken at stage 0's updates, for the micro-batches done
            self.clock.settle(t.action.microbatch + 1)

    def summary(self, samples: int, *, sequential_ns: float) -> dict[str, object]:
        """The latency model's figures for the actions done, with `unit_time`: the
        schedule's (as far as the run reached) with F = B = 1 per stage and free updates
        (the textbook bubble (P-1)/(B+P-1) of gpipe, utilisation -> 1 for async)."""
        p, n = self.schedule.stages, self.schedule.microbatches
        summary = summarise(
            self.schedule, self.tally, samples, sequential_makespan=sequential_ns, lag=self.lag
        ).as_dict()
        unit = summarise(
            self.schedule,
            self.unit_tally,
            0,
            sequential_makespan=sequential_makespan(p, n, unit_duration),
            lag=self.lag,
        )
        summary["unit_time"] = {
            "makespan": unit.makespan_ns,
            "bubble_fraction": unit.bubble_fraction,
            "utilisation": unit.utilisation,
            "speedup_vs_sequential": unit.speedup_vs_sequential,
        }
        return summary
