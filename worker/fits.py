"""Whether a job fits this worker before it starts: its estimated peak memory
(aimc_spec.resources) against the job's allowance here and the machine's free memory.

The API admits by its own ceiling (max_job_memory_mib), which knows nothing of the
machine a worker runs on: a worker with a smaller allowance (AIMC_JOB_MAX_MEMORY_MIB)
or a machine already short of memory would otherwise start the job only to see it fail
at its memory limit minutes later, or wake the kernel's OOM killer, which may pick the
Redis or the API instead of the job. A job that cannot fit fails at once, naming both
figures (docs/lab-server.md).
"""

from __future__ import annotations

from pathlib import Path

from aimc_spec.cost import data_shape, npz_train_shape
from aimc_spec.resources import resources
from aimc_spec.spec import JobSpec

MEMINFO = Path("/proc/meminfo")


def available_bytes(meminfo: Path = MEMINFO) -> int | None:
    """The memory the kernel could give a new process now without swapping
    (MemAvailable), or None where /proc/meminfo is absent (not Linux)."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    found = next((x for x in lines if x.startswith("MemAvailable:")), None)
    return None if found is None else int(found.split()[1]) * 1024


def misfit(
    spec: JobSpec, uploaded: Path | None, allowance_mib: int, meminfo: Path = MEMINFO
) -> str | None:
    """Why the job cannot run here (its estimate over this worker's allowance or the
    machine's available memory), or None when it fits or its data's size is unknown."""
    shape = npz_train_shape(str(uploaded)) if uploaded is not None else None
    known = data_shape(spec, None if shape is None else (shape[0], shape[1:]))
    if known is None:
        return None
    estimate = resources(spec, *known)
    need = estimate.peak_bytes
    if need > allowance_mib * 2**20:
        return (
            f"estimated peak memory {need / 2**20:.0f} MiB ({estimate.describe()}) exceeds "
            f"this worker's limit of {allowance_mib} MiB per job (AIMC_JOB_MAX_MEMORY_MIB); "
            "use a smaller model, micro-batch or dataset, or ask the operator"
        )
    free = available_bytes(meminfo)
    if free is not None and need > free:
        return (
            f"estimated peak memory {need / 2**20:.0f} MiB ({estimate.describe()}) exceeds "
            f"the {free / 2**20:.0f} MiB this worker's machine has available now; submit it "
            "again when other jobs have finished, or use a smaller model"
        )
    return None
