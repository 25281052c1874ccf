"""How many of this process's cores other processes leave idle: what a run that follows
the machine's load (AIMC_THREADS=auto, aimc_engine/threads.py) sizes its threads by.

Linux counts every core's busy and idle time in /proc/stat (in USER_HZ ticks, 100 per
second). Between two readings, the cores this process may run on (its CPU affinity)
were busy for some core-seconds; this process itself used `time.process_time()` of
them (all its threads); the rest is other processes' load:

    others = (busy core-seconds - own CPU seconds) / wall seconds
    idle   = cores - others

So a run on two spinning threads does not mistake its own work for someone else's. A
container's cpuset (--cpuset-cpus) narrows the affinity; its CPU quota (docker --cpus,
a Kubernetes limit) does not, so `quota_cores` reads it from cgroup v2's cpu.max, else
from cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us (at the cgroup mount's root, as a
container sees its own). Where
/proc/stat lacks a line for one of our cores (LXCFS renumbers them, an offline core),
the readings would miss that core's load: `available()` is then False.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"
CPU_V1 = Path("/sys/fs/cgroup/cpu")  # cgroup v1: cpu.cfs_quota_us (-1: none), cpu.cfs_period_us
# the fields of a `cpuN` line that are not idle time: user nice system (idle iowait) irq
# softirq steal; guest time is counted inside user and nice already
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class Reading:
    """One look at the clocks: wall and own CPU seconds, busy seconds of our cores."""

    wall: float
    own: float
    busy: float


class IdleCores:
    """Readings of /proc/stat restricted to `cpus` (this process's affinity by default);
    `available()` is False where there is no /proc/stat (not Linux)."""

    def __init__(self, cpus: set[int] | None = None, stat: Path = PROC_STAT) -> None:
        self.cpus = cpus if cpus is not None else _affinity()
        self.stat = stat
        self.tick = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01

    def available(self) -> bool:
        """Whether /proc/stat exists and has a line for each of our cores."""
        return self.stat.is_file() and set(self._busy_ticks()) >= self.cpus

    def read(self) -> Reading:
        """The clocks now."""
        busy = sum(self._busy_ticks().values())
        return Reading(time.monotonic(), time.process_time(), busy * self.tick)

    def _busy_ticks(self) -> dict[int, int]:
        """Busy ticks so far of each of our cores that /proc/stat lists."""
        ticks = {}
        for line in self.stat.read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in self.cpus:
                ticks[int(name[3:])] = sum(int(fields[i]) for i in BUSY_FIELDS if i < len(fields))
        return ticks

    def between(self, before: Reading, after: Reading) -> float:
        """Cores other processes left idle between two readings (0 to len(cpus))."""
        wall = after.wall - before.wall
        if wall <= 0:
            return float(len(self.cpus))
        others = (after.busy - before.busy - (after.own - before.own)) / wall
        return min(float(len(self.cpus)), max(0.0, len(self.cpus) - others))


def quota_cores(cpu_max: Path = CPU_MAX, cpu_v1: Path = CPU_V1) -> int | None:
    """The cores this process's cgroup may use by its CPU quota, rounded up; None where
    there is no quota (or no file to say so): cgroup v2's cpu.max, else v1's CFS quota."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (cpu_v1 / "cpu.cfs_quota_us").read_text().strip()
            period = (cpu_v1 / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if not (quota.isdigit() and period.isdigit()) or int(period) == 0:
        return None  # no quota ("max", "-1") or nothing a quota could be read from
    return max(1, math.ceil(int(quota) / int(period)))


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return set(range(os.cpu_count() or 1))
