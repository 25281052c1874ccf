"""Threads beside other work: 1 thread, 2 threads and the thread policy, on an idle
machine and beside one busy process (issue 24).

Run: python benchmarks/contention.py [--cases examples,mlp,cnn,resnet] [--repeats 3]
     [--full]   (every README example at its own length, all four update modes)
     python benchmarks/contention.py --crossover [--widths 32,64,128,256,512,1024]

Two child processes time the blocks: one with torch's default OpenMP waiting (the 1- and
2-thread columns: what `aimc run` did before the policy) and one started as aimc starts
a job's process (aimc_engine.threads: passive waiting, the policy's thread count). The
parent interleaves them (1T, 2T, policy, then the same beside a busy process, repeat), so
drift in the machine's speed hits every column alike, and prints the median block of
each. "Busy" is `python3 -c "while True: pass"`, started and stopped by this script.
A block is one run of a README example (shortened to 2 epochs unless --full), or
~0.3 s of training steps of an engine-speed case (benchmarks/engine_speed.py).
Targets: idle, the policy within 10% of the faster of 1 and 2 threads; busy, at most
1.2x the one-thread time.

--crossover times MLP training steps of growing width at 1 and 2 threads (passive
waiting, interleaved in this process) and prints each case's largest product: the
work at which 2 threads start to win is aimc_engine.threads.CROSSOVER_MACS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUSY = [sys.executable, "-c", "while True: pass"]
README = ["digits_digital", "digits_analog_sgd", "digits_reram_es", "digits_analog_pulsed"]
README_FULL = [*README, "digits_cnn_capacitor", "digits_tiki_taka", "paper_async_analog"]
MODES = {
    "digital": {"analog": {"enabled": False}, "optimizer": {"algorithm": "sgd"}},
    "expected": {"analog": {"update": "expected"}},
    "rounded": {"analog": {"update": "rounded"}},
    "pulsed": {"analog": {"update": "pulsed"}},
}
BLOCK_S = 0.3  # seconds of steps per block of an engine-speed case (at 1 thread, idle)


def case_names(cases: str, full: bool) -> list[str]:
    """The cases to time: README examples (`ex:NAME`) and engine-speed cases
    (`KEY:MODE`); by default each engine-speed model in its digital and pulsed modes."""
    names: list[str] = []
    for key in cases.split(","):
        if key == "examples":
            names += [f"ex:{n}" for n in (README_FULL if full else README)]
        else:
            modes = list(MODES) if full else ["digital", "pulsed"]
            names += [f"{key}:{mode}" for mode in modes]
    return names


# child side ---------------------------------------------------------------------------
def example_block(name: str, full: bool) -> tuple[Callable[[int], None], int]:
    """One run of the README example per block; its policy threads."""
    from aimc_engine.runner import prepare_data, run
    from aimc_engine.threads import choose_threads, cores_share, explicit_threads, largest_product
    from aimc_spec.spec import load_spec_file

    spec = load_spec_file(str(ROOT / "examples" / f"{name}.yaml"))
    if not full:
        spec = spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": 2})})
    data = prepare_data(spec, __import__("torch").device("cpu"), None)
    work = largest_product(spec, tuple(data.x_train.shape[1:]))
    return (lambda _: run(spec)), choose_threads(work, cores_share(), explicit_threads({}))


def step_block(name: str) -> tuple[Callable[[int], None], int]:
    """Training steps of an engine-speed case; its policy threads."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from engine_speed import CASES, aimc_step

    from aimc_engine.threads import choose_threads, cores_share, largest_product
    from aimc_spec.spec import parse_spec

    key, mode = name.split(":")
    shape, model, batch = next((c[1], c[2], c[3]) for c in CASES.values() if c[0] == key)
    variant = MODES[mode]
    spec = parse_spec({**variant, "model": model, "training": {"micro_batch_size": batch}})
    threads = choose_threads(largest_product(spec, shape), cores_share())
    return aimc_step(shape, model, batch, variant), threads


def child(full: bool) -> None:
    """Answer the parent's commands on stdin: `case NAME` builds and warms a case and
    replies `<steps per block> <policy threads>`; `time T STEPS` times one block on T
    threads (0: the policy's) and replies its seconds."""
    import torch

    from aimc_engine.threads import cores_share

    block: Callable[[int], None] = lambda _: None  # noqa: E731
    policy, ex = 1, False
    for line in sys.stdin:
        words = line.split()
        if words[0] == "case":
            ex = words[1].startswith("ex:")
            if words[1].startswith("ex:"):
                block, policy = example_block(words[1][3:], full)
            else:
                block, policy = step_block(words[1])
            torch.set_num_threads(1)
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < BLOCK_S or steps == 0:
                block(steps)
                steps += 1
            print(1 if words[1].startswith("ex:") else steps, policy, flush=True)
        else:
            threads, steps = int(words[1]), int(words[2])
            # an example's run() chooses its threads itself: the policy's unless told
            torch.set_num_threads(threads or cores_share())
            if threads:
                os.environ["AIMC_THREADS"] = str(threads)
            else:
                os.environ.pop("AIMC_THREADS", None)
                torch.set_num_threads(cores_share() if ex else policy)
            start = time.perf_counter()
            for i in range(steps):
                block(i)
            print(time.perf_counter() - start, flush=True)


