"""Threads beside other work: 1 thread, 2 threads and the thread policy, on an idle
machine and beside one busy process (issue 24).

Run: python benchmarks/contention.py [--cases examples,mlp,cnn,resnet] [--repeats 3]
     [--full]   (every README example at its own length, all four update modes)
     python benchmarks/contention.py --crossover [--widths 32,64,128,256,512,1024]
         [--waiting passive|spin]
     python benchmarks/contention.py --in-process mlp:digital [--repeats 10] [--busy]

Two child processes time the blocks: one with torch's default OpenMP waiting (the 1- and
2-thread columns: what `aimc run` did before the policy; and the auto column, runs under
AIMC_THREADS=auto, whose threads follow the machine's load and spin as torch's do) and
one started as aimc starts a job's process (aimc_engine.threads: passive waiting, the
policy's thread count). The parent interleaves them (1T, 2T, policy, auto, then the same
beside a busy process, repeat), so drift in the machine's speed hits every column alike,
and prints the median block of each. "Busy" is `python3 -c "while True: pass"`, started
and stopped by this script.
A block is one run of a README example (shortened to 2 epochs unless --full), or
~0.3 s of training steps of an engine-speed case (benchmarks/engine_speed.py).
Targets: idle, the policy within 10% of the faster of 1 and 2 threads; busy, at most
1.2x the one-thread time (the same for auto).

--crossover times MLP training steps of growing width at 1 and 2 threads (interleaved
in this process) and prints each case's largest product: the work at which 2 threads
start to win is aimc_engine.threads.CROSSOVER_MACS with passive waiting (the default
policy), IDLE_CROSSOVER_MACS with spinning threads on an idle machine (auto's).
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
    """One run of the README example per block; its work per operation."""
    from aimc_engine.runner import prepare_data, run
    from aimc_engine.threads import largest_product
    from aimc_spec.spec import load_spec_file

    spec = load_spec_file(str(ROOT / "examples" / f"{name}.yaml"))
    if not full:
        spec = spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": 2})})
    data = prepare_data(spec, __import__("torch").device("cpu"), None)
    return (lambda _: run(spec)), largest_product(spec, tuple(data.x_train.shape[1:]))


def step_block(name: str) -> tuple[Callable[[int], None], int]:
    """Training steps of an engine-speed case; its work per operation."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from engine_speed import CASES, aimc_step

    from aimc_engine.threads import largest_product
    from aimc_spec.spec import parse_spec

    key, mode = name.split(":")
    shape, model, batch = next((c[1], c[2], c[3]) for c in CASES.values() if c[0] == key)
    variant = MODES[mode]
    spec = parse_spec({**variant, "model": model, "training": {"micro_batch_size": batch}})
    return aimc_step(shape, model, batch, variant), largest_product(spec, shape)


