"""Stages as processes on a real clock: async against gpipe, and memory per process.

Run: python benchmarks/distributed_speed.py [--microbatches 192] [--b 4] [--size 64]
     [--mode expected|digital] [--repeats 2] [--skip-memory]

Part 1 trains the same model (MLP 784-512-1024-1024-10, cut 2 + 2 layers of about 0.95M
and 1.05M weights, analog with expected
updates or digital, 64 MNIST digits a micro-batch by default) with gpipe (B per update)
and with async, each with `pipeline.executor: processes`, P = 2 (one torch thread per
process), and prints

- the measured async / gpipe wall-clock speedup (training only: the fastest repeat of
  each, interleaved; the time each stage process spent in its actions),
- what the timeline predicts from the latency model (equal cost per layer), what a
  replay of the same schedules predicts with each stage's measured action times, and
  the formula (B + P - 1) / B of balanced stages,
- per process: the fraction of its time spent waiting for a neighbour, and per
  micro-batch the time spent waiting for messages or posting sends (the waits include
  the schedule's bubbles) and the sends alone.

Part 2 measures peak resident memory: the same wide model in one process (simulated)
and in its stage processes, each a fresh process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

import torch

from aimc_engine.pipeline.schedule import build_schedule
from aimc_engine.pipeline.timeline import Tally, iter_replay
from aimc_engine.runner import run
from aimc_spec.spec import parse_spec

P = 2


MODES = {
    "digital": {"analog": {"enabled": False}, "optimizer": {"algorithm": "sgd"}},
    "expected": {"analog": {"update": "expected"}, "optimizer": {"algorithm": "analog_sgd"}},
}


def spec(schedule: str, n: int, b: int, size: int, mode: str) -> dict[str, Any]:
    lr = 0.05 * (b if schedule == "gpipe" else 1)  # lr x B for gpipe's mean gradient
    return {
        "device": "cpu",
        "dataset": {"name": "mnist_subset"},
        "model": {"kind": "mlp", "hidden": [512, 1024, 1024], "activation": "tanh"},
        "analog": MODES[mode]["analog"],
        "optimizer": {**MODES[mode]["optimizer"], "lr": lr},
        "training": {
            "steps": n // (b if schedule == "gpipe" else 1),
            "micro_batch_size": size,
            "eval_every": 100_000,
        },
        "pipeline": {
            "stages": P,
            "schedule": schedule,
            "micro_batches": b,
            "executor": "processes",
        },
    }


def training_seconds(result: dict[str, Any]) -> float:
    """Wall time of the training proper, as the stages clocked it: the longest of the
    stages' time in their actions plus their waits inside them (each stage runs its
    actions back to back, so that is its wall time between metric points; the metric
    points and the start-up are left out)."""
    return max(sum(p["compute_s"].values()) + p["train_wait_s"] for p in result["processes"])


def replay_makespan(schedule: str, n: int, b: int, result: dict[str, Any]) -> float:
    """The schedule replayed with each stage's measured mean action times."""
    sched = build_schedule(schedule, P, n, b)
    counts = [{kind: 0 for kind in "FBU"} for _ in range(P)]
    for s, actions in enumerate(sched.per_stage):
        for action in actions:
            counts[s][action.kind] += 1
    means = [
        {k: p["compute_s"][k] / max(1, counts[s][k]) for k in "FBU"}
        for s, p in enumerate(result["processes"])
    ]
    return Tally.of(iter_replay(sched, lambda a: means[a.stage][a.kind]), P).makespan


