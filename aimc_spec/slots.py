"""How many of a worker host's process slots a job takes (worker_slots in the settings).

A simulated job runs in one process, a job with `pipeline.executor: processes` in one
process per stage. The API refuses a job that needs more slots than a worker host has
(it could never start), and a worker holds a job's slots while it runs (worker/slots.py).
"""

from __future__ import annotations

from aimc_spec.spec import JobSpec


def slots_for(spec: JobSpec) -> int:
    """Processes the job runs: one per stage on the processes executor, else one."""
    p = spec.pipeline
    return p.stages if p.executor == "processes" else 1


def slots_problem(spec: JobSpec, slots: int) -> tuple[str, str] | None:
    """(field, message) if the job needs more process slots than a worker host's `slots`."""
    need = slots_for(spec)
    if need <= slots:
        return None
    return (
        "pipeline.stages",
        f"{need} stage processes, but a worker host runs at most {slots} (the worker_slots "
        "setting, AIMC_WORKER_SLOTS); use fewer stages or executor: simulated",
    )
