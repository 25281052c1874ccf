"""Does staleness compensation narrow the analog async-vs-sequential gap? A small study.

Run: python examples/staleness_compensation.py [--epochs 6] [--seeds 1 2 3]

The setting of docs/pipeline.md's measurement: digits, MLP 64-64-32 (tanh), P = 4
stages, B = 5, micro-batches of b = 10, Analog SGD on soft-bounds devices (+-1, 1200
states, expected rule), lr 0.1. Per seed it trains analog sequential, analog async
(Analog-SGD-AP, no compensation) and async with each `pipeline.compensation` mode, then
prints per configuration the mean accuracy with a 95% confidence interval (Student t over
seeds), and per compensation mode the change of the async-minus-sequential gap, paired by
seed, with its interval and a verdict: narrows / widens (the interval excludes 0) or
inconclusive.

The accuracy of a run is the mean test accuracy of its metric points in the last epoch
(about five): at lr 0.1 on an analog device the test accuracy of neighbouring points
swings by up to 0.3, so the single final point is mostly noise. The final point's mean is
printed too.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

import torch

from aimc_engine.runner import run
from aimc_spec.spec import parse_spec

# two-sided 95% Student t quantiles by degrees of freedom (seeds - 1)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def configurations(updates: int) -> dict[str, dict[str, Any]]:
    """Name -> pipeline section. lr_scale anneals over the first half of the run's updates."""
    stale = {"stages": 4, "schedule": "async", "micro_batches": 5}
    return {
        "sequential": {"stages": 4, "schedule": "sequential", "micro_batches": 5},
        "async": stale,
        "async lr_scale": {
            **stale,
            "compensation": {"mode": "lr_scale", "p": 1.0, "warmup": max(1, updates // 2)},
        },
        "async accumulate k=2": {**stale, "compensation": {"mode": "accumulate", "k": 2}},
        "async accumulate k=4": {**stale, "compensation": {"mode": "accumulate", "k": 4}},
    }


def accuracy(pipeline: dict[str, Any], seed: int, epochs: float) -> tuple[float, float]:
    """(mean test accuracy over the last epoch's metric points, final test accuracy)."""
    spec = parse_spec(
        {
            "seed": seed,
            "device": "cpu",
            "dataset": {"name": "digits"},
            "model": {"kind": "mlp", "hidden": [64, 64, 32], "activation": "tanh"},
            "analog": {
                "device": {"model": "softbounds", "w_min": -1.0, "w_max": 1.0, "states": 1200},
                "update": "expected",
            },
            "optimizer": {"algorithm": "analog_sgd", "lr": 0.1},
            "training": {"epochs": epochs, "micro_batch_size": 10, "eval_every": 29},
            "pipeline": pipeline,
        }
    )
    metrics = run(spec).metrics
    last = [m["test_accuracy"] for m in metrics if m["epoch"] > epochs - 1]
    return statistics.fmean(last), float(metrics[-1]["test_accuracy"])


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% confidence interval)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, T95[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=float, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    if not 1 <= len(args.seeds) <= 10:
        parser.error("--seeds: give 1 to 10 seeds")
    torch.set_num_threads(1)
    updates = round(args.epochs * (1437 // 10))  # digits: 1437 training samples, b = 10
    configs = configurations(updates)
    start = time.perf_counter()
    acc: dict[str, list[float]] = {name: [] for name in configs}
    final: dict[str, list[float]] = {name: [] for name in configs}
    for seed in args.seeds:
        for name, pipeline in configs.items():
            last_epoch, at_end = accuracy(pipeline, seed, args.epochs)
            acc[name].append(last_epoch)
            final[name].append(at_end)
    print(
        f"digits, MLP 64-64-32, P=4, B=5, b=10, analog softbounds (expected rule), lr 0.1, "
        f"{args.epochs:g} epochs, seeds {args.seeds}\n"
    )
    print(f"{'configuration':22} {'last epoch':>16} {'final point':>16}  last epoch per seed")
    for name, values in acc.items():
        mean, half = interval(values)
        end, end_half = interval(final[name])
        seeds = " ".join(f"{v:.3f}" for v in values)
        print(f"{name:22} {mean:8.3f} +- {half:.3f} {end:8.3f} +- {end_half:.3f}  {seeds}")
    gap = [a - s for a, s in zip(acc["async"], acc["sequential"], strict=True)]
    mean_gap, half_gap = interval(gap)
    print(f"\nasync - sequential gap: {mean_gap:+.3f} +- {half_gap:.3f}")
    print(f"{'compensation':22} {'gap':>16} {'gap change (paired)':>24}  verdict")
    for name in configs:
        if not name.startswith("async "):
            continue
        own = [a - s for a, s in zip(acc[name], acc["sequential"], strict=True)]
        change = [o - g for o, g in zip(own, gap, strict=True)]  # > 0: the gap narrows
        m, h = interval(own)
        cm, ch = interval(change)
        verdict = "inconclusive"
        if cm - ch > 0:
            verdict = "narrows"
        elif cm + ch < 0:
            verdict = "widens"
        print(f"{name:22} {m:+9.3f} +- {h:.3f} {cm:+15.3f} +- {ch:.3f}  {verdict}")
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
