"""Every example spec trained as `aimc run` trains it: final accuracy, loss and time.

Run: python benchmarks/examples.py [--only digits_digital,digits_tiki_taka] [--threads 1]

Each `examples/*.yaml` job spec runs through the engine in this process (one torch
thread unless --threads says otherwise), seed and epochs as the file sets them. Prints
the final test accuracy and loss from `result.json`'s figures and the training loop's
wall time (without imports: `aimc run` adds a few seconds of start-up).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aimc_engine.runner import run
from aimc_spec.spec import parse_spec, read_spec_file

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated example names (all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = {w for w in args.only.split(",") if w}
    print(f"{'example':34s} {'accuracy':>8s} {'loss':>7s} {'wall s':>7s}  status")
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        if wanted and path.stem not in wanted:
            continue
        out = run(parse_spec(read_spec_file(path)))
        final, result = out.result["final"], out.result
        print(
            f"{path.stem:34s} {final['test_accuracy']:8.3f} {final['test_loss']:7.3f} "
            f"{result['wall_seconds']:7.1f}  {result['status']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
