"""Starting a run's stages as processes: on one host from run(), or on several by torchrun.

One host (`run_processes`): the caller's process hosts the rendezvous (a TCPStore on a
port the OS picks, or `pipeline.port`), starts one process per stage from a fork server
(a clean Python that imported torch once, so no stage inherits the caller's torch
threads), relays what each stage sends on a pipe of its own to the run's callbacks
(metric points, progress, checkpoints merged from the stages' parts), sets a shared flag
when a cancel is asked, and makes sure no stage process outlives the run: each stage
watches the caller's process and exits when it ends (killed workers included), and the
caller kills what is left when the run ends. A stage process that dies fails the run,
naming the stage: its pipe closes, whatever it was sending.

Several hosts: torchrun.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import select
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aimc_engine import checkpoint
from aimc_engine.errors import RunError
from aimc_engine.models import LayeredNet, assemble
from aimc_engine.pipeline.executor import stage_ranges
from aimc_engine.pipeline.serial import from_bytes
from aimc_engine.pipeline.stage_process import StageRun
from aimc_engine.threads import follow_load, threads_per_stage
from aimc_engine.training import Callbacks, build_run_stage, stage_configs
from aimc_spec.spec import JobSpec, parse_spec

EVENT_POLL_S = 0.2  # how often the launcher looks at its stage processes between events
STOP_POLL_S = 0.5  # how often it asks whether the run should stop
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15  # linux/prctl.h
_STARTING = threading.Lock()


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
    # on one host a bare `cuda` is the first GPU
    devices = [torch.device("cuda:0" if name == "cuda" else name) for name in p.devices]
    cuda = [str(d) for d in devices if d.type == "cuda"]
    repeated = sorted({d for d in cuda if cuda.count(d) > 1})
    if repeated:
        raise RunError(
            f"pipeline.devices: {', '.join(repeated)} given to several stages; NCCL needs a "
            "GPU of its own per stage on one host"
        )
    for i, device in enumerate(devices):
        if device.type == "cuda" and (device.index or 0) >= gpus:
            raise RunError(
                f"pipeline.devices.{i}: {p.devices[i]} does not exist here (torch sees "
                f"{gpus} CUDA devices); NCCL needs one CUDA device per stage"
            )
    return devices


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """While stage processes start, hide the caller's __main__ from multiprocessing.

    A started process normally imports the parent's main module again (`__mp_main__`)
    before it runs its target: a caller's script without an `if __name__ == "__main__"`
    guard would run its whole job again in every stage. A stage needs nothing from it.
    """
    with _STARTING:  # runs started from several threads at once restore the right one
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def _as_stage(stage: int, launcher: int) -> None:
    """Name this process `aimc-stage-<s>` where ps and top show it, SIGKILL it when its
    parent (the fork server) dies (Linux), and end it when the launcher's process ends:
    the fork server outlives a killed launcher while any stage holds its pipe, so its
    death alone is no sign."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(PR_SET_NAME, f"aimc-stage-{stage}".encode()[:15])
    threading.Thread(target=_exit_with, args=(launcher,), daemon=True).start()


def _exit_with(pid: int) -> None:
    """Exit this process once process `pid` has ended (a pidfd where Linux has one,
    else a look every second)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd: poll
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
    select.select([fd], [], [])
    os._exit(1)


@dataclass(frozen=True)
class StageJob:
    """What one stage process is given (picklable: it crosses to the fork server)."""

    spec: dict[str, Any]
    stage: int
    device: str
    backend: str  # nccl on a CUDA device, else gloo
    launcher: int  # the pid the stage lives no longer than
    host: str
    port: int
    threads: int
    most_threads: int  # > 0: AIMC_THREADS=auto, follow the load up to this many
    resume: bytes | None
    uploaded: str | None
    checkpoint_every: int | None


class PipeSink:
    """A stage's events on its own pipe to the launcher; the cancel flag they share."""

    def __init__(self, events: Connection, stop: Any) -> None:
        self.events, self.stop = events, stop

    def metrics(self, record: dict[str, Any]) -> None:
        self.events.send(("metrics", record))

    def progress(self, done: int, total: int, loss: float) -> None:
        self.events.send(("progress", (done, total, loss)))

    def checkpoint(self, done: int, part: dict[str, Any]) -> None:
        self.events.send(("checkpoint", (done, part)))

    def finish(self, output: dict[str, Any]) -> None:
        self.events.send(("final", output))

    def stop_asked(self) -> bool:
        return bool(self.stop.is_set())


def prepare(spec: JobSpec, device: torch.device, uploaded: str | None) -> Any:
    from aimc_engine.runner import prepare_data  # runner imports this module

    return prepare_data(spec, device, Path(uploaded) if uploaded else None)


