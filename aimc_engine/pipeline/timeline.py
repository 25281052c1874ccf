"""Timeline replay: when each action of a schedule runs, given how long it takes.

Every action starts as soon as its stage is free and the actions it depends on
(`schedule.dependencies`) have finished. From the resulting start and end times
come makespan, per-stage utilisation, bubble fraction, staleness and the
simulated clock of each metric point. Torch-free.
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
    build_schedule,
    dependencies,
)
from aimc_spec.spec import UPDATE_NS, LatencySpec


@dataclass(frozen=True)
class Timed:
    action: Action
    start: float
    end: float


def replay(schedule: Schedule, duration: Callable[[Action], float]) -> list[Timed]:
    """All actions with start and end times, in order of start (a valid execution order)."""
    return list(iter_replay(schedule, duration))


def iter_replay(schedule: Schedule, duration: Callable[[Action], float]) -> Iterator[Timed]:
    """`replay`, one action at a time: a long job's timeline need not sit in memory."""
    p = schedule.stages
    position = [0] * p
    free = [0.0] * p
    finished: dict[Action, float] = {}
    total = sum(len(actions) for actions in schedule.per_stage)
    for _ in range(total):
        best: tuple[float, int, Action] | None = None
        for s in range(p):
            if position[s] == len(schedule.per_stage[s]):
                continue
            action = schedule.per_stage[s][position[s]]
            deps = dependencies(action, p)
            if any(d not in finished for d in deps):
                continue
            start = max([free[s], *(finished[d] for d in deps)])
            if best is None or start < best[0]:
                best = (start, s, action)
        if best is None:
            waiting = [
                str(schedule.per_stage[s][position[s]])
                for s in range(p)
                if position[s] < len(schedule.per_stage[s])
            ]
            raise RuntimeError(f"schedule {schedule.name} deadlocks waiting on {waiting}")
        start, s, action = best
        end = start + duration(action)
        finished[action] = end
        free[s] = end
        position[s] += 1
        yield Timed(action, start, end)


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


def staleness(schedule: Schedule) -> list[int]:
    """Per stage, the most updates any forward lags behind sequential training.

    Sequential training has applied j // group updates before micro-batch j; a
    stage that has applied fewer when it runs the forward of j computes with
    weights that many updates old (d_s = P-1-s for the async schedules).
    """
    worst = []
    for actions in schedule.per_stage:
        updates, lag = 0, 0
        for a in actions:
            if a.kind == UPDATE:
                updates += 1
            elif a.kind == FORWARD:
                lag = max(lag, a.microbatch // schedule.group - updates)
        worst.append(lag)
    return worst


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
    schedule: Schedule, tally: Tally, samples: int, *, sequential_makespan: float | None = None
) -> TimelineSummary:
    """Makespan, utilisation (busy / makespan per stage), bubble = 1 - mean utilisation."""
    makespan = tally.makespan
    utilisation = [b / makespan if makespan else 0.0 for b in tally.busy]
    return TimelineSummary(
        makespan_ns=makespan,
        utilisation=utilisation,
        bubble_fraction=1 - sum(utilisation) / len(utilisation),
        staleness=staleness(schedule),
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
    of the first m micro-batches have been recorded.
    """

    def __init__(self) -> None:
        self._ends: dict[int, float] = {}
        self._counted = 0
        self._time = 0.0

    def record(self, t: Timed) -> None:
        j = t.action.microbatch
        self._ends[j] = max(self._ends.get(j, 0.0), t.end)

    def after(self, m: int) -> float:
        """Clock after m micro-batches (0 before any)."""
        while self._counted < m:
            self._time = max(self._time, self._ends.pop(self._counted, 0.0))
            self._counted += 1
        return self._time if m > 0 else 0.0
