"""Pipeline stages' compute, and the single-process executor that runs a schedule's
actions one at a time, in order.

Each stage is a contiguous run of the model's units with its own autograd
graph per micro-batch: the stage input is a detached leaf, so the backward of
(s, j) can run whenever the schedule says and hands `leaf.grad` to stage s-1.
Weight versions need no bookkeeping: stage s's weights are touched only by its
own actions, so the schedule's per-stage order fixes which version each forward
and backward sees. Analog layers read their weights when the backward runs (no
copy, as on hardware); under `async_stash` they read the copy taken at forward.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from aimc_engine.algorithms import Algorithm
from aimc_engine.models import LayeredNet, tile_layers
from aimc_engine.pipeline.compensation import Compensation
from aimc_engine.pipeline.schedule import BACKWARD, FORWARD, Action, Schedule
from aimc_engine.pipeline.stages import split_units
from aimc_spec.spec import JobSpec

Batch = tuple[Tensor, Tensor]


def cut_stages(model: LayeredNet, stages: int, forward_ns: float) -> list[nn.Sequential]:
    """A built model's units in `stages` contiguous stages (stage_ranges' cut); each stage
    names its units by their index in the model, as `build_stage` does."""
    ranges = split_units([len(tile_layers(unit)) * forward_ns for unit in model.units], stages)
    return [nn.Sequential(OrderedDict((str(i), model.units[i]) for i in r)) for r in ranges]


def stage_ranges(spec: JobSpec) -> list[range]:
    """The units of each stage (stages.py: the slowest stage's forward latency,
    `latency_ns.forward` per weight layer, as small as it can be)."""
    p = spec.pipeline
    costs = [n * p.latency_ns.forward for n in spec.model.layers_per_unit]
    return split_units(costs, p.stages)


class Stage:
    """One stage's compute: its layers, the algorithm that updates them, and the autograd
    graphs of its micro-batches in flight. What comes in and goes out (activations,
    gradients, targets) is the caller's: the executor below hands it between stages in
    one process, a stage process (stage_process.py) sends it to its neighbours."""

    def __init__(
        self, index: int, module: nn.Module, algorithm: Algorithm, schedule: Schedule
    ) -> None:
        self.index, self.module, self.algorithm, self.schedule = index, module, algorithm, schedule
        self.last = index == schedule.stages - 1
        for layer in tile_layers(module):
            layer.stash_weights = schedule.stash
        self._graphs: dict[int, tuple[Tensor, Tensor]] = {}  # j -> (input, output)
        # staleness compensation (compensation.py), set by the run; None: the paper's numerics
        self.compensation: Compensation | None = None

    def forward(self, j: int, x: Tensor, target: Tensor | None = None) -> Tensor:
        """Forward of micro-batch j from its input x (stage 0: the micro-batch; later: the
        previous stage's output, as a fresh leaf). Returns the output to pass on, or for
        the last stage the loss (a 0-d tensor) against `target`."""
        if self.index > 0:
            x = x.detach().requires_grad_()
        out = self.module(x)
        if self.last:
            if target is None:
                raise ValueError("the last stage's forward needs the micro-batch's targets")
            out = F.cross_entropy(out, target)
        self._graphs[j] = (x, out)
        return out

    def backward(self, j: int, grad: Tensor | None = None) -> Tensor | None:
        """Backward of micro-batch j: weight rows recorded; returns the gradient for the
        stage before (None at stage 0). `grad` is the output's gradient (not for the last
        stage, whose output is the loss)."""
        x, out = self._graphs.pop(j)
        if self.last:
            out.backward()
        else:
            out.backward(grad)
        return x.grad if self.index > 0 else None

    def update(self, j: int, lr: float) -> bool:
        """The update after micro-batch j at rate lr (compensated where the run asks): the
        gradients of its last `group` micro-batches, their mean. False if compensation
        keeps them, digitally, for a later update."""
        rate: float | None = lr
        if self.compensation is not None:
            rate = self.compensation.rate(self.index, j, lr)
        if rate is None:
            return False
        self.algorithm.step(rate, scale=1.0 / self.schedule.group)
        return True

    def in_flight(self) -> list[Tensor]:
        return [t for pair in self._graphs.values() for t in pair]


class PipelineExecutor:
    """Executes actions of `schedule` on `stages` in one process, stage s updated by
    `algorithms[s]`, handing activations and gradients from stage to stage."""

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
        self.compute = [
            Stage(s, module, algorithm, schedule)
            for s, (module, algorithm) in enumerate(zip(stages, algorithms, strict=True))
        ]
        self._last = schedule.stages - 1
        self._handoff: dict[tuple[int, int], Tensor] = {}  # activation or gradient in transit
        self._targets: dict[int, Tensor] = {}
        self.losses: dict[int, float] = {}  # micro-batch -> loss, until taken

    @property
    def compensation(self) -> Compensation | None:
        return self.compute[0].compensation

    @compensation.setter
    def compensation(self, value: Compensation | None) -> None:
        for stage in self.compute:
            stage.compensation = value

    def forward(self, s: int, j: int, batch: Batch | None = None) -> None:
        """Stage s's forward of micro-batch j (stage 0 is given the batch)."""
        if s == 0:
            if batch is None:
                raise ValueError("stage 0's forward needs the micro-batch")
            x, self._targets[j] = batch
        else:
            x = self._handoff.pop((s - 1, j))
        target = self._targets.pop(j) if s == self._last else None
        out = self.compute[s].forward(j, x, target)
        if s == self._last:
            self.losses[j] = out.item()
        else:
            self._handoff[(s, j)] = out

    def backward(self, s: int, j: int) -> None:
        """Stage s's backward of micro-batch j: weight rows recorded, input gradient passed on."""
        grad = None if s == self._last else self._handoff.pop((s, j))
        grad_in = self.compute[s].backward(j, grad)
        if s > 0:
            assert grad_in is not None
            self._handoff[(s - 1, j)] = grad_in

    def execute(
        self, action: Action, lr: Callable[[int], float], fetch: Callable[[int], Batch]
    ) -> None:
        """Run one action; `fetch(j)` gives micro-batch j, `lr(j)` the rate for its update."""
        s, j = action.stage, action.microbatch
        if action.kind == FORWARD:
            self.forward(s, j, fetch(j) if s == 0 else None)
        elif action.kind == BACKWARD:
            self.backward(s, j)
        else:
            self.compute[s].update(j, lr(j))

    def in_flight(self) -> list[Tensor]:
        """Tensors held between actions (for tests: empty once a schedule has run)."""
        graphs = [t for stage in self.compute for t in stage.in_flight()]
        return graphs + list(self._handoff.values())
