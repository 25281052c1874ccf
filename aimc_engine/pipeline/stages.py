"""Cutting a model's ordered units into P pipeline stages.

Rule: contiguous stages that minimise the forward latency of the slowest stage
(the pipeline's clock is set by it). A unit's latency is the forward latency of
its weight layers, which the latency model charges equally per layer, so this
balances the number of weight layers. Among equally balanced cuts the earliest
stages take the extra units.
"""

from __future__ import annotations

from functools import cache


class StageError(ValueError):
    """A model that cannot be cut into the requested stages."""


def split_units(costs: list[float], stages: int) -> list[range]:
    """Contiguous ranges of unit indices, one per stage, minimising the largest stage cost."""
    n = len(costs)
    if not 1 <= stages <= n:
        raise StageError(
            f"pipeline.stages: {stages} stages but the model has {n} layers to cut; allowed: 1..{n}"
        )
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)

    @cache
    def best(start: int, k: int) -> tuple[float, tuple[int, ...]]:
        """(largest stage cost, cut positions) for units[start:] in k stages."""
        if k == 1:
            return prefix[n] - prefix[start], ()
        options = []
        # the first stage takes units[start:cut]; leave at least one unit per later stage
        for cut in range(start + 1, n - k + 2):
            rest, cuts = best(cut, k - 1)
            options.append((max(prefix[cut] - prefix[start], rest), -cut, (cut, *cuts)))
        worst, _, cuts = min(options)
        return worst, cuts

    _, cuts = best(0, stages)
    bounds = [0, *cuts, n]
    return [range(bounds[i], bounds[i + 1]) for i in range(stages)]
