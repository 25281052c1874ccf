"""Every aihwkit 1.2 training configuration (`analog.config`) on the README's digits MLP.

Run: python benchmarks/configs_digits.py [--only TTv2EcRamPreset,pcm] [--seeds 1,2]
     [--epochs 10] [--jobs 2]

The network is the README's: digits, MLP 64-128-64-10 tanh, lr 0.1, micro-batch 10,
10 epochs; the configuration sets the device or unit cell, the algorithm, the IO and
the pulsed update, as aihwkit's preset class does (docs/aihwkit.md). Prints a markdown
table: each configuration's final test accuracy and loss per seed and their mean, and
the training time of one run (one torch thread per run; `--jobs` runs that many at
once, each in its own process), so that the same setting can be run in aihwkit 1.2.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from aimc_spec.configs import CONFIGS, find_config


def spec_of(name: str, seed: int, epochs: float) -> dict[str, Any]:
    """The README's digits job under configuration `name`."""
    return {
        "name": f"digits-{name}",
        "seed": seed,
        "dataset": {"name": "digits"},
        "model": {"kind": "mlp", "hidden": [128, 64], "activation": "tanh"},
        "analog": {"config": name},
        "optimizer": {"lr": 0.1},
        "training": {"epochs": epochs, "micro_batch_size": 10, "eval_every": 1000},
    }


def train(job: tuple[str, int, float]) -> tuple[str, int, float, float, float, str]:
    """One run in a worker process: (name, seed, accuracy, loss, seconds, status)."""
    os.environ.setdefault("AIMC_THREADS", "1")
    import torch

    from aimc_engine.runner import run
    from aimc_spec.spec import parse_spec

    torch.set_num_threads(1)
    name, seed, epochs = job
    out = run(parse_spec(spec_of(name, seed, epochs)))
    final = out.result["final"]
    return (
        name,
        seed,
        final["test_accuracy"],
        final["test_loss"],
        out.result["wall_seconds"],
        out.result["status"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated names or aliases (all 52)")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one process each")
    args = parser.parse_args()
    names = list(CONFIGS)
    if args.only:
        found = [find_config(n) for n in args.only.split(",") if n]
        missing = [n for n, c in zip(args.only.split(","), found, strict=True) if c is None]
        if missing:
            parser.error(f"no configuration {', '.join(missing)}; `aimc configs` lists them")
        names = [c.name for c in found if c is not None]
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(name, seed, args.epochs) for name in names for seed in seeds]
    rows: dict[str, dict[int, tuple[float, float, float, str]]] = {n: {} for n in names}
    heads = [f"acc s{s}" for s in seeds] + [f"loss s{s}" for s in seeds]
    print(f"| configuration | {' | '.join(heads)} | acc mean | loss mean | s per run |")
    print("|---" * (len(heads) + 4) + "|")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for name, seed, acc, loss, wall, status in pool.map(train, jobs):
            rows[name][seed] = (acc, loss, wall, status)
            if len(rows[name]) < len(seeds):
                continue
            got = [rows[name][s] for s in seeds]
            accs, losses = [g[0] for g in got], [g[1] for g in got]
            flag = "" if all(g[3] == "succeeded" for g in got) else " (" + got[0][3] + ")"
            cells = [f"{a:.3f}" for a in accs] + [f"{v:.3f}" for v in losses]
            print(
                f"| {name}{flag} | {' | '.join(cells)} | {sum(accs) / len(accs):.3f} | "
                f"{sum(losses) / len(losses):.3f} | {sum(g[2] for g in got) / len(got):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
