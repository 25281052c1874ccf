"""Pipeline schedules as data: per-stage ordered lists of forward, backward, update actions.

Index vocabulary (used everywhere in aimc_engine.pipeline): s stage (0 = input
side), P stages, j micro-batch, B micro-batches per mini-batch, d_s = P-1-s the
staleness of stage s under the asynchronous schedules.

Per-stage orders for P = 2, B = 2 (4 micro-batches), `F`orward, `B`ackward, `U`pdate::

    gpipe   s0: 0F0 0F1 0B1 0B0 0U1 | 0F2 0F3 0B3 0B2 0U3
            s1: 1F0 1F1 1B1 1B0 1U1 | 1F2 1F3 1B3 1B2 1U3
    1f1b    s0: 0F0 0F1 0B0 0B1 0U1 | ...      (warm-up P-1-s forwards, then F/B pairs)
            s1: 1F0 1B0 1F1 1B1 1U1 | ...
    async   s0: 0F0 0F1 0B0 0U0 0F2 0B1 0U1 0F3 0B2 0U2 0B3 0U3
            s1: 1F0 1B0 1U0 1F1 1B1 1U1 1F2 ...

In `async` stage s keeps P - s micro-batches in flight and updates after every
backward, so the forward of micro-batch j sees the weights after j - d_s updates
(the weight-version table of pipeline.md follows from the order alone; the
numerics need no other bookkeeping). `async_stash` has the same order; its
backward uses the forward's weights. The module is torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

from aimc_spec.vocabulary import SCHEDULES, SYNCHRONOUS

FORWARD, BACKWARD, UPDATE = "F", "B", "U"
_ACTION = re.compile(r"^(\d+)([FBU])(\d+)$")


@dataclass(frozen=True, slots=True)
class Action:
    """One step of one stage: `2F0` is stage 2's forward of micro-batch 0.

    An update `U` names the last micro-batch whose gradient it applies.
    """

    stage: int
    kind: str
    microbatch: int

    def __str__(self) -> str:
        return f"{self.stage}{self.kind}{self.microbatch}"

    @classmethod
    def parse(cls, text: str) -> Action:
        match = _ACTION.match(text.strip())
        if match is None:
            raise ValueError(f"not an action: {text!r} (expected e.g. 2F0, 1B3, 0U4)")
        return cls(int(match[1]), match[2], int(match[3]))


@dataclass(frozen=True)
class StageOrder(Sequence[Action]):
    """One stage's actions in order, computed when asked: a `prologue`, then `pattern`
    (kinds and micro-batch offsets) `repeats` times, each `shift` micro-batches on, then
    an `epilogue`. Every schedule's stage order has this form, so a schedule of any
    length holds O(P + B) actions, not about 1 KB per micro-batch."""

    stage: int
    prologue: tuple[Action, ...]
    pattern: tuple[tuple[str, int], ...]
    shift: int
    repeats: int
    epilogue: tuple[Action, ...] = ()

    def __len__(self) -> int:
        return len(self.prologue) + len(self.pattern) * self.repeats + len(self.epilogue)

    @overload
    def __getitem__(self, i: int) -> Action: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[Action, ...]: ...

    def __getitem__(self, i: int | slice) -> Action | tuple[Action, ...]:
        if isinstance(i, slice):
            return tuple(self[k] for k in range(len(self))[i])
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"stage {self.stage} has {n} actions, no action {i}")
        i %= n
        if i < len(self.prologue):
            return self.prologue[i]
        i -= len(self.prologue)
        body = len(self.pattern) * self.repeats
        if i >= body:
            return self.epilogue[i - body]
        repeat, k = divmod(i, len(self.pattern))
        kind, offset = self.pattern[k]
        return Action(self.stage, kind, repeat * self.shift + offset)

    def __iter__(self) -> Iterator[Action]:
        yield from self.prologue
        for repeat in range(self.repeats):
            first = repeat * self.shift
            for kind, offset in self.pattern:
                yield Action(self.stage, kind, first + offset)
        yield from self.epilogue


@dataclass(frozen=True)
class Schedule:
    """Which action each stage runs, in order. `group` micro-batches feed one update."""

    name: str
    stages: int
    microbatches: int
    group: int
    per_stage: tuple[StageOrder, ...]

    @property
    def stash(self) -> bool:
        return self.name == "async_stash"

    @property
    def drains(self) -> bool:
        """Whether no micro-batch is in flight after each of stage 0's updates (the points
        a checkpoint can be taken at); the async schedules keep P - s in flight."""
        return self.name == "sequential" or self.name in SYNCHRONOUS


def _sequential_stage(s: int, n: int) -> StageOrder:
    return StageOrder(s, (), ((FORWARD, 0), (BACKWARD, 0), (UPDATE, 0)), 1, n)


def _gpipe_stage(s: int, n: int, b: int) -> StageOrder:
    """Per mini-batch: B forwards, their backwards last first, one update."""
    pattern = [(FORWARD, i) for i in range(b)]
    pattern += [(BACKWARD, i) for i in reversed(range(b))]
    pattern.append((UPDATE, b - 1))
    return StageOrder(s, (), tuple(pattern), b, n // b)


def _1f1b_stage(s: int, n: int, b: int, p: int) -> StageOrder:
    """Per mini-batch: P-1-s warm-up forwards, then forward/backward pairs, the last
    backwards, one update."""
    warmup = min(p - 1 - s, b)
    pattern = [(FORWARD, i) for i in range(warmup)]
    for i in range(b - warmup):
        pattern += [(FORWARD, warmup + i), (BACKWARD, i)]
    pattern += [(BACKWARD, i) for i in range(b - warmup, b)]
    pattern.append((UPDATE, b - 1))
    return StageOrder(s, (), tuple(pattern), b, n // b)


def _async_stage(s: int, n: int, p: int) -> StageOrder:
    """d_s + 1 forwards, then backward, update, the next forward per micro-batch; the
    last d_s + 1 micro-batches have no forward left to start."""
    in_flight = p - s  # d_s + 1 micro-batches between a forward and its backward
    steady = max(0, n - in_flight)  # micro-batches whose backward starts another forward
    return StageOrder(
        s,
        tuple(Action(s, FORWARD, j) for j in range(min(in_flight, n))),
        ((BACKWARD, 0), (UPDATE, 0), (FORWARD, in_flight)),
        1,
        steady,
        tuple(a for j in range(steady, n) for a in (Action(s, BACKWARD, j), Action(s, UPDATE, j))),
    )


def build_schedule(name: str, stages: int, microbatches: int, group: int = 1) -> Schedule:
    """The schedule `name` for `stages` stages over `microbatches` micro-batches.

    `group` is B for the synchronous schedules (gpipe, 1f1b), which need a
    whole number of mini-batches; the others update after every micro-batch.
    """
    if name not in SCHEDULES:
        raise ValueError(f"pipeline.schedule: {name!r} is not one of {', '.join(SCHEDULES)}")
    if stages < 1 or microbatches < 1 or group < 1:
        raise ValueError("pipeline: stages, micro-batches and B must be at least 1")
    synchronous = name in SYNCHRONOUS
    if synchronous and microbatches % group:
        raise ValueError(
            f"pipeline.micro_batches: {microbatches} micro-batches are not a whole number "
            f"of mini-batches of B = {group}"
        )
    per_stage = []
    for s in range(stages):
        if name == "sequential":
            actions = _sequential_stage(s, microbatches)
        elif name == "gpipe":
            actions = _gpipe_stage(s, microbatches, group)
        elif name == "1f1b":
            actions = _1f1b_stage(s, microbatches, group, stages)
        else:
            actions = _async_stage(s, microbatches, stages)
        per_stage.append(actions)
    return Schedule(name, stages, microbatches, group if synchronous else 1, tuple(per_stage))


def dependencies(action: Action, stages: int) -> tuple[Action, ...]:
    """Actions of other stages that must finish before `action` may start.

    A forward needs the previous stage's forward of the same micro-batch; a
    backward needs the next stage's backward (the last stage: its own forward,
    which its stage order already puts first). Updates depend only on their
    own stage's order.
    """
    s, j = action.stage, action.microbatch
    if action.kind == FORWARD and s > 0:
        return (Action(s - 1, FORWARD, j),)
    if action.kind == BACKWARD and s < stages - 1:
        return (Action(s + 1, BACKWARD, j),)
    return ()


def awaited(action: Action, stages: int) -> bool:
    """Whether an action of another stage depends on `action` (the inverse of
    `dependencies`): forwards before the last stage, backwards after the first."""
    if action.kind == FORWARD:
        return action.stage < stages - 1
    if action.kind == BACKWARD:
        return action.stage > 0
    return False


def format_grid(schedule: Schedule, first: int = 24) -> str:
    """The first `first` actions of each stage as a text grid, one row per stage."""
    width = max(len(str(a)) for actions in schedule.per_stage for a in actions[:first])
    lines = [
        f"{schedule.name}: P={schedule.stages}, {schedule.microbatches} micro-batches, "
        f"{schedule.group} per update"
    ]
    for s, actions in enumerate(schedule.per_stage):
        cells = " ".join(f"{a!s:>{width}}" for a in actions[:first])
        more = f" ... (+{len(actions) - first})" if len(actions) > first else ""
        lines.append(f"stage {s}: {cells}{more}")
    return "\n".join(lines)
