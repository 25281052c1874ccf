"""Schedules as data: literal action lists for small P and B, text form, errors."""

from __future__ import annotations

import pytest

from aimc_engine.pipeline.schedule import Action, build_schedule, format_grid


def texts(name: str, p: int, n: int, b: int = 1) -> list[str]:
    return [" ".join(map(str, actions)) for actions in build_schedule(name, p, n, b).per_stage]


def test_action_text_form_round_trips() -> None:
    a = Action(2, "F", 0)
    assert str(a) == "2F0" and Action.parse("2F0") == a
    assert Action.parse("11U305") == Action(11, "U", 305)
    with pytest.raises(ValueError, match="not an action"):
        Action.parse("2X0")


def test_sequential() -> None:
    assert texts("sequential", 2, 2) == ["0F0 0B0 0U0 0F1 0B1 0U1", "1F0 1B0 1U0 1F1 1B1 1U1"]


def test_gpipe() -> None:
    assert texts("gpipe", 2, 4, 2) == [
        "0F0 0F1 0B1 0B0 0U1 0F2 0F3 0B3 0B2 0U3",
        "1F0 1F1 1B1 1B0 1U1 1F2 1F3 1B3 1B2 1U3",
    ]


def test_1f1b() -> None:
    assert texts("1f1b", 3, 3, 3) == [
        "0F0 0F1 0F2 0B0 0B1 0B2 0U2",
        "1F0 1F1 1B0 1F2 1B1 1B2 1U2",
        "2F0 2B0 2F1 2B1 2F2 2B2 2U2",
    ]


@pytest.mark.parametrize("name", ["async", "async_stash"])
def test_async(name: str) -> None:
    assert texts(name, 2, 4) == [
        "0F0 0F1 0B0 0U0 0F2 0B1 0U1 0F3 0B2 0U2 0B3 0U3",
        "1F0 1B0 1U0 1F1 1B1 1U1 1F2 1B2 1U2 1F3 1B3 1U3",
    ]


@pytest.mark.parametrize("name", ["sequential", "gpipe", "1f1b", "async", "async_stash"])
def test_every_micro_batch_once_per_stage(name: str) -> None:
    sched = build_schedule(name, 4, 20, 5)
    for actions in sched.per_stage:
        for kind in "FB":
            assert sorted(a.microbatch for a in actions if a.kind == kind) == list(range(20))
        updates = [a.microbatch for a in actions if a.kind == "U"]
        assert len(updates) == 20 // sched.group


def test_errors() -> None:
    with pytest.raises(ValueError, match="not one of"):
        build_schedule("zigzag", 2, 4)
    with pytest.raises(ValueError, match="not a whole number of mini-batches of B = 5"):
        build_schedule("gpipe", 2, 7, 5)


def test_grid() -> None:
    grid = format_grid(build_schedule("async", 2, 4), first=4)
    assert grid.splitlines() == [
        "async: P=2, 4 micro-batches, 1 per update",
        "stage 0: 0F0 0F1 0B0 0U0 ... (+8)",
        "stage 1: 1F0 1B0 1U0 1F1 ... (+8)",
    ]


def explicit(name: str, s: int, n: int, b: int, p: int) -> list[Action]:
    """A stage's order written out action by action, as the schedules were first built."""
    out = []
    if name == "sequential":
        for j in range(n):
            out += [Action(s, "F", j), Action(s, "B", j), Action(s, "U", j)]
    elif name == "gpipe":
        for first in range(0, n, b):
            js = range(first, first + b)
            out += [Action(s, "F", j) for j in js] + [Action(s, "B", j) for j in reversed(js)]
            out.append(Action(s, "U", first + b - 1))
    elif name == "1f1b":
        for first in range(0, n, b):
            warmup = min(p - 1 - s, b)
            out += [Action(s, "F", first + i) for i in range(warmup)]
            for i in range(b - warmup):
                out += [Action(s, "F", first + warmup + i), Action(s, "B", first + i)]
            out += [Action(s, "B", first + i) for i in range(b - warmup, b)]
            out.append(Action(s, "U", first + b - 1))
    else:
        in_flight = p - s
        out = [Action(s, "F", j) for j in range(min(in_flight, n))]
        for j in range(n):
            out += [Action(s, "B", j), Action(s, "U", j)]
            if j + in_flight < n:
                out.append(Action(s, "F", j + in_flight))
    return out


@pytest.mark.parametrize("name", ["sequential", "gpipe", "1f1b", "async", "async_stash"])
@pytest.mark.parametrize(("p", "b", "n"), [(1, 1, 3), (4, 5, 20), (3, 2, 2), (5, 3, 9), (4, 1, 2)])
def test_stage_orders_are_computed_as_written_out(name: str, p: int, b: int, n: int) -> None:
    """The stage orders, held as prologue + repeated pattern + epilogue, give the same
    actions by iteration, by index (negative too) and by slice as written out."""
    if name in ("gpipe", "1f1b") and n % b:
        n = n // b * b or b
    sched = build_schedule(name, p, n, b)
    for s, order in enumerate(sched.per_stage):
        want = explicit(name, s, n, sched.group if name in ("gpipe", "1f1b") else 1, p)
        assert list(order) == want
        assert len(order) == len(want)
        assert [order[i] for i in range(-len(want), len(want))] == want + want
        assert order[2:7] == tuple(want[2:7]) and order[::-3] == tuple(want[::-3])
        with pytest.raises(IndexError):
            order[len(want)]
