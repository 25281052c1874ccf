"""Engine speed: one training step of aimc vs a plain torch.nn + torch.optim.SGD step.

Run: python benchmarks/engine_speed.py [--threads 1] [--steps 200]

Both sides run in this process on the same data, one step = forward, loss,
backward, update. Prints ms per step and the ratio to plain torch for each
algorithm / update mode, then where a pulsed step spends its time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from aimc_engine.algorithms import Algorithm
from aimc_engine.models import build_model
from aimc_engine.pulses import pulse_train_counts
from aimc_engine.rng import uniform
from aimc_engine.spec import parse_spec
from aimc_engine.tiles import TileConfig

CASES = {
    "mlp 784-256-128-10, b=64": ((784,), [256, 128], 64),
    "digits mlp 64-128-64-10, b=10": ((64,), [128, 64], 10),
}
VARIANTS = {
    "sgd (digital)": {"analog": {"enabled": False}, "optimizer": {"algorithm": "sgd"}},
    "analog_sgd expected": {"analog": {"update": "expected"}},
    "analog_sgd rounded": {"analog": {"update": "rounded"}},
    "analog_sgd pulsed BL31": {"analog": {"update": "pulsed"}},
    "analog_sgd pulsed BL31 no-mgmt": {"analog": {"update": "pulsed", "update_management": False}},
    "tiki_taka expected": {"optimizer": {"algorithm": "tiki_taka"}},
}


def time_steps(step: Callable[[int], None], steps: int, blocks: int = 5) -> float:
    """Fastest block's seconds per step, after a warm-up block."""
    return time_pair(step, None, steps, blocks)[0]


def time_pair(
    a: Callable[[int], None], b: Callable[[int], None] | None, steps: int, blocks: int = 7
) -> tuple[float, float]:
    """Fastest block's seconds per step of a and b, blocks interleaved (a b a b ...).

    Interleaving makes drift in the machine's speed hit both alike; the fastest
    block is the one least disturbed by other work on a shared machine.
    """
    per_block = max(1, steps // blocks)
    fns = [a] if b is None else [a, b]
    times: list[list[float]] = [[] for _ in fns]
    for f in fns:  # warm-up
        for i in range(per_block):
            f(i)
    for _ in range(blocks):
        for f, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            for i in range(per_block):
                f(i)
            out.append((time.perf_counter() - start) / per_block)
    best = [min(t) for t in times]
    return best[0], best[-1]


def make_batches(shape: tuple[int, ...], batch: int, n: int = 32) -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.rand((batch, *shape), generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n)
    ]


def plain_torch_step(shape: tuple[int, ...], hidden: list[int], batch: int) -> Callable:
    widths = [shape[0], *hidden, 10]
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.Tanh())
    model = nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data = make_batches(shape, batch)

    def step(i: int) -> None:
        x, y = data[i % len(data)]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def aimc_step(shape: tuple[int, ...], hidden: list[int], batch: int, variant: dict) -> Callable:
    optimizer = {"lr": 0.01, **variant.get("optimizer", {})}
    spec = parse_spec(
        {**variant, "model": {"kind": "mlp", "hidden": hidden}, "optimizer": optimizer}
    )
    g = torch.Generator().manual_seed(0)
    config = TileConfig(spec.analog, g, g)
    model = build_model(spec, shape, 10, config)
    algo = Algorithm(spec, model, config)
    data = make_batches(shape, batch)

    def step(i: int) -> None:
        x, y = data[i % len(data)]
        F.cross_entropy(model(x), y).backward()
        algo.step(0.01)

    return step


def pulsed_breakdown(steps: int) -> None:
    """Where one pulsed update of the 784x256 layer (b=64, BL=31) spends its time."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=g)
    d = torch.randn(64, 256, generator=g) * 0.01
    spec = parse_spec({})
    dev_spec = spec.analog.device
    kw = {"lr": 0.01, "dw_min": dev_spec.dw_min, "bit_length": 31, "generator": g}
    for mgmt in (True, False):
        t = time_steps(lambda _, m=mgmt: pulse_train_counts(x, d, update_management=m, **kw), steps)
        # BL per sample (per-sample update management), here its mean over the batch
        per_sample = torch.ceil(
            0.01 * x.abs().amax(1) * d.abs().amax(1) / dev_spec.dw_min  # type: ignore[operator]
        ).clamp(1, 31)
        bl = float(per_sample.mean()) if mgmt else 31.0
        print(f"  pulse counts, management={mgmt!s:5} (mean BL {bl:4.1f}): {t * 1e3:7.3f} ms")
    fire = torch.rand(31 * 64, 784, generator=g).round()
    fire_d = torch.rand(31 * 64, 256, generator=g).round()
    t = time_steps(lambda _: fire_d.T @ fire, steps)
    print(f"    of which one 0/1 coincidence matmul at BL 31 (two per update): {t * 1e3:7.3f} ms")
    cpu = torch.device("cpu")
    t = time_steps(lambda _: torch.floor(uniform((31, 64, 784), g, cpu).add_(0.3)), steps)
    print(f"    of which drawing the x-side pulse trains at BL 31:            {t * 1e3:7.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); fastest of interleaved blocks\n")
    print(f"{'case':32} {'variant':32} {'ms/step':>9} {'x torch':>8}")
    for case, (shape, hidden, batch) in CASES.items():
        torch_step = plain_torch_step(shape, hidden, batch)
        base = time_steps(torch_step, args.steps)
        print(f"{case:32} {'plain torch nn + optim.SGD':32} {base * 1e3:9.3f} {1.0:8.2f}")
        for name, variant in VARIANTS.items():
            base, t = time_pair(torch_step, aimc_step(shape, hidden, batch, variant), args.steps)
            print(f"{'':32} {name:32} {t * 1e3:9.3f} {t / base:8.2f}")
    print("\npulsed update breakdown (784x256 tile, b=64):")
    pulsed_breakdown(args.steps)


if __name__ == "__main__":
    main()
