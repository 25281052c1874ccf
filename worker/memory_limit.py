"""The operating-system memory limit of each job's process (RLIMIT_AS).

The API admits a job by an estimate of its peak memory (aimc_spec.resources); what an
estimate misses must still not take the machine: a worker once tried to allocate 17 GB
for one job. Each job's process (forked for it alone, worker/fresh_process.py) caps
its address space at what it maps when it starts plus the job's allowance, so an
allocation past it fails inside the job (torch's allocator and numpy raise) instead of
waking the kernel's OOM killer: the job fails naming the limit, and the worker, whose
own process is not limited, takes the next one.
"""

from __future__ import annotations

import contextlib
import ctypes
import resource
from pathlib import Path

_limit_mib: int | None = None  # this process's allowance, once limit_memory set it


def mapped_bytes() -> int:
    """The address space this process maps now (VmSize; 0 where /proc is absent)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    line = next((x for x in status.splitlines() if x.startswith("VmSize:")), "VmSize: 0 kB")
    return int(line.split()[1]) * 1024


def limit_memory(mib: int) -> None:
    """Cap this process's address space at what it maps now plus `mib` MiB (soft and
    hard: the job cannot raise it again). The forked process already maps the
    worker's imports (torch, matplotlib), which the job does not pay for twice."""
    global _limit_mib
    _few_malloc_arenas()
    cap = mapped_bytes() + mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    _limit_mib = mib


M_ARENA_MAX = -8  # glibc's mallopt parameter


def _few_malloc_arenas() -> None:
    """glibc reserves 64 MiB of address space per malloc arena, up to 8 per core: on a
    64-core machine the job's torch threads alone would reserve 4 GiB of its limit
    without using it. Four arenas serve the job's threads well (glibc only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 4)


ALLOCATION_FAILED = ("can't allocate memory", "not enough memory", "Unable to allocate")


def describe_failure(exc: BaseException) -> str:
    """A failed job's error text: the exception, and the limit when it was an allocation
    past the process's memory limit."""
    text = f"{type(exc).__name__}: {exc}"
    ran_out = isinstance(exc, MemoryError) or any(s in str(exc) for s in ALLOCATION_FAILED)
    if _limit_mib is not None and ran_out:
        return (
            f"the job needed more memory than its limit of {_limit_mib} MiB "
            f"(AIMC_JOB_MAX_MEMORY_MIB) and was stopped; use a smaller model, micro-batch "
            f"or dataset ({text[:300]})"
        )
    return text
