"""Single-process pipeline executor: runs a schedule's actions, one at a time, in order.

Each stage is a contiguous run of the model's units with its own autograd
graph per micro-batch: the stage input is a detached leaf, so the backward of
(s, j) can run whenever the schedule says and hands `leaf.grad` to stage s-1.
Weight versions need no bookkeeping: stage s's weights are touched only by its
own actions, so the schedule's per-stage order fixes which version each forward
and backward sees. Analog layers read their weights when the backward runs (no
copy, as on hardware); under `async_stash` they read the copy taken at forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_engine.algorithms import Algorithm
from aimc_engine.models import LayeredNet, tile_layers
from aimc_engine.pipeline.compensation import Compensation
from aimc_engine.pipeline.schedule import BACKWARD, FORWARD, Action, Schedule
from aimc_engine.pipeline.stages import split_units

Batch = tuple[Tensor, Tensor]


def cut_stages(model: LayeredNet, stages: int, forward_ns: float) -> list[nn.Sequential]:
    """The model's units in `stages` contiguous stages (stages.py: the slowest stage's
    forward latency, `forward_ns` per weight layer, as small as it can be)."""
    costs = [len(tile_layers(unit)) * forward_ns for unit in model.units]
    return [nn.Sequential(*(model.units[i] for i in r)) for r in split_units(costs, stages)]


class PipelineExecutor:
    """Executes actions of `schedule` on `stages`, stage s updated by `algorithms[s]`."""

    def __init__(
        self, stages: Sequence[nn.Module], algorithms: Sequence[Algorithm], schedule: Schedule
    ) -> None:
        if not len(stages) == len(algorithms) == schedule.stages:
            raise ValueError(
                f"pipeline: {len(stages)} stages and {len(algorithms)} algorithms for a "
                f"schedule of {schedule.stages} stages"
            )
        self.stages = list(stages)
        self.algorithms = list(algorithms)
        self.layers_per_stage = [len(tile_layers(stage)) for stage in self.stages]
        self.schedule = schedule
        for stage in self.stages:
            for layer in tile_layers(stage):
                layer.stash_weights = schedule.stash
        self._last = schedule.stages - 1
        self._graphs: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}  # (s, j) -> (in, out)
        self._handoff: dict[tuple[int, int], Tensor] = {}  # activation or gradient in transit
        self._targets: dict[int, Tensor] = {}
        self.losses: dict[int, float] = {}  # micro-batch -> loss, until taken
        # staleness compensation (compensation.py), set by Training; None: the paper's numerics
        self.compensation: Compensation | None = None

    def forward(self, s: int, j: int, batch: Batch | None = None) -> None:
        """Stage s's forward of micro-batch j (stage 0 is given the batch)."""
        if s == 0:
            if batch is None:
                raise ValueError("stage 0's forward needs the micro-batch")
            x, self._targets[j] = batch
        else:
            x = self._handoff.pop((s - 1, j)).detach().requires_grad_()
        out = self.stages[s](x)
        if s == self._last:
            out = F.cross_entropy(out, self._targets.pop(j))
            self.losses[j] = out.item()
        else:
            self._handoff[(s, j)] = out
        self._graphs[(s, j)] = (x, out)

    def backward(self, s: int, j: int) -> None:
        """Stage s's backward of micro-batch j: weight rows recorded, input gradient passed on."""
        x, out = self._graphs.pop((s, j))
        if s == self._last:
            out.backward()
        else:
            out.backward(self._handoff.pop((s, j)))
        if s > 0:
            self._handoff[(s - 1, j)] = x.grad  # type: ignore[assignment]

    def update(self, s: int, lr: float) -> None:
        """Stage s applies the gradients of its last `group` micro-batches (their mean)."""
        self.algorithms[s].step(lr, scale=1.0 / self.schedule.group)

    def execute(
        self, action: Action, lr: Callable[[int], float], fetch: Callable[[int], Batch]
    ) -> None:
        """Run one action; `fetch(j)` gives micro-batch j, `lr(j)` the rate for its update."""
        s, j = action.stage, action.microbatch
        if action.kind == FORWARD:
            self.forward(s, j, fetch(j) if s == 0 else None)
        elif action.kind == BACKWARD:
            self.backward(s, j)
        elif self.compensation is None:
            self.update(s, lr(j))
        else:  # a compensated rate, or None: the gradients wait for a later update
            rate = self.compensation.rate(s, j, lr(j))
            if rate is not None:
                self.update(s, rate)

    def in_flight(self) -> list[torch.Tensor]:
        """Tensors held between actions (for tests: empty once a schedule has run)."""
        return [t for pair in self._graphs.values() for t in pair] + list(self._handoff.values())
