"""Staleness compensation for the asynchronous schedules, with no weight copies on the tiles.

Under `async` the forward of micro-batch j at stage s uses weights d_s = P-1-s updates old
(timeline.staleness), and the backward reads the current ones (no stash: analog weights
cannot be copied cheaply). PipeDream's stash is not available to a chip, so a remedy may
use only the step size or small digital state. `pipeline.compensation.mode` chooses one:

lr_scale, PipeMare's learning-rate rescheduling (Yang et al., "PipeMare: Asynchronous
Pipeline Parallel DNN Training", MLSys 2021, arXiv:1910.05124, "learning rate
rescheduling"): a stage with delay tau steps at alpha * tau^(-p_k), the exponent p_k
falling linearly from 1 to 0 over the first K updates. With tau = d_s + 1 (the delay
counting the update itself: 1 at the output stage, which then is never rescaled):

    lr_s(j) = lr(j) * (d_s + 1)^(-p_j),    p_j = p * (1 - min(j / K, 1))

j is the update index (under async every stage updates once per micro-batch, so it is the
micro-batch index), lr(j) the spec's rate with its decay, p = 1 PipeMare's choice. The
stalest (input-side) stage starts at 1/(d_s + 1) of the rate, when large steps on stale
weights do the most harm, and every stage reaches lr after K updates. Costs nothing on
a chip: one scalar per stage. (This is the rule as the project's pipeline notes summarise
the paper. PipeMare's other half, discrepancy correction, extrapolates the weights the
backward should use and needs a weight-sized velocity per tile: not here.)

accumulate: each stage sums the weight gradients d^T x of k micro-batches digitally and
writes them to its tiles in one device update at rate lr (the last micro-batch of the run
always writes, so no gradient is left behind). The forward of j then lags its sequential
counterpart by at most ceil(d_s / k) device updates instead of d_s (`update_staleness`),
at the price of k times fewer, larger updates; the per-sample rate is unchanged (the sum,
not the mean, is applied at lr), so k = 1 is plain async. The digital state is what a
pulsed update of a mini-batch already keeps: the k micro-batches' rows x and d (b k (in +
out) numbers per layer), not a weight-sized array. Using accumulation to bound how many
updates a micro-batch straddles is also PACI's idea ("Breaking the Bubble: Asynchronous
Pipeline Parallel Training with Bounded Weight Inconsistency").
On an asymmetric device it has a second effect: the expected update's drift towards the
symmetric point, |dW| (.) G(W) (analog-model.md section 3), is paid on |sum of k
gradients| <= sum of their magnitudes, so noise that cancels within the k micro-batches
no longer pulls the weights.

Why accumulation and not DC-ASGD (Zheng et al., ICML 2017: g + lambda g (.) g (.) (w_now -
w_then)): on a chip w_now - w_then must be estimated from a digital running mean of every
weight's recent change, a weight-sized digital array per tile rewritten at every update,
a copy of the weights in all but name; and its Taylor argument assumes g is the gradient at
w_then, while without a stash the backward already mixes the stale forward with the current
weights. Accumulation is exact to test: with P = 1 it is SGD on the sum of k micro-batches.

The timeline is unchanged: it charges every update action b rank-one updates whether it
writes or not, so a write of k micro-batches (k b rank-one updates) is paid for in total,
spread over its k actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from aimc_engine.pipeline.schedule import Schedule
from aimc_engine.pipeline.timeline import staleness
from aimc_spec.spec import CompensationSpec


def lr_factor(d: int, j: int, *, p: float, warmup: int) -> float:
    """PipeMare's factor (d + 1)^(-p_j), p_j = p (1 - min(j / warmup, 1)), for a stage with
    staleness d at update j."""
    exponent = p * (1 - min(j / warmup, 1.0))
    return float((d + 1) ** -exponent)


def update_staleness(d: int, k: int) -> int:
    """Device updates the forward of a stage with staleness d (in micro-batches) lags
    behind when each device update writes k micro-batches: ceil(d / k)."""
    return -(-d // k)


def writes(j: int, k: int, microbatches: int) -> bool:
    """Whether the update after micro-batch j writes the tiles (accumulate): every k-th
    micro-batch and the run's last one."""
    return (j + 1) % k == 0 or j == microbatches - 1


@dataclass(frozen=True)
class Compensation:
    """The learning rate, or no device write, of each stage's update after micro-batch j."""

    spec: CompensationSpec
    staleness: tuple[int, ...]  # d_s per stage, in micro-batches
    microbatches: int

    def rate(self, s: int, j: int, lr: float) -> float | None:
        """The rate stage s's update after micro-batch j applies, or None: its gradients
        wait, digitally, for a later update."""
        c = self.spec
        if c.mode == "lr_scale":
            return lr * lr_factor(self.staleness[s], j, p=c.p, warmup=c.warmup)
        if c.mode == "accumulate" and not writes(j, c.k, self.microbatches):
            return None
        return lr


def compensation_for(spec: CompensationSpec, schedule: Schedule) -> Compensation | None:
    """The compensation a run applies; None for mode none (the executor then runs exactly
    the uncompensated numerics)."""
    if spec.mode == "none":
        return None
    return Compensation(spec, tuple(staleness(schedule)), schedule.microbatches)
