"""Whether torch's CPU ops give the same bits on 2, 3 and 4 threads as on one (issue 24).

Run: python benchmarks/thread_bits.py

Why it matters: a thread policy that follows the machine's load (AIMC_THREADS=auto,
docs/settings.md) keeps "same spec + seed = same metrics" only if the ops a run uses
round alike on any thread count. This prints, for the matrix products, convolution
gradients and full sums of aimc's engine-speed and README networks, "same" where the
op's result on N threads equals its result on one bit for bit, under each of Intel
MKL's reproducibility modes (MKL_CBWR, read once per process: each mode runs in its own
child process; "default" leaves it unset, as torch does). Inputs are seeded: what
changes between columns is the thread count only. More threads than cores are fine
here: the question is how an op splits its work, not how fast it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable

THREADS = (2, 3, 4)
MODES = ("default", "AUTO", "AUTO,STRICT")


def cases() -> dict[str, Callable[[], object]]:
    """name -> the op on seeded inputs (made once, so every thread count sees them)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    def conv_weight_grad(b: int, ci: int, co: int, hw: int, k: int, s: int, p: int):
        x, w = randn(b, ci, hw, hw), randn(co, ci, k, k)
        d = randn(*F.conv2d(x, w, stride=s, padding=p).shape)
        mask = [False, True, True]
        return lambda: torch.ops.aten.convolution_backward(
            d, x, w, [co], [s, s], [p, p], [1, 1], False, [0, 0], 1, mask
        )[1:]

    def product(m: int, k: int, n: int) -> Callable[[], object]:
        a, b = randn(m, k), randn(k, n)
        return lambda: a @ b

    big = randn(256, 784)
    return {
        "matmul 10x64 @ 64x128 (digits MLP, b=10)": product(10, 64, 128),
        "matmul 10x64 @ 64x32 (paper MLP, b=10)": product(10, 64, 32),
        "matmul 10x1000 @ 1000x32 (its gradient probe)": product(10, 1000, 32),
        "matmul 64x784 @ 784x256 (MNIST MLP, b=64)": product(64, 784, 256),
        "conv dW 1->8 ch 5x5, 28x28, b=10 (MNIST CNN)": conv_weight_grad(10, 1, 8, 28, 5, 1, 2),
        "conv dW 3->16 ch 3x3, 32x32, b=32 (CNN)": conv_weight_grad(32, 3, 16, 32, 3, 1, 1),
        "conv dW 16->32 ch 3x3, 16x16, b=32 (CNN)": conv_weight_grad(32, 16, 32, 16, 3, 1, 1),
        "conv dW 16->32 ch 1x1 stride 2, b=32 (ResNet)": conv_weight_grad(32, 16, 32, 32, 1, 2, 0),
        "sum of 200,704 squares (gradient norm)": lambda: big.square().sum(),
    }


def child() -> None:
    """Print {case: [same on N threads as on 1, for N in 1 (again) and THREADS]}."""
    import torch

    def results(count: int) -> dict[str, list]:
        torch.set_num_threads(count)
        out = {}
        for name, op in ops.items():
            value = op()
            out[name] = list(value) if isinstance(value, tuple) else [value]
        return out

    ops = cases()
    one = results(1)
    same: dict[str, list[bool]] = {name: [] for name in ops}
    for count in (1, *THREADS):  # one thread again first: a DIFF is the count's, not noise
        other = results(count)
        for name in ops:
            pairs = zip(one[name], other[name], strict=True)
            same[name].append(all(torch.equal(a, b) for a, b in pairs))
    print(json.dumps(same))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    if parser.parse_args().child:
        child()
        return
    columns = {}
    for mode in MODES:
        env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
        if mode != "default":
            env["MKL_CBWR"] = mode
        done = subprocess.run(
            [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(f"the child for MKL_CBWR={mode} failed:\n{done.stderr}")
        columns[mode] = json.loads(done.stdout)
    width = max(len(name) for name in columns[MODES[0]])
    heads = "  ".join(f"{mode:>19}" for mode in MODES)
    print(f"{'op (N threads vs 1: 1T 2T 3T 4T)':<{width}}  {heads}")
    for name in columns[MODES[0]]:
        cells = []
        for mode in MODES:
            cells.append(" ".join("same" if ok else "DIFF" for ok in columns[mode][name]))
        print(f"{name:<{width}}  " + "  ".join(f"{cell:>19}" for cell in cells))
    print("1T: one thread again (the same bits: the inputs and the op are deterministic)")


if __name__ == "__main__":
    main()