def stage_main(job: StageJob, events: Connection, stop: Any) -> None:
    """A stage process's body: join the others, run the stage, report, leave."""
    _as_stage(job.stage, job.launcher)
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
            job.backend, store=store, rank=job.stage, world_size=spec.pipeline.stages,
            timeout=timeout,
        )  # fmt: skip
        data = prepare(spec, device, job.uploaded)
        stage = StageRun(spec, data, job.stage, device, PipeSink(events, stop), job.resume)
        if job.most_threads:  # AIMC_THREADS=auto: the load looked at once set up, as a run's
            stage.following = follow_load(job.most_threads, job.threads).following
        stage.finish(stage.run(job.checkpoint_every))
    except Exception as exc:  # the launcher reports it (and ends the other stages)
        named = isinstance(exc, RunError)
        events.send(("error", str(exc) if named else f"stage {job.stage}: {exc!r}"))
        events.close()
        os._exit(3)
    dist.destroy_process_group()
    events.close()


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


def _rendezvous(spec: JobSpec) -> dist.TCPStore:
    """The store the stages meet at, on loopback: `pipeline.port`, or one the OS picks
    (so two runs at once never collide)."""
    p = spec.pipeline
    try:
        return dist.TCPStore(
            "127.0.0.1",
            p.port or 0,
            None,
            True,
            timeout=datetime.timedelta(seconds=p.timeout_s),
            wait_for_workers=False,
        )
    except (RuntimeError, OSError) as exc:
        raise RunError(
            f"pipeline.port: {p.port} cannot be listened on here ({exc}); leave it out to "
            "take a free port"
        ) from None


def run_processes(
    spec: JobSpec,
    callbacks: Callbacks,
    *,
    resume: bytes | None = None,
    uploaded: Path | None = None,
    work: int = 0,
) -> dict[str, Any]:
    """Run the job with one process per stage on this host; the stage 0's output (result,
    metrics, weights, timeline) once every stage has finished. `work`: the run's work per
    operation, which sets each stage's threads (threads_per_stage)."""
    devices = placement(spec)
    stages = spec.pipeline.stages
    store = _rendezvous(spec)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["aimc_engine.pipeline.launch"])
    stop = ctx.Event()
    pipes = [ctx.Pipe(duplex=False) for _ in range(stages)]  # (launcher's end, stage's)
    jobs = [
        StageJob(
            spec.model_dump(mode="json"),
            s,
            str(devices[s]),
            "nccl" if devices[s].type == "cuda" else "gloo",
            os.getpid(),
            "127.0.0.1",
            store.port,
            *threads_per_stage(stages, work),
            resume,
            str(uploaded) if uploaded else None,
            callbacks.checkpoint_every if callbacks.on_checkpoint else None,
        )
        for s in range(stages)
    ]
    procs = [
        ctx.Process(target=stage_main, args=(j, pipes[j.stage][1], stop), daemon=True) for j in jobs
    ]
    try:
        with _without_main():
            for proc in procs:
                proc.start()
        for _, stage_end in pipes:
            stage_end.close()  # the stage holds it alone: its death closes the pipe
        return _relay(spec, procs, [ours for ours, _ in pipes], stop, callbacks)
    finally:
        for proc in procs:
            if proc.pid is None:  # never started
                continue
            if proc.is_alive():
                proc.kill()
            proc.join()
        del store


def _relay(
    spec: JobSpec, procs: list[Any], pipes: list[Connection], stop: Any, callbacks: Callbacks
) -> dict[str, Any]:
    """Pass the stages' events to the callbacks until stage 0's output arrives; RunError
    naming the stage if a stage process fails or dies."""
    checkpoints = Checkpoints(spec)
    handlers: dict[str, Callable[[Any], None]] = {}
    output: dict[str, Any] = {}
    errors: list[str] = []
    if callbacks.on_metrics:
        handlers["metrics"] = callbacks.on_metrics
    if callbacks.on_progress:
        on_progress = callbacks.on_progress
        handlers["progress"] = lambda args: on_progress(*args)
    if callbacks.on_checkpoint:
        on_checkpoint = callbacks.on_checkpoint

        def on_part(args: Any) -> None:
            blob = checkpoints.add(*args)
            if blob is not None:
                on_checkpoint(blob)

        handlers["checkpoint"] = on_part
    handlers["final"] = output.update
    handlers["error"] = errors.append
    open_pipes = {pipe: s for s, pipe in enumerate(pipes)}
    last_stop_check = 0.0
    while open_pipes:
        for pipe in wait(list(open_pipes), timeout=EVENT_POLL_S):
            assert isinstance(pipe, Connection)
            try:
                kind, payload = pipe.recv()
            except EOFError:  # the stage has exited, or died (mid-message, even)
                s = open_pipes.pop(pipe)
                _check_exit(s, procs[s], errors)
                continue
            handlers.get(kind, lambda _: None)(payload)
            if output:
                return output
        now = time.monotonic()
        if callbacks.should_stop and now - last_stop_check >= STOP_POLL_S:
            last_stop_check = now
            if callbacks.should_stop():
                stop.set()
    raise RunError(errors[0] if errors else "the stage processes ended without a result")


def _check_exit(s: int, proc: Any, errors: list[str]) -> None:
    """Stage s's pipe has closed: RunError if its process failed (a signal names the
    stage; else the error it sent, or another stage's about losing it)."""
    proc.join()
    code = proc.exitcode
    if code is not None and code < 0:
        raise RunError(f"stage {s}: its process was killed by signal {-code}")
    if code:
        raise RunError(errors[0] if errors else f"stage {s}: its process exited with code {code}")
