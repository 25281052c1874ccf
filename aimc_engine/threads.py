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

By default the thread count is chosen from the spec and the caller's share only, never
from the machine's load at the time: the same spec on the same machine and share always
runs on the same number of threads (docs/outputs.md: results on CPU can depend on it).

AIMC_THREADS=auto trades that for speed on a machine whose load comes and goes
(`LoadFollowing`): a run whose work is worth two threads on an idle machine
(IDLE_CROSSOVER_MACS) looks at the cores other processes leave idle
(aimc_engine/idle_cores.py) when it starts and about once a second after, and runs on
as many of them as are free, within its share. Its threads spin while they wait, as
torch's own do, which is what makes two threads pay on an idle machine; beside another
busy process it is down to one thread within a second, where spinning costs nothing.

Waiting: `passive_openmp` asks OpenMP to put a waiting thread to sleep at once
(OMP_WAIT_POLICY=passive) instead of spinning on a core another process needs. OpenMP
reads it once, when torch loads libgomp: it must run before `import torch`, which is
why this module imports torch only inside the functions that need it.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aimc_engine.errors import RunError
from aimc_engine.idle_cores import IdleCores, Reading, quota_cores

if TYPE_CHECKING:
    from aimc_spec.spec import JobSpec

log = logging.getLogger(__name__)
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
AUTO = "auto"  # AIMC_THREADS=auto: follow the machine's load (LoadFollowing)
# Multiply-adds of a run's largest product from which 2 spinning threads beat 1 on an
# idle machine: what a load-following run may grow to (each further thread needs as
# much again). Measured on the 2-core development machine, idle (load 0.3):
#   python benchmarks/contention.py --crossover --waiting spin --widths 64,...,1024
# MLP w-w-10 training steps (b=32, digital and expected), two runs: 2T/1T 1.00-1.07
# up to 0.5M multiply-adds, 0.93-1.11 from 1M to 4.2M (no gain beyond the noise
# between the runs), 0.78-1.01 at 8.4M, 0.73-0.87 from 17M. So two threads from 2^23.
IDLE_CROSSOVER_MACS = 2**23
FREE_CORE = 0.75  # a further thread once others leave this much of a further core idle
HOLD_CORE = 0.5  # and a thread kept until its core is less than this idle (hysteresis)
START_SAMPLE_S = 0.1  # a load-following run's first look at the load (10 clock ticks)
RETUNE_S = 1.0  # and how often it looks again


class ThreadSettingError(RunError):
    """An explicit thread setting that is not a positive whole number (a run given it
    fails naming the variable, as for a bad field of its spec)."""


def explicit_threads(env: Mapping[str, str]) -> int | None:
    """The thread count the user set: AIMC_THREADS, else OMP_NUM_THREADS (its first
    level, as OpenMP reads a list), else None (also for AIMC_THREADS=auto, which
    follows_load tells apart). ThreadSettingError names the variable."""
    if follows_load(env):
        return None
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        first = raw.split(",")[0].strip()
        if not first.isdigit() or int(first) < 1:
            allowed = f" or {AUTO!r}" if name == THREADS_ENV else ""
            raise ThreadSettingError(
                f"{name}: {raw!r} is not a positive whole number of threads{allowed}"
            )
        return int(first)
    return None


def follows_load(env: Mapping[str, str]) -> bool:
    """Whether runs follow the machine's load (AIMC_THREADS=auto, any case)."""
    return env.get(THREADS_ENV, "").strip().lower() == AUTO


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
    """Set OMP_WAIT_POLICY=passive unless the user set a policy or AIMC_THREADS=auto
    (whose threads spin, as torch's own: LoadFollowing). True while torch is not loaded
    yet, so that what was decided here takes effect: OpenMP reads the policy when torch
    is first imported, so False once it was."""
    env = os.environ if env is None else env
    if not follows_load(env):
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


def threads_for_idle(idle: float, most: int, current: int | None = None) -> int:
    """Threads when others leave `idle` cores idle in all: the whole idle cores, and
    one more for a part of at least FREE_CORE (floor(idle + 1 - FREE_CORE)), at least
    one, at most `most`. A run on `current` threads keeps them while the last one's
    core is at least HOLD_CORE idle, so a load near the threshold does not switch the
    count at every look."""
    count = max(1, min(most, math.floor(idle + 1 - FREE_CORE)))
    if current is not None and count < current and idle >= current - 1 + HOLD_CORE:
        return current
    return count


