"""How many threads a run's torch ops and C update kernels use, and how they wait.

Why a policy: OpenMP threads meet at the end of every parallel region, so a matrix
product too small to split pays that meeting at every op, and beside another busy
process every op waits for whichever thread the scheduler preempted. The digits
examples trained 3 to 16 times slower on two threads than on one on a 2-core machine
with one other process busy (docs/settings.md, "Threads"). So a run's intra-op threads
(which the C kernels share: they run in torch's libgomp) follow its work per operation,
`largest_product` (multiply-adds of the largest matrix product of one micro-batch's
forward pass), and the cores its caller may use (`cores`, never exceeded):

    threads = min(cores, 1 + work // CROSSOVER_MACS)

An explicit setting wins, as torch users expect: AIMC_THREADS, else OMP_NUM_THREADS.

The thread count is chosen from the spec and the caller's share only, never from the
machine's load at the time: the same spec on the same machine and share always runs on
the same number of threads (docs/outputs.md: results on CPU can depend on it).

Waiting: `passive_openmp` asks OpenMP to put a waiting thread to sleep at once
(OMP_WAIT_POLICY=passive) instead of spinning on a core another process needs. OpenMP
reads it once, when torch loads libgomp: it must run before `import torch`, which is
why this module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from aimc_engine.errors import RunError

if TYPE_CHECKING:
    from aimc_spec.spec import JobSpec

THREADS_ENV = "AIMC_THREADS"
# Multiply-adds of a run's largest product from which 2 threads beat 1 (each further
# thread needs as much again). Measured on the 2-core development machine (torch 2.13
# CPU, passive waiting), which other agents' jobs kept busy (load average 4-7.7):
#   python benchmarks/contention.py --crossover --widths 128,256,512,1024,2048
# MLP w-w-10 training steps (b=32, digital and expected) at 1 and 2 threads,
# interleaved: 2 threads were slower at every width from 0.5M to 134M multiply-adds,
# 2T/1T 1.17-1.6 at load 4.0 and 1.3-3.4 at 7.7. So the crossover lies above 134M
# there; 2^28 (268M) keeps every measured case on one thread. Measure again on the
# machine you serve from.
CROSSOVER_MACS = 2**28


class ThreadSettingError(RunError):
    """An explicit thread setting that is not a positive whole number (a run given it
    fails naming the variable, as for a bad field of its spec)."""


def explicit_threads(env: Mapping[str, str]) -> int | None:
    """The thread count the user set: AIMC_THREADS, else OMP_NUM_THREADS (its first
    level, as OpenMP reads a list), else None. ThreadSettingError names the variable."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        first = raw.split(",")[0].strip()
        if not first.isdigit() or int(first) < 1:
            raise ThreadSettingError(f"{name}: {raw!r} is not a positive whole number of threads")
        return int(first)
    return None


def choose_threads(work: int, cores: int, explicit: int | None = None) -> int:
    """Threads for a run whose largest product is `work` multiply-adds, on `cores`
    cores: one, plus one per CROSSOVER_MACS of work, at most `cores`; `explicit` wins."""
    if explicit is not None:
        return explicit
    return max(1, min(cores, 1 + work // CROSSOVER_MACS))


def cores_share(parallel: int = 1) -> int:
    """The cores this process may run on (its CPU affinity, which containers and
    `taskset` narrow), divided among `parallel` jobs running at once; at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, parallel))


def passive_openmp(env: MutableMapping[str, str] | None = None) -> bool:
    """Set OMP_WAIT_POLICY=passive unless the user set a policy. True if it takes
    effect: OpenMP reads it when torch is first imported, so False once it was."""
    env = os.environ if env is None else env
    env.setdefault("OMP_WAIT_POLICY", "passive")
    return "torch" not in sys.modules


def largest_product(spec: JobSpec, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of the largest matrix product in one micro-batch's forward pass:
    each weight layer's fan-in x fan-out x output positions, times the micro-batch, from
    the spec's layer shapes (aimc_spec.resources.layers). No model is built: a copy of
    a large analog network for counting alone took a job as much memory again."""
    from aimc_spec.resources import layers

    found = layers(spec, input_shape)
    return max(layer.macs for layer in found) * spec.training.micro_batch_size


@contextmanager
def policy_threads(work: int) -> Iterator[int]:
    """Run the block on the policy's threads for `work`, the caller's torch thread count
    being the cores it may use; that count is restored after (a study's process runs
    job after job). Yields the threads chosen."""
    import torch

    cores = torch.get_num_threads()
    chosen = choose_threads(work, cores, explicit_threads(os.environ))
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(cores)
