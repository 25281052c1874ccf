"""Schedules compared on digits: accuracy per sample and simulated time to a target loss.

Run: python benchmarks/schedules.py [--epochs 10] [--target 0.3]

The paper's setting: a 4-layer MLP (64-128-64-32-10, tanh) cut into 4 stages,
mini-batches of B = 5 micro-batches of 10 samples, digital SGD and Analog SGD on
soft-bounds devices (+-1, 1200 states, expected rule), lr 0.1. gpipe averages B
micro-batch gradients per update, so it is also run at lr x B (the same step per
sample). Prints final test accuracy and loss, the simulated time (latency model
of pipeline.md) and the samples needed to first reach the target test loss, and
the simulated-time speedup against sequential training.
"""

from __future__ import annotations

import argparse
import time

import torch

from aimc_engine.runner import run
from aimc_spec.spec import parse_spec

ALGORITHMS = {
    "digital": {"analog": {"enabled": False}, "algorithm": "sgd"},
    "analog_sgd": {
        "analog": {"device": {"model": "softbounds", "states": 1200}, "update": "expected"},
        "algorithm": "analog_sgd",
    },
}
SCHEDULES = [
    ("sequential", 1, 1.0),
    ("gpipe", 4, 1.0),
    ("gpipe", 4, 5.0),
    ("async", 4, 1.0),
    ("async_stash", 4, 1.0),
]


def first_reaching(metrics: list[dict], target: float, key: str) -> float | None:
    for m in metrics:
        if m["test_loss"] <= target:
            return m[key]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--target", type=float, default=0.3, help="target test loss")
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"digits, mlp 64-128-64-32-10, b=10, B=5, lr {args.lr}, {args.epochs:g} epochs, "
        f"target test loss {args.target}\n"
    )
    header = (
        f"{'algorithm':11} {'schedule':16} {'acc':>6} {'loss':>6} {'sim ms':>8} "
        f"{'speedup':>7} {'ms to target':>12} {'samples to target':>17} {'wall s':>6}"
    )
    print(header)
    for alg, cfg in ALGORITHMS.items():
        seq_time = None
        for schedule, stages, lr_scale in SCHEDULES:
            spec = parse_spec(
                {
                    "name": f"{alg}-{schedule}",
                    "dataset": {"name": "digits"},
                    "model": {"kind": "mlp", "hidden": [128, 64, 32], "activation": "tanh"},
                    "analog": cfg["analog"],
                    "optimizer": {"algorithm": cfg["algorithm"], "lr": args.lr * lr_scale},
                    "training": {"epochs": args.epochs, "micro_batch_size": 10, "eval_every": 10},
                    "pipeline": {"stages": stages, "schedule": schedule, "micro_batches": 5},
                }
            )
            start = time.perf_counter()
            out = run(spec)
            wall = time.perf_counter() - start
            final = out.result["final"]
            sim = out.result["timeline"]["makespan_ns"]
            seq_time = sim if schedule == "sequential" else seq_time
            t_target = first_reaching(out.metrics, args.target, "sim_time_ns")
            s_target = first_reaching(out.metrics, args.target, "samples")
            label = schedule + (f" lr x{lr_scale:g}" if lr_scale != 1 else "")
            print(
                f"{alg:11} {label:16} {final['test_accuracy']:6.3f} {final['test_loss']:6.3f} "
                f"{sim / 1e6:8.2f} {seq_time / sim:7.2f} "
                f"{'-' if t_target is None else f'{t_target / 1e6:.2f}':>12} "
                f"{'-' if s_target is None else s_target:>17} {wall:6.1f}"
            )


if __name__ == "__main__":
    main()
