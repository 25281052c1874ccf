"""A run across hosts: torchrun starts one process per stage on every host.

torchrun (`--nnodes`, `--nproc-per-node`, a c10d rendezvous endpoint) sets RANK and
WORLD_SIZE; `aimc run` then runs stage RANK (`run_torchrun_rank`) and rank 0 writes the
run's folder. docs/distributed.md gives the command line and what must be reachable.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from aimc_engine.errors import RunError
from aimc_engine.pipeline.launch import prepare
from aimc_engine.pipeline.stage_process import StageRun
from aimc_spec.spec import JobSpec


class LocalSink:
    """A torchrun rank's events on its own host: rank 0 appends metric points to
    metrics.jsonl (and prints them), the last rank shows progress; no cancel, no
    checkpoints (a run across hosts is resumed by running it again)."""

    def __init__(self, out: Path, progress: Any) -> None:
        self.out, self.progress_bar = out, progress
        self.output: dict[str, Any] = {}

    def metrics(self, record: dict[str, Any]) -> None:
        from aimc_engine.artifacts import append_metrics_jsonl

        append_metrics_jsonl(self.out / "metrics.jsonl", record)
        if self.progress_bar:
            self.progress_bar.on_metrics(record)

    def progress(self, done: int, total: int, loss: float) -> None:
        if self.progress_bar:
            self.progress_bar.on_progress(done, total, loss)

    def checkpoint(self, done: int, part: dict[str, Any]) -> None:
        raise RuntimeError("a torchrun run takes no checkpoints")

    def finish(self, output: dict[str, Any]) -> None:
        self.output = output

    def stop_asked(self) -> bool:
        return False


def torchrun_rank() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) when this process was started by torchrun, else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def torchrun_device(spec: JobSpec, rank: int) -> torch.device:
    """Rank `rank`'s device: pipeline.devices[rank] (a bare `cuda`: this host's GPU
    LOCAL_RANK), else that GPU where `device` allows and it exists, else the CPU."""
    p = spec.pipeline
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if p.devices is not None:
        name = p.devices[rank]
        device = torch.device(f"cuda:{local}" if name == "cuda" else name)
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device.type == "cuda" and (device.index or 0) >= gpus:
            raise RunError(
                f"pipeline.devices.{rank}: {name} does not exist on this host (torch sees "
                f"{gpus} CUDA devices)"
            )
        return device
    if spec.device != "cpu" and torch.cuda.is_available() and local < torch.cuda.device_count():
        return torch.device(f"cuda:{local}")
    if spec.device == "cuda":
        raise RunError(f"device: 'cuda' but this host has no CUDA device {local} (LOCAL_RANK)")
    return torch.device("cpu")


def run_torchrun_rank(spec: JobSpec, out: Path, progress: Any) -> dict[str, Any] | None:
    """This torchrun rank's stage; rank 0 returns the run's output (the others None)."""
    rank_world = torchrun_rank()
    assert rank_world is not None
    rank, world = rank_world
    p = spec.pipeline
    if p.executor != "processes":
        raise RunError("pipeline.executor: torchrun runs stages as processes; set it to processes")
    if world != p.stages:
        raise RunError(
            f"pipeline.stages: {p.stages} stages, but torchrun started {world} processes; "
            "start --nnodes x --nproc-per-node = pipeline.stages"
        )
    device = torchrun_device(spec, rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=p.timeout_s)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    try:
        sink = LocalSink(out, progress if rank in (0, p.stages - 1) else None)
        data = prepare(spec, device, None)
        stage = StageRun(spec, data, rank, device, sink)
        stage.finish(stage.run(None))
    finally:
        dist.destroy_process_group()
    return sink.output if rank == 0 else None