# parent side --------------------------------------------------------------------------
class Child:
    """A timing process: `passive` starts it as aimc starts a job's process."""

    def __init__(self, passive: bool, full: bool) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("AIMC_THREADS", "OMP_NUM_THREADS")}
        env.pop("OMP_WAIT_POLICY", None)
        if passive:
            sys.path.insert(0, str(ROOT))
            from aimc_engine.threads import passive_openmp

            passive_openmp(env)
        argv = [sys.executable, __file__, "--child", *(["--full"] if full else [])]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )

    def ask(self, command: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise SystemExit(f"a timing process exited (command {command!r})")
        return reply.split()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def time_case(name: str, plain: Child, policy: Child, repeats: int) -> dict[str, Any]:
    """Median block seconds of 1T, 2T and the policy, idle and busy, interleaved."""
    steps, _ = plain.ask(f"case {name}")
    threads = int(policy.ask(f"case {name}")[1])
    columns = [(plain, 1), (plain, 2), (policy, 0)]
    times: dict[str, list[float]] = {f"{c}{w}": [] for w in ("idle", "busy") for c in "12p"}
    for _ in range(repeats):
        for where in ("idle", "busy"):
            busy = subprocess.Popen(BUSY) if where == "busy" else None
            try:
                for (proc, t), c in zip(columns, "12p", strict=True):
                    times[f"{c}{where}"].append(float(proc.ask(f"time {t} {steps}")[0]))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    return {"threads": threads, **{k: statistics.median(v) for k, v in times.items()}}


def report(name: str, m: dict[str, Any]) -> tuple[float, float]:
    """Print one case's row; its two target ratios."""
    idle = m["pidle"] / min(m["1idle"], m["2idle"])
    busy = m["pbusy"] / m["1busy"]
    print(
        f"{name:26} {m['threads']:>3}T {m['1idle']:7.3f} {m['2idle']:7.3f} {m['pidle']:7.3f}"
        f" {idle:6.2f} | {m['1busy']:7.3f} {m['2busy']:7.3f} {m['pbusy']:7.3f} {busy:6.2f}"
        f" {m['2busy'] / m['1busy']:6.2f}",
        flush=True,
    )
    return idle, busy


def contention(names: list[str], repeats: int, full: bool) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("median block seconds; policy/best: policy over the faster of 1T and 2T (idle);")
    print("policy/1T and 2T/1T beside one busy process")
    print(
        f"{'case':26} {'pol':>4} {'1T':>7} {'2T':>7} {'policy':>7} {'p/best':>6} | "
        f"{'1T':>7} {'2T':>7} {'policy':>7} {'p/1T':>6} {'2T/1T':>6}"
    )
    plain, policy = Child(False, full), Child(True, full)
    worst = [0.0, 0.0]
    try:
        for name in names:
            idle, busy = report(name, time_case(name, plain, policy, repeats))
            worst = [max(worst[0], idle), max(worst[1], busy)]
    finally:
        plain.close()
        policy.close()
    print(f"\nworst idle policy/best {worst[0]:.2f} (target <= 1.10)")
    print(f"worst busy policy/1T   {worst[1]:.2f} (target <= 1.20)")


def crossover(widths: list[int], steps: int) -> None:
    """2T/1T of MLP training steps by the largest product's multiply-adds (passive)."""
    from aimc_engine.threads import CROSSOVER_MACS, passive_openmp

    passive_openmp()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from engine_speed import aimc_step, time_interleaved

    print(f"load average at start: {os.getloadavg()[0]:.2f}; MLP w-w-10, b=32, passive waiting")
    print(f"{'width':>6} {'mult-adds':>10} {'mode':>9} {'1T ms':>8} {'2T ms':>8} {'2T/1T':>6}")
    ahead: list[int] = []  # the works at which 2 threads were ahead by 10% in every mode
    for w in widths:
        ratios = []
        for mode in ("digital", "expected"):
            step = aimc_step((w,), {"kind": "mlp", "hidden": [w]}, 32, MODES[mode])
            n = max(10, steps * 256 // w)
            one, two = time_interleaved([(1, step), (2, step)], n)
            ratios.append(two / one)
            print(
                f"{w:6d} {32 * w * w:10d} {mode:>9} {one * 1e3:8.3f} {two * 1e3:8.3f} "
                f"{two / one:6.2f}",
                flush=True,
            )
        if max(ratios) <= 0.9:
            ahead.append(32 * w * w)
    if ahead:
        print(f"2 threads ahead by 10% or more from {min(ahead)} multiply-adds")
    else:
        print(f"2 threads never ahead by 10%, up to {32 * max(widths) ** 2} multiply-adds")
    print(f"aimc_engine.threads.CROSSOVER_MACS = {CROSSOVER_MACS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="examples,mlp,cnn,resnet")
    parser.add_argument("--repeats", type=int, default=3, help="blocks per column")
    parser.add_argument("--full", action="store_true", help="all examples and modes, full length")
    parser.add_argument("--crossover", action="store_true", help="measure CROSSOVER_MACS")
    parser.add_argument("--widths", default="32,64,128,256,512,1024")
    parser.add_argument("--steps", type=int, default=200, help="crossover: steps at width 256")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        child(args.full)
    elif args.crossover:
        crossover([int(w) for w in args.widths.split(",")], args.steps)
    else:
        contention(case_names(args.cases, args.full), args.repeats, args.full)


if __name__ == "__main__":
    main()