def part_speed(n: int, b: int, size: int, mode: str, repeats: int) -> None:
    print(
        f"Part 1: async vs gpipe, {mode}, P={P}, B={b}, {n} micro-batches of {size}, "
        "1 thread per process"
    )
    runs: dict[str, list[dict[str, Any]]] = {"gpipe": [], "async": []}
    for _ in range(repeats):
        for schedule in runs:
            runs[schedule].append(run(parse_spec(spec(schedule, n, b, size, mode))).result)
    best = {s: min(rs, key=training_seconds) for s, rs in runs.items()}
    seconds = {s: training_seconds(r) for s, r in best.items()}
    measured = seconds["gpipe"] / seconds["async"]
    latency_model = (
        best["gpipe"]["timeline"]["makespan_ns"] / best["async"]["timeline"]["makespan_ns"]
    )
    replayed = replay_makespan("gpipe", n, b, best["gpipe"]) / replay_makespan(
        "async", n, b, best["async"]
    )
    for s, r in best.items():
        print(
            f"  {s:6s} training {seconds[s]:7.2f} s  (repeats: "
            f"{', '.join(f'{training_seconds(x):.2f}' for x in runs[s])})"
        )
        for p in r["processes"]:
            wait = p["train_wait_s"] / (sum(p["compute_s"].values()) + p["train_wait_s"])
            comm_ms = (p["send_s"] + p["train_wait_s"]) / n * 1e3  # bubbles included
            compute = ", ".join(f"{k} {v / max(1, n) * 1e3:.2f}" for k, v in p["compute_s"].items())
            print(
                f"    stage {p['stage']}: waiting {wait:6.1%} of its time; per micro-batch "
                f"{comm_ms:6.2f} ms waiting or sending, of which sends "
                f"{p['send_s'] / n * 1e3:.3f} ms; "
                f"compute ms per micro-batch: {compute}"
            )
    print(f"  async / gpipe speedup, measured on the wall clock: {measured:5.2f}x")
    print(f"  predicted by a replay with the measured action times: {replayed:5.2f}x")
    print(f"  predicted by the timeline (latency model):            {latency_model:5.2f}x")
    print(f"  (B + P - 1) / B, balanced stages:                    {(b + P - 1) / b:5.2f}x")
    print(f"  measured / replay prediction: {measured / replayed:5.2f}")


MEMORY_SPEC = {
    "device": "cpu",
    "dataset": {"name": "synthetic", "synthetic": {"n_train": 256, "n_test": 64}},
    "model": {"kind": "mlp", "hidden": [2048, 2048, 2048]},
    "analog": {"update": "expected"},
    "training": {"steps": 4, "micro_batch_size": 16, "eval_every": 100},
}
_MEASURE = """
import json, resource, sys
from aimc_engine.runner import run
from aimc_spec.spec import parse_spec
if __name__ == "__main__":
    out = run(parse_spec(json.loads(sys.argv[1])))
    print(json.dumps({"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "processes": out.result.get("processes")}))
"""


def part_memory() -> None:
    print("Part 2: peak resident memory, MLP with hidden [2048, 2048, 2048] (fresh processes)")
    for executor, stages in (("simulated", P), ("processes", P), ("processes", 4)):
        data = {
            **MEMORY_SPEC,
            "pipeline": {"stages": stages, "schedule": "async", "executor": executor},
        }
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, json.dumps(data)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        if executor == "simulated":
            whole = figures["rss"]
            print(f"  one process, {stages} stages simulated: {whole:7.1f} MB")
            continue
        per = [p["peak_rss_mb"] for p in figures["processes"]]
        shown = ", ".join(f"{m:.1f}" for m in per)
        print(
            f"  {stages} stage processes: {shown} MB (largest {max(per) / whole:.2f}x the "
            f"one process; mean {statistics.mean(per):.1f} MB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--microbatches", type=int, default=192)
    parser.add_argument("--b", type=int, default=4, help="gpipe's micro-batches per update")
    parser.add_argument("--size", type=int, default=64, help="samples per micro-batch")
    parser.add_argument("--mode", choices=sorted(MODES), default="expected")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(P)  # each stage process takes one of them
    part_speed(args.microbatches, args.b, args.size, args.mode, args.repeats)
    if not args.skip_memory:
        part_memory()


if __name__ == "__main__":
    main()
