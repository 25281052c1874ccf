"""Pipeline executor cost: async with 4 stages vs sequential training, per sample.

Run: python benchmarks/pipeline_speed.py [--threads 1] [--microbatches 400]

Both sides train the same 4-layer MLP (784-256-128-64-10 on random data, b=16)
through the engine in this process: sequential (one stage) and async (4
stages, Analog-SGD-AP), digital and analog_sgd. Prints wall time per sample and
the ratio async / sequential (target <= 1.5x); the fastest of interleaved repeats.
"""

from __future__ import annotations

import argparse
import time

import torch

from aimc_engine.algorithms import Algorithm
from aimc_engine.models import build_model
from aimc_engine.pipeline.executor import PipelineExecutor, cut_stages
from aimc_engine.pipeline.schedule import build_schedule
from aimc_engine.pipeline.timeline import replay
from aimc_engine.tiles import TileConfig
from aimc_spec.spec import parse_spec

B_SIZE = 16
VARIANTS = {
    "digital sgd": {"analog": {"enabled": False}, "optimizer": {"algorithm": "sgd", "lr": 0.01}},
    "analog_sgd expected": {"optimizer": {"algorithm": "analog_sgd", "lr": 0.01}},
}


def make_runner(variant: dict, schedule: str, stages: int, n: int):
    spec = parse_spec(
        {
            **variant,
            "model": {"kind": "mlp", "hidden": [256, 128, 64]},
            "pipeline": {"stages": stages, "schedule": schedule},
        }
    )
    g = torch.Generator().manual_seed(0)
    config = TileConfig(spec.analog, g, g)
    model = build_model(spec, (784,), 10, config)
    sched = build_schedule(schedule, stages, n)
    order = [t.action for t in replay(sched, lambda a: 1.0)]
    data = torch.Generator().manual_seed(1)
    batches = [
        (torch.rand(B_SIZE, 784, generator=data), torch.randint(0, 10, (B_SIZE,), generator=data))
        for _ in range(n)
    ]

    def train() -> float:
        stages = cut_stages(model, sched.stages, spec.pipeline.latency_ns.forward)
        algorithms = [Algorithm(spec, stage, config) for stage in stages]
        executor = PipelineExecutor(stages, algorithms, sched)
        start = time.perf_counter()
        for action in order:
            executor.execute(action, lambda j: 0.01, lambda j: batches[j])
        return (time.perf_counter() - start) / (n * B_SIZE)

    return train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--microbatches", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.microbatches} micro-batches "
        f"of {B_SIZE}, fastest of {args.repeats} interleaved repeats\n"
    )
    print(f"{'variant':24} {'sequential us/sample':>21} {'async P=4 us/sample':>20} {'ratio':>6}")
    for name, variant in VARIANTS.items():
        seq = make_runner(variant, "sequential", 1, args.microbatches)
        asy = make_runner(variant, "async", 4, args.microbatches)
        t_seq, t_asy = float("inf"), float("inf")
        for _ in range(args.repeats):
            t_seq = min(t_seq, seq())
            t_asy = min(t_asy, asy())
        print(f"{name:24} {t_seq * 1e6:21.2f} {t_asy * 1e6:20.2f} {t_asy / t_seq:6.2f}")


if __name__ == "__main__":
    main()
