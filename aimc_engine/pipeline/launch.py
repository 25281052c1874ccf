"""Starting a run's stages as processes: on one host from run(), or on several by torchrun.

One host (`run_processes`): the caller's process hosts the rendezvous (a TCPStore on a
port the OS picks, or `pipeline.port`), starts one process per stage from a fork server
(a clean Python that imported torch once, so no stage inherits the caller's torch
threads), relays their events to the run's callbacks (metric points, progress,
checkpoints merged from the stages' parts), sets a shared flag when a cancel is asked,
and makes sure no stage process outlives the run: each dies with its fork server,
which dies with the caller, and the caller kills what is left when the run ends.
A stage process that dies fails the run, naming the stage.

Several hosts (`run_torchrun_rank`): torchrun starts one process per stage on every
host (`--nproc-per-node`), with RANK and WORLD_SIZE set; rank s runs stage s and rank
0 writes the run's folder. docs/distributed.md gives the command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import queue
import signal
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aimc_engine import checkpoint
from aimc_engine.errors import RunError
from aimc_engine.models import LayeredNet, assemble
from aimc_engine.pipeline.executor import stage_ranges
from aimc_engine.pipeline.stage_process import StageRun, from_bytes
from aimc_engine.training import Callbacks, build_run_stage, stage_configs
from aimc_spec.spec import JobSpec, parse_spec

EVENT_POLL_S = 0.2  # how often the launcher looks at its stage processes between events
STOP_POLL_S = 0.5  # how often it asks whether the run should stop
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15  # linux/prctl.h


def placement(spec: JobSpec) -> list[torch.device]:
    """Each stage's torch device: `pipeline.devices`, or one GPU per stage where there
    are enough and `device` allows, else the CPU. RunError (naming the field) for a
    device this machine does not have."""
    p = spec.pipeline
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if p.devices is None:
        if spec.device == "cuda" and gpus < p.stages:
            raise RunError(
                f"pipeline.devices: device is 'cuda' but {gpus} GPUs for {p.stages} stages; "
                "list the devices per stage (pipeline.devices) or use device: auto"
            )
        if spec.device != "cpu" and gpus >= p.stages:
            return [torch.device(f"cuda:{s}") for s in range(p.stages)]
        return [torch.device("cpu")] * p.stages
    devices = [torch.device(name) for name in p.devices]
    for i, device in enumerate(devices):
        if device.type == "cuda":
            index = device.index or 0
            if index >= gpus:
                raise RunError(
                    f"pipeline.devices.{i}: {p.devices[i]} does not exist here (torch sees "
                    f"{gpus} CUDA devices); NCCL needs one CUDA device per stage"
                )
    return devices


def threads_per_stage(stages: int) -> int:
    """Intra-op threads of each stage process: the caller's share, split among its stages."""
    return max(1, torch.get_num_threads() // stages)


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """While stage processes start, hide the caller's __main__ from multiprocessing.

    A started process normally imports the parent's main module again (`__mp_main__`)
    before it runs its target: a caller's script without an `if __name__ == "__main__"`
    guard would run its whole job again in every stage. A stage needs nothing from it.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _as_stage(stage: int) -> None:
    """SIGKILL this process when its parent (the fork server) dies, and name it
    `aimc-stage-<s>` where ps and top show it (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(PR_SET_NAME, f"aimc-stage-{stage}".encode()[:15])


@dataclass(frozen=True)
class StageJob:
    """What one stage process is given (picklable: it crosses to the fork server)."""

    spec: dict[str, Any]
    stage: int
    device: str
    host: str
    port: int
    threads: int
    resume: bytes | None
    uploaded: str | None
    checkpoint_every: int | None


class QueueSink:
    """A stage's events to the launcher's queue; the cancel flag it shares."""

    def __init__(self, stage: int, events: Any, stop: Any) -> None:
        self.stage, self.events, self.stop = stage, events, stop

    def metrics(self, record: dict[str, Any]) -> None:
        self.events.put(("metrics", self.stage, record))

    def progress(self, done: int, total: int, loss: float) -> None:
        self.events.put(("progress", self.stage, (done, total, loss)))

    def checkpoint(self, done: int, part: dict[str, Any]) -> None:
        self.events.put(("checkpoint", self.stage, (done, part)))

    def finish(self, output: dict[str, Any]) -> None:
        self.events.put(("final", self.stage, output))

    def stop_asked(self) -> bool:
        return bool(self.stop.is_set())


def _prepare(spec: JobSpec, device: torch.device, uploaded: str | None) -> Any:
    from aimc_engine.runner import prepare_data  # runner imports this module

    return prepare_data(spec, device, Path(uploaded) if uploaded else None)


def stage_main(job: StageJob, events: Any, stop: Any) -> None:
    """A stage process's body: join the others, run the stage, report, leave."""
    _as_stage(job.stage)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one host: loopback only
    torch.set_num_threads(job.threads)
    spec = parse_spec(job.spec)
    try:
        device = torch.device(job.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        timeout = datetime.timedelta(seconds=spec.pipeline.timeout_s)
        store = dist.TCPStore(job.host, job.port, is_master=False, timeout=timeout)
        dist.init_process_group(
            spec.pipeline.backend,
            store=store,
            rank=job.stage,
            world_size=spec.pipeline.stages,
            timeout=timeout,
        )
        sink = QueueSink(job.stage, events, stop)
        data = _prepare(spec, device, job.uploaded)
        stage = StageRun(spec, data, job.stage, device, sink, job.resume)
        _finish(stage, stage.run(job.checkpoint_every), sink)
    except RunError as exc:
        events.put(("error", job.stage, str(exc)))
        events.close()
        events.join_thread()
        os._exit(3)
    except Exception as exc:
        events.put(("error", job.stage, f"stage {job.stage}: {type(exc).__name__}: {exc}"))
        events.close()
        events.join_thread()
        os._exit(3)
    dist.destroy_process_group()
    events.close()
    events.join_thread()


def _finish(stage: StageRun, part: dict[str, Any], sink: Any) -> None:
    """Every stage's final part to stage 0, which hands the run's output to its sink."""
    parts: list[Any] | None = [None] * stage.stages if stage.first else None
    dist.gather_object(part, parts, dst=0)
    if parts is not None:
        sink.finish(stage.output(parts))


class Checkpoints:
    """Stages' checkpoint parts, merged into one checkpoint once all have arrived."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.parts: dict[int, dict[int, dict[str, Any]]] = {}

    def add(self, done: int, part: dict[str, Any]) -> bytes | None:
        """The checkpoint after `done` micro-batches once its last part arrives."""
        parts = self.parts.setdefault(done, {})
        parts[part["stage"]] = from_bytes(part["bytes"])
        if len(parts) < self.spec.pipeline.stages:
            return None
        del self.parts[done]
        stages = [parts[s] for s in range(self.spec.pipeline.stages)]
        model: dict[str, Any] = {}
        for part_s in stages:
            model.update(part_s["model"])
        first, last = stages[0], stages[-1]
        return checkpoint.dump(
            checkpoint.Checkpoint(
                model=model,
                updates=[p["updates"] for p in stages],
                data_gen=first["data_gen"],
                noise_gens=[p["noise_gen"] for p in stages],
                observe_gens=[p["observe_gen"] for p in stages],
                order=first["order"],
                metrics=first["metrics"],
                running=last["running"],
                done=first["done"],
                executed=[p["executed"] for p in stages],
                wall=first["wall"],
            ),
            self.spec,
        )


def whole_model(spec: JobSpec, data: Any, state: dict[str, Any]) -> LayeredNet:
    """The trained network in this process, from the stages' final states."""
    _, configs = stage_configs(spec, torch.device("cpu"))
    ranges = stage_ranges(spec)
    stages = [build_run_stage(spec, data, s, ranges, configs[s])[0] for s in range(len(ranges))]
    model = assemble(stages)
    model.load_state_dict(state)
    return model


def run_processes(
    spec: JobSpec,
    callbacks: Callbacks,
    *,
    resume: bytes | None = None,
    uploaded: Path | None = None,
) -> dict[str, Any]:
    """Run the job with one process per stage on this host; the stage 0's output (result,
    metrics, weights, timeline) once every stage has finished."""
    devices = placement(spec)
    p = spec.pipeline
    timeout = datetime.timedelta(seconds=p.timeout_s)
    try:
        store = dist.TCPStore(
            "127.0.0.1", p.port or 0, None, True, timeout=timeout, wait_for_workers=False
        )
    except (RuntimeError, OSError) as exc:
        raise RunError(
            f"pipeline.port: {p.port} cannot be listened on here ({exc}); leave it out to "
            "take a free port"
        ) from None
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["aimc_engine.pipeline.launch"])
    events, stop = ctx.Queue(), ctx.Event()
    every = callbacks.checkpoint_every if callbacks.on_checkpoint else None
    jobs = [
        StageJob(
            spec.model_dump(mode="json"),
            s,
            str(devices[s]),
            "127.0.0.1",
            store.port,
            threads_per_stage(p.stages),
            resume,
            str(uploaded) if uploaded else None,
            every,
        )
        for s in range(p.stages)
    ]
    procs = [ctx.Process(target=stage_main, args=(job, events, stop), daemon=True) for job in jobs]
    try:
        with _without_main():
            for proc in procs:
                proc.start()
        return _relay(spec, procs, events, stop, callbacks)
    finally:
        for proc in procs:
            if proc.pid is None:  # never started
                continue
            if proc.is_alive():
                proc.kill()
            proc.join()
        del store


def _relay(
    spec: JobSpec, procs: list[Any], events: Any, stop: Any, callbacks: Callbacks
) -> dict[str, Any]:
    """Pass the stages' events to the callbacks until stage 0's output arrives."""
    checkpoints = Checkpoints(spec)
    handlers: dict[str, Callable[[int, Any], None]] = {}
    output: dict[str, Any] = {}
    errors: list[str] = []
    if callbacks.on_metrics:
        on_metrics = callbacks.on_metrics
        handlers["metrics"] = lambda s, record: on_metrics(record)
    if callbacks.on_progress:
        on_progress = callbacks.on_progress
        handlers["progress"] = lambda s, args: on_progress(*args)
    if callbacks.on_checkpoint:
        on_checkpoint = callbacks.on_checkpoint

        def on_part(s: int, args: Any) -> None:
            blob = checkpoints.add(*args)
            if blob is not None:
                on_checkpoint(blob)

        handlers["checkpoint"] = on_part
    handlers["final"] = lambda s, out: output.update(out)
    handlers["error"] = lambda s, message: errors.append(message)
    last_stop_check = 0.0
    while True:
        try:
            kind, stage, payload = events.get(timeout=EVENT_POLL_S)
        except queue.Empty:
            pass
        else:
            if kind in handlers:
                handlers[kind](stage, payload)
            if output:
                return output
        now = time.monotonic()
        if callbacks.should_stop and now - last_stop_check >= STOP_POLL_S:
            last_stop_check = now
            if callbacks.should_stop():
                stop.set()
        dead = [
            (s, proc.exitcode) for s, proc in enumerate(procs) if proc.exitcode not in (None, 0)
        ]
        if dead and events.empty():
            if errors:
                raise RunError(errors[0])
            s, code = dead[0]
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise RunError(f"stage {s}: its process {how}")
        if all(proc.exitcode == 0 for proc in procs) and events.empty():
            raise RunError("the stage processes ended without a result")


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
    """Rank `rank`'s device: pipeline.devices[rank], else this host's GPU LOCAL_RANK where
    `device` allows and it exists, else the CPU."""
    p = spec.pipeline
    if p.devices is not None:
        return torch.device(p.devices[rank])
    local = int(os.environ.get("LOCAL_RANK", "0"))
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
    dist.init_process_group(p.backend, timeout=timeout)
    try:
        sink = LocalSink(out, progress if rank in (0, p.stages - 1) else None)
        data = _prepare(spec, device, None)
        stage = StageRun(spec, data, rank, device, sink)
        _finish(stage, stage.run(None), sink)
    finally:
        dist.destroy_process_group()
    return sink.output if rank == 0 else None