class LoadFollowing:
    """A run's threads under AIMC_THREADS=auto: as many as other processes leave cores
    idle, up to `most`, looked at when it starts (`start`, START_SAMPLE_S asleep) and
    then at most every RETUNE_S (`retune`, from the thread that runs torch's ops: a
    thread count is that thread's OpenMP setting)."""

    def __init__(self, most: int, idle: IdleCores) -> None:
        self.most = most
        self.idle = idle
        self.last: Reading | None = None
        self.counts: list[int] = []  # each count chosen, in order (what the run ran on)

    def start(self) -> int:
        before = self.idle.read()
        time.sleep(START_SAMPLE_S)
        self.last = self.idle.read()
        return self._choose(self.idle.between(before, self.last))

    def retune(self) -> None:
        """Choose again if RETUNE_S has passed since the last look."""
        assert self.last is not None, "start() first"
        if time.monotonic() - self.last.wall < RETUNE_S:
            return
        now = self.idle.read()
        idle, self.last = self.idle.between(self.last, now), now
        self._choose(idle)

    def _choose(self, idle: float) -> int:
        import torch

        count = threads_for_idle(idle, self.most, self.counts[-1] if self.counts else None)
        if not self.counts or count != self.counts[-1]:
            torch.set_num_threads(count)
            self.counts.append(count)
            log.info(
                "AIMC_THREADS=auto: %d threads (%.2f cores idle, at most %d)",
                count,
                idle,
                self.most,
            )
        return count


@dataclass
class Threads:
    """What a run got from the policy: its first thread count, and the LoadFollowing
    that may change it (None: the count is fixed for the run)."""

    count: int
    following: LoadFollowing | None = None

    def retune(self) -> None:
        if self.following is not None:
            self.following.retune()


@contextmanager
def policy_threads(work: int) -> Iterator[Threads]:
    """Run the block on the policy's threads for `work`, the caller's torch thread count
    being the cores it may use; that count is restored after (a study's process runs
    job after job). Under AIMC_THREADS=auto a run worth more than one thread on an idle
    machine follows the load, within its share and its cgroup's CPU quota (where
    /proc/stat lists its cores: else the fixed policy)."""
    import torch

    cores = torch.get_num_threads()
    count, most = planned_threads(work, cores)
    if most:
        threads = follow_load(most, count)
    else:
        threads = Threads(count)
        torch.set_num_threads(count)
    try:
        yield threads
    finally:
        torch.set_num_threads(cores)


def planned_threads(work: int, cores: int, stages: int = 1) -> tuple[int, int]:
    """(threads, most) of a run, or of each of its `stages` processes, whose largest
    product is `work` on `cores` cores: the fixed policy's count (an explicit setting
    wins), and the most it follows the load up to, 0 but under AIMC_THREADS=auto (the
    count then serves where the load is unseen)."""
    if follows_load(os.environ):
        return choose_threads(work, cores), most_following(work, cores, stages)
    return choose_threads(work, cores, explicit_threads(os.environ)), 0


def most_following(work: int, cores: int, stages: int = 1) -> int:
    """The most threads a load-following run (or each of its `stages` processes) whose
    largest product is `work` may use on `cores` cores: one per IDLE_CROSSOVER_MACS of
    work, within the cores and its part of the cgroup's CPU quota (a quota leaves the
    cores looking idle in /proc/stat, so the load alone would not hold it back)."""
    quota = quota_cores()
    room = cores if quota is None else max(1, quota // stages)
    return max(1, min(cores, room, 1 + work // IDLE_CROSSOVER_MACS))


def follow_load(most: int, fallback: int) -> Threads:
    """A load-following run's threads, up to `most` (torch's thread count set to the
    first): following the load where it is worth more than one thread and /proc/stat
    shows it, else one thread (most 1) or `fallback`, the fixed policy's count."""
    import torch

    idle = IdleCores()
    if most > 1 and idle.available():
        following = LoadFollowing(most, idle)
        return Threads(following.start(), following)
    count = 1 if most == 1 else fallback  # one pays best even idle, or the load is unseen
    torch.set_num_threads(count)
    return Threads(count)


def threads_per_stage(stages: int, work: int) -> tuple[int, int]:
    """(threads, most) of each stage process of a `processes` job (planned_threads), on
    the caller's share of the cores split among its stages."""
    import torch

    return planned_threads(work, max(1, torch.get_num_threads() // stages), stages)