def timed_block(
    block: Callable[[int], None], steps: int, threads: int, ex: bool, work: int
) -> tuple[float, str]:
    """Seconds of one block on `threads` (0: the policy's, -1: AIMC_THREADS=auto's). An
    example's run() chooses its threads itself, so it is told by AIMC_THREADS; a step
    block under auto looks at the load after every step, as a run does after every
    micro-batch (its first look, START_SAMPLE_S, is not timed: a block is part of a run).
    Also the thread counts auto chose, in order ("-" where the run chose them unseen)."""
    import torch

    from aimc_engine.threads import choose_threads, cores_share, policy_threads

    os.environ.pop("AIMC_THREADS", None)
    if threads > 0:
        os.environ["AIMC_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    elif threads == 0:  # an example's run() applies the policy to the cores it is given
        torch.set_num_threads(cores_share() if ex else choose_threads(work, cores_share()))
    else:
        os.environ["AIMC_THREADS"] = "auto"
        torch.set_num_threads(cores_share())
    if threads < 0 and not ex:
        with policy_threads(work) as chosen:
            start = time.perf_counter()
            for i in range(steps):
                block(i)
                chosen.retune()
            seconds = time.perf_counter() - start
            counts = chosen.following.counts if chosen.following else [chosen.count]
            return seconds, ",".join(map(str, counts))
    start = time.perf_counter()
    for i in range(steps):
        block(i)
    return time.perf_counter() - start, "-"


def child(full: bool) -> None:
    """Answer the parent's commands on stdin: `case NAME` builds and warms a case and
    replies `<steps per block> <policy threads>`; `time T STEPS` times one block on T
    threads (0: the policy's, -1: AIMC_THREADS=auto's) and replies its seconds."""
    import torch

    from aimc_engine.threads import choose_threads, cores_share

    block: Callable[[int], None] = lambda _: None  # noqa: E731
    ex, work = False, 0
    for line in sys.stdin:
        words = line.split()
        if words[0] == "case":
            ex = words[1].startswith("ex:")
            block, work = example_block(words[1][3:], full) if ex else step_block(words[1])
            torch.set_num_threads(1)
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < BLOCK_S or steps == 0:
                block(steps)
                steps += 1
            print(1 if ex else steps, choose_threads(work, cores_share()), flush=True)
        else:
            seconds, counts = timed_block(block, int(words[2]), int(words[1]), ex, work)
            print(seconds, counts, flush=True)


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
    """Median block seconds of 1T, 2T, the policy and auto, idle and busy, interleaved."""
    steps, _ = plain.ask(f"case {name}")
    threads = int(policy.ask(f"case {name}")[1])
    columns = [(plain, 1), (plain, 2), (policy, 0), (plain, -1)]
    times: dict[str, list[float]] = {f"{c}{w}": [] for w in ("idle", "busy") for c in "12pa"}
    auto: dict[str, set[str]] = {"idle": set(), "busy": set()}  # the counts auto chose
    for _ in range(repeats):
        for where in ("idle", "busy"):
            busy = subprocess.Popen(BUSY) if where == "busy" else None
            try:
                for (proc, t), c in zip(columns, "12pa", strict=True):
                    seconds, counts = proc.ask(f"time {t} {steps}")
                    times[f"{c}{where}"].append(float(seconds))
                    if c == "a":
                        auto[where].add(counts)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    chose = {w: " ".join(sorted(auto[w])) for w in auto}
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"threads": threads, "chose": chose, **medians}


def report(name: str, m: dict[str, Any]) -> list[float]:
    """Print one case's row; its target ratios: policy idle and busy, auto idle and busy."""
    best = min(m["1idle"], m["2idle"])
    ratios = [
        m["pidle"] / best,
        m["pbusy"] / m["1busy"],
        m["aidle"] / best,
        m["abusy"] / m["1busy"],
    ]
    print(
        f"{name:24} {m['threads']:>2}T {m['1idle']:7.3f} {m['2idle']:7.3f} {m['pidle']:7.3f}"
        f" {m['aidle']:7.3f} {ratios[0]:6.2f} {ratios[2]:6.2f} | {m['1busy']:7.3f}"
        f" {m['2busy']:7.3f} {m['pbusy']:7.3f} {m['abusy']:7.3f} {ratios[1]:6.2f}"
        f" {ratios[3]:6.2f}  {m['chose']['idle']} | {m['chose']['busy']}",
        flush=True,
    )
    return ratios


def contention(names: list[str], repeats: int, full: bool) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("median block seconds. Idle: policy (p) and auto (a) over the faster of 1T and 2T;")
    print("beside one busy process: policy and auto over 1T. auto: AIMC_THREADS=auto, and")
    print("last the thread counts it chose in each block, idle | busy (-: inside a run)")
    print(
        f"{'case':24} {'pol':>3} {'1T':>7} {'2T':>7} {'policy':>7} {'auto':>7} {'p/best':>6}"
        f" {'a/best':>6} | {'1T':>7} {'2T':>7} {'policy':>7} {'auto':>7} {'p/1T':>6} {'a/1T':>6}"
        "  auto chose"
    )
    plain, policy = Child(False, full), Child(True, full)
    worst = [0.0] * 4
    try:
        for name in names:
            ratios = report(name, time_case(name, plain, policy, repeats))
            worst = [max(w, r) for w, r in zip(worst, ratios, strict=True)]
    finally:
        plain.close()
        policy.close()
    print(f"\nworst idle policy/best {worst[0]:.2f}, auto/best {worst[2]:.2f} (target <= 1.10)")
    print(f"worst busy policy/1T   {worst[1]:.2f}, auto/1T   {worst[3]:.2f} (target <= 1.20)")


