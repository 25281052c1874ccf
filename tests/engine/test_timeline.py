"""Timeline replay: the formulas of pipeline.md with unit durations, staleness, the clock,
the streaming replay against a full one, its memory."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from collections.abc import Callable

import pytest

from aimc_engine.artifacts import GANTT_ACTIONS
from aimc_engine.pipeline.schedule import (
    Action,
    Schedule,
    awaited,
    build_schedule,
    dependencies,
)
from aimc_engine.pipeline.stages import StageError, split_units
from aimc_engine.pipeline.timeline import (
    Clock,
    Lag,
    Tally,
    Timed,
    Timeline,
    latency_durations,
    replay,
    sequential_makespan,
    staleness,
    summarise,
)
from aimc_engine.pipeline.timeline import (
    unit_duration as unit,
)
from aimc_spec.spec import LatencySpec
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("p", "b"), [(4, 5), (3, 2), (2, 8)])
def test_sync_bubble(name: str, p: int, b: int) -> None:
    """bubble = (P-1)/(B+P-1); computation density B/(B+P-1) (5/8 for P=4, B=5)."""
    sched = build_schedule(name, p, 3 * b, b)
    t = summarise(sched, Tally.of(replay(sched, unit), p), 3 * b)
    assert t.bubble_fraction == pytest.approx((p - 1) / (b + p - 1))
    assert t.utilisation == pytest.approx([b / (b + p - 1)] * p)


def test_async_utilisation_tends_to_one() -> None:
    short, long = (build_schedule("async", 4, n) for n in (10, 2000))
    u_short = summarise(short, Tally.of(replay(short, unit), 4), 10).utilisation
    u_long = summarise(long, Tally.of(replay(long, unit), 4), 2000).utilisation
    assert min(u_long) > 0.998 > max(u_short)


def test_async_speedup_over_gpipe() -> None:
    """Clock-cycle speedup at the same samples ~ (B+P-1)/B."""
    p, b, n = 4, 5, 2000
    gpipe, asyn = build_schedule("gpipe", p, n, b), build_schedule("async", p, n)
    ratio = max(t.end for t in replay(gpipe, unit)) / max(t.end for t in replay(asyn, unit))
    assert ratio == pytest.approx((b + p - 1) / b, rel=0.01)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("async", [3, 2, 1, 0]),
        ("async_stash", [3, 2, 1, 0]),
        ("gpipe", [0] * 4),
        ("1f1b", [0] * 4),
        ("sequential", [0] * 4),
    ],
)
def test_staleness_per_stage(name: str, expected: list[int]) -> None:
    assert staleness(build_schedule(name, 4, 20, 5)) == expected


def test_replay_respects_dependencies_and_stage_order() -> None:
    sched = build_schedule("1f1b", 3, 6, 3)
    timed = replay(sched, unit)
    end = {t.action: t.end for t in timed}
    for t in timed:
        a = t.action
        if a.kind == "F" and a.stage > 0:
            assert t.start >= end[Action(a.stage - 1, "F", a.microbatch)]
        if a.kind == "B" and a.stage < 2:
            assert t.start >= end[Action(a.stage + 1, "B", a.microbatch)]
    for s, actions in enumerate(sched.per_stage):
        assert [t.action for t in timed if t.action.stage == s] == list(actions)
    assert [t.start for t in timed] == sorted(t.start for t in timed)


def test_latency_durations_and_speedup() -> None:
    lat = LatencySpec(forward=40, backward=40, update=165.9)
    d = latency_durations([2, 1], 10, 5, lat)
    assert d(Action(0, "F", 0)) == pytest.approx(40 * 10 * 2)
    assert d(Action(1, "U", 4)) == pytest.approx(165.9 * 10 * 5)
    one = latency_durations([1], 10, 1, lat)
    seq = build_schedule("sequential", 1, 7)
    assert sequential_makespan(1, 7, one) == pytest.approx(7 * 10 * (40 + 40 + 165.9))
    t = summarise(
        seq, Tally.of(replay(seq, one), 1), 70, sequential_makespan=sequential_makespan(1, 7, one)
    )
    assert t.speedup_vs_sequential == pytest.approx(1.0)
    assert t.samples_per_sim_second == pytest.approx(70 / (t.makespan_ns * 1e-9))


def test_clock_after_m_micro_batches() -> None:
    sched = build_schedule("sequential", 1, 3)
    clock = Clock()
    for t in replay(sched, unit):
        clock.record(t)
    assert [clock.after(m) for m in range(4)] == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.parametrize(("p", "n"), [(1, 7), (4, 9), (3, 1)])
def test_sequential_makespan_extrapolation_equals_a_full_replay(p: int, n: int) -> None:
    d = latency_durations([2, 1, 1, 3][:p], 10, 1, LatencySpec())
    full = max(t.end for t in replay(build_schedule("sequential", p, n), d))
    assert sequential_makespan(p, n, d) == pytest.approx(full)


def test_stage_split() -> None:
    assert split_units([1, 1, 1, 1], 4) == [range(0, 1), range(1, 2), range(2, 3), range(3, 4)]
    assert split_units([1, 1, 1], 2) == [range(0, 2), range(2, 3)]  # earlier stage takes more
    assert split_units([1, 3, 1, 1, 1], 2) == [range(0, 2), range(2, 5)]  # max cost 4, not 5
    with pytest.raises(StageError, match="5 stages but the model has 4 layers"):
        split_units([1, 1, 1, 1], 5)


def full_replay(schedule: Schedule, duration: Callable[[Action], float]) -> list[Timed]:
    """The replay as first written, keeping the end of every finished action: the
    reference the streaming replay must equal exactly."""
    p = schedule.stages
    position, free = [0] * p, [0.0] * p
    finished: dict[Action, float] = {}
    out = []
    while len(out) < sum(len(actions) for actions in schedule.per_stage):
        best = None
        for s in range(p):
            if position[s] == len(schedule.per_stage[s]):
                continue
            action = schedule.per_stage[s][position[s]]
            deps = dependencies(action, p)
            if all(d in finished for d in deps):
                start = max([free[s], *(finished[d] for d in deps)])
                if best is None or start < best[0]:
                    best = (start, s, action)
        assert best is not None
        start, s, action = best
        finished[action] = free[s] = start + duration(action)
        position[s] += 1
        out.append(Timed(action, start, free[s]))
    return out


def test_awaited_is_the_inverse_of_dependencies() -> None:
    sched = build_schedule("1f1b", 3, 6, 3)
    actions = [a for stage in sched.per_stage for a in stage]
    needed = {d for a in actions for d in dependencies(a, 3)}
    assert {a for a in actions if awaited(a, 3)} == needed


CASES = [("sequential", 3, 1), ("gpipe", 4, 5), ("1f1b", 4, 5), ("async", 4, 1), ("1f1b", 3, 2)]


@pytest.mark.parametrize(("name", "p", "b"), CASES)
def test_the_streaming_timeline_equals_a_full_replay(name: str, p: int, b: int) -> None:
    """Same actions, times and summary as the full replay, in latency and in unit time;
    the unit-time figures come from the same pass (no second replay). A run that
    stopped early reports the actions it reached (those it iterated over), in both."""
    sched = build_schedule(name, p, 6 * b, b)
    d = latency_durations([2, 1, 3, 1][:p], 10, sched.group, LatencySpec())
    reference = full_replay(sched, d)
    assert replay(sched, d) == reference
    seq = sequential_makespan(p, sched.microbatches, d)
    for stop in (len(reference), len(reference) // 3):
        timeline = Timeline(sched, d, keep=7)
        for i, t in enumerate(timeline):
            if i == stop:
                break
            timeline.record(t)
        assert timeline.first == reference[:7]
        reached = reference[: stop + 1]  # the action at `stop` was iterated, not recorded
        lag = Lag(p, sched.group)
        for t in reached:
            lag.add(t.action)
        done = reference[:stop]
        expected = summarise(
            sched, Tally.of(done, p), 40, sequential_makespan=seq, lag=lag
        ).as_dict()
        actions = {t.action for t in reached}
        unit_reached = [t for t in full_replay(sched, unit) if t.action in actions]
        unit_reference = summarise(
            sched,
            Tally.of(unit_reached, p),
            0,
            sequential_makespan=sequential_makespan(p, sched.microbatches, unit),
            lag=lag,
        )
        got = timeline.summary(40, sequential_ns=seq)
        assert got.pop("unit_time") == {
            "makespan": unit_reference.makespan_ns,
            "bubble_fraction": unit_reference.bubble_fraction,
            "utilisation": unit_reference.utilisation,
            "speedup_vs_sequential": unit_reference.speedup_vs_sequential,
        }
        assert got == expected
        if stop == len(reference):  # the whole schedule: its staleness, however computed
            assert got["staleness"] == staleness(sched)


def test_the_clock_equals_one_that_keeps_every_micro_batch() -> None:
    """Settled at stage 0's updates, the clock answers as one that kept every end."""
    sched = build_schedule("async", 4, 40)
    d = latency_durations([1, 2, 1, 1], 10, 1, LatencySpec())
    timeline, ends = Timeline(sched, d, keep=0), {}
    got, want = [], []
    for t in timeline:
        timeline.record(t)
        ends[t.action.microbatch] = max(ends.get(t.action.microbatch, 0.0), t.end)
        if t.action.kind == "U" and t.action.stage == 0 and t.action.microbatch % 7 == 6:
            m = t.action.microbatch + 1
            got.append(timeline.clock.after(m))
            want.append(max(ends[j] for j in range(m)))
    assert got == want


def replay_peak(n: int) -> int:
    """Peak bytes allocated while a run's schedule is built and its timeline streams n
    micro-batches."""
    tracemalloc.start()
    try:
        sched = build_schedule("async", 2, n)
        d = latency_durations([1, 1], 10, 1, LatencySpec())
        timeline = Timeline(sched, d, keep=GANTT_ACTIONS)
        for t in timeline:
            timeline.record(t)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_replay_memory_stays_flat() -> None:
    """40,000 micro-batches need no more memory than 4,000: the schedule computes its
    actions when asked, the replay keeps the micro-batches in flight (O(P)) and the
    first GANTT_ACTIONS actions, nothing per micro-batch (each used to take about 1 KB
    in the schedule and as much in the replay). Measured in a fresh interpreter:
    tracemalloc counts every thread's allocations, and threads that earlier tests leave
    running in this process (servers, stream listeners) would be counted too."""
    code = (
        "from tests.engine.test_timeline import replay_peak; "
        "print(replay_peak(4_000), replay_peak(40_000))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    small, large = (int(v) for v in out.stdout.split())
    assert large < 1.5 * small, (small, large)
