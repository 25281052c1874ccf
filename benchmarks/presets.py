"""Every device preset on digits with Analog SGD and Tiki-Taka: the numbers to compare with aihwkit.

Run: python benchmarks/presets.py [--epochs 10] [--seeds 0]

The README's digits MLP (64-128-64-10, tanh), pulsed updates (stochastic pulse
trains, BL 31, update management), perfect IO, lr 0.1, micro-batches of 10,
sequential. The ReRAM presets are run a second time with write_noise_std 0 to
show what their write noise costs. Prints test accuracy and loss (mean over the
seeds) and the wall time of each run, one process, one thread.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from aimc_engine.runner import run
from aimc_spec.presets import PRESETS
from aimc_spec.spec import parse_spec

WITHOUT_WRITE_NOISE = ("reram_es", "reram_sb")


def device_variants() -> list[tuple[str, dict[str, Any]]]:
    """(label, analog.device) for each preset, and the ReRAM ones without write noise."""
    variants: list[tuple[str, dict[str, Any]]] = [(name, {"preset": name}) for name in PRESETS]
    for name in WITHOUT_WRITE_NOISE:
        # the preset's fields written out, so one of them can differ
        variants.append((f"{name} w/o write noise", {**PRESETS[name], "write_noise_std": 0.0}))
    return variants


def job(device: dict[str, Any], algorithm: str, epochs: float, seed: int) -> dict[str, Any]:
    return {
        "name": "preset-benchmark",
        "seed": seed,
        "dataset": {"name": "digits"},
        "model": {"kind": "mlp", "hidden": [128, 64], "activation": "tanh"},
        "analog": {"device": device, "update": "pulsed", "bit_length": 31},
        "optimizer": {"algorithm": algorithm, "lr": 0.1},
        "training": {"epochs": epochs, "micro_batch_size": 10, "eval_every": 10_000},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"digits, mlp 64-128-64-10, pulsed BL 31, perfect IO, lr 0.1, b=10, "
        f"{args.epochs:g} epochs, seeds {args.seeds}\n"
    )
    print(f"{'device':28} {'algorithm':11} {'test acc':>8} {'test loss':>9} {'wall s':>7}")
    for label, device in device_variants():
        for algorithm in ("analog_sgd", "tiki_taka"):
            accs, losses, start = [], [], time.perf_counter()
            for seed in args.seeds:
                out = run(parse_spec(job(device, algorithm, args.epochs, seed)))
                accs.append(out.result["final"]["test_accuracy"])
                losses.append(out.result["final"]["test_loss"])
            wall = (time.perf_counter() - start) / len(args.seeds)
            acc, loss = sum(accs) / len(accs), sum(losses) / len(losses)
            print(f"{label:28} {algorithm:11} {acc:8.3f} {loss:9.3f} {wall:7.1f}", flush=True)


if __name__ == "__main__":
    main()