def in_process(name: str, rounds: int, busy: bool, steps: int = 150) -> None:
    """1T, 2T and auto blocks of one engine-speed case in turn, in this process (torch's
    default waiting; beside a busy process for all of it with --busy): whether auto runs
    as fast as the count it chose, without the noise between timing processes."""
    other = subprocess.Popen(BUSY) if busy else None
    try:
        _in_process(name, rounds, steps, busy)
    finally:
        if other is not None:
            other.kill()
            other.wait()


def _in_process(name: str, rounds: int, steps: int, busy: bool) -> None:
    import torch

    block, work = step_block(name)
    for i in range(30):  # warm-up
        block(i)
    times: dict[str, list[float]] = {"1T": [], "2T": [], "auto": []}
    chose: set[str] = set()
    for _ in range(rounds):
        for key, threads in (("1T", 1), ("2T", 2), ("auto", -1)):
            time.sleep(BLOCK_S)  # as when another timing process runs its block
            seconds, counts = timed_block(block, steps, threads, False, work)
            times[key].append(seconds)
            if threads < 0:
                chose.add(counts)
    torch.set_num_threads(1)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name}: median seconds of {rounds} blocks of {steps} steps, in one process")
    print(f"load average {os.getloadavg()[0]:.2f}" + (", beside a busy process" if busy else ""))
    print("  ".join(f"{k} {v:.3f}" for k, v in medians.items()), f" auto chose {chose}")
    auto = medians["auto"]
    print(f"auto/2T {auto / medians['2T']:.2f}, auto/1T {auto / medians['1T']:.2f}")


def crossover(widths: list[int], steps: int, waiting: str) -> None:
    """2T/1T of MLP training steps by the largest product's multiply-adds, with OpenMP's
    waiting threads sleeping (`passive`, the default policy's) or spinning (`spin`,
    torch's own default and AIMC_THREADS=auto's)."""
    from aimc_engine.threads import CROSSOVER_MACS, IDLE_CROSSOVER_MACS, passive_openmp

    if waiting == "passive":
        passive_openmp()
    elif "OMP_WAIT_POLICY" in os.environ:
        raise SystemExit("--waiting spin: unset OMP_WAIT_POLICY first")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from engine_speed import aimc_step, time_interleaved

    print(f"load average at start: {os.getloadavg()[0]:.2f}; MLP w-w-10, b=32, {waiting} waiting")
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
    print(f"aimc_engine.threads.CROSSOVER_MACS = {CROSSOVER_MACS} (passive, decided under load)")
    print(f"aimc_engine.threads.IDLE_CROSSOVER_MACS = {IDLE_CROSSOVER_MACS} (spin, idle)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="examples,mlp,cnn,resnet")
    parser.add_argument("--repeats", type=int, default=3, help="blocks per column")
    parser.add_argument("--full", action="store_true", help="all examples and modes, full length")
    parser.add_argument("--crossover", action="store_true", help="measure CROSSOVER_MACS")
    parser.add_argument("--widths", default="32,64,128,256,512,1024")
    parser.add_argument("--waiting", choices=["passive", "spin"], default="passive")
    parser.add_argument("--steps", type=int, default=200, help="crossover: steps at width 256")
    parser.add_argument("--in-process", metavar="CASE", help="1T, 2T, auto of e.g. mlp:digital")
    parser.add_argument("--busy", action="store_true", help="--in-process beside a busy process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        child(args.full)
    elif args.in_process:
        in_process(args.in_process, args.repeats, args.busy)
    elif args.crossover:
        crossover([int(w) for w in args.widths.split(",")], args.steps, args.waiting)
    else:
        contention(case_names(args.cases, args.full), args.repeats, args.full)


if __name__ == "__main__":
    main()
