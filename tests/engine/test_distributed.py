"""The processes executor against the simulator: the same numbers, bit for bit, on CPU.

Every stage runs in a process of its own (gloo over loopback) and draws from its own
random streams, so losses at every metric point, the whole metrics history and the
final weights must equal the single-process run's exactly, for every schedule, every
update mode (with noisy IO, device-to-device and cycle-to-cycle noise, write noise)
and for 2 and 3 processes. Both runs use one intra-op thread: torch's reductions over
large matrices are split by thread count, so equal threads give equal floats.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from safetensors.torch import load_file

from aimc_engine.runner import Callbacks, RunError, RunOutput, run
from aimc_spec.spec import SpecError, parse_spec

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

NOISY_DEVICE = {
    "model": "softbounds",
    "states": 400,
    "c2c_noise": 0.3,
    "d2d_variation": 0.2,
    "d2d_up_down": 0.05,
    "write_noise_std": 0.5,
}
NOISY_IO = {"perfect": False, "out_noise": 0.04}
MODES: dict[str, dict[str, Any]] = {
    "digital": {"analog": {"enabled": False}, "optimizer": {"algorithm": "sgd", "lr": 0.1}},
    **{
        mode: {
            "analog": {"update": mode, "device": NOISY_DEVICE, "io": NOISY_IO},
            "optimizer": {"algorithm": "analog_sgd", "lr": 0.1},
        }
        for mode in ("expected", "rounded", "pulsed")
    },
}
SCHEDULES: dict[str, dict[str, Any]] = {
    "gpipe": {"schedule": "gpipe"},
    "1f1b": {"schedule": "1f1b"},
    "async": {"schedule": "async"},
    "async_stash": {"schedule": "async_stash"},
    "async+lr_scale": {"schedule": "async", "compensation": {"mode": "lr_scale", "warmup": 8}},
    "async+accumulate": {"schedule": "async", "compensation": {"mode": "accumulate", "k": 2}},
}
# every schedule with every mode on 2 processes; on 3, every schedule and every mode once
CASES = [(schedule, mode, 2) for schedule in SCHEDULES for mode in MODES] + [
    (schedule, list(MODES)[i % len(MODES)], 3) for i, schedule in enumerate(SCHEDULES)
]


def job(schedule: str, mode: str, stages: int, **pipeline: Any) -> dict[str, Any]:
    spec = {
        "device": "cpu",
        "seed": 3,
        "dataset": {"name": "digits"},
        "model": {"kind": "mlp", "hidden": [24, 16], "activation": "tanh"},
        "training": {"steps": 12, "micro_batch_size": 8, "eval_every": 5},
        "pipeline": {"stages": stages, "micro_batches": 2, **SCHEDULES[schedule], **pipeline},
    }
    return copy.deepcopy({**spec, **MODES[mode]})


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def without_wall(records: list[dict[str, Any]]) -> str:
    """The records without their wall clock, as JSON (where NaN equals NaN)."""
    return json.dumps([{k: v for k, v in r.items() if k != "wall_s"} for r in records])


def comparable(result: dict[str, Any]) -> str:
    """The result without what a clock or the executor decides, as JSON."""
    kept = {k: v for k, v in result.items() if k not in ("wall_seconds", "processes", "spec")}
    return json.dumps(kept, sort_keys=True)


def assert_same_run(sim: RunOutput, proc: RunOutput) -> None:
    assert without_wall(proc.metrics) == without_wall(sim.metrics)
    assert comparable(proc.result) == comparable(sim.result)
    ours, theirs = proc.model.state_dict(), sim.model.state_dict()
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


@pytest.mark.parametrize(("schedule", "mode", "stages"), CASES)
def test_processes_reproduce_the_simulator_bit_for_bit(
    schedule: str, mode: str, stages: int
) -> None:
    spec = job(schedule, mode, stages)
    sim = run(parse_spec(spec))
    proc = run(parse_spec({**spec, "pipeline": {**spec["pipeline"], "executor": "processes"}}))
    assert proc.result["status"] == "succeeded"
    assert len(sim.metrics) >= 3  # the start, points on the way, the end
    assert_same_run(sim, proc)
    processes = proc.result["processes"]
    assert [p["stage"] for p in processes] == list(range(stages))
    assert all(p["actions"] > 0 and p["peak_rss_mb"] > 0 for p in processes)


# the other analog algorithms, each with its own state on the tiles' layers
ALGORITHMS: dict[str, dict[str, Any]] = {
    "agad": {
        "algorithm": "agad",
        "lr": 0.1,
        "agad": {"in_chop_prob": 0.3, "in_chop_random": True, "transfer_columns": 5},
    },
    "chopped_ttv2": {
        "algorithm": "chopped_ttv2",
        "lr": 0.1,
        "chopped_ttv2": {"in_chop_prob": 0.5, "out_chop_prob": 0.5, "transfer_columns": 4},
    },
    "ttv2": {"algorithm": "ttv2", "lr": 0.1, "ttv2": {"transfer_columns": 4, "momentum": 0.3}},
    "residual_learning": {
        "algorithm": "residual_learning",
        "lr": 0.1,
        "residual_learning": {"transfer_every": 2},
    },
    "mixed_precision": {
        "algorithm": "mixed_precision",
        "lr": 0.1,
        "mixed_precision": {
            "n_x_bins": 8,
            "n_d_bins": 8,
            "random_row": True,
            "n_rows_per_transfer": 5,
        },
    },
}


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_processes_reproduce_the_simulator_for_every_algorithm(algorithm: str) -> None:
    spec = job("1f1b", "pulsed", 2)
    spec["optimizer"] = copy.deepcopy(ALGORITHMS[algorithm])
    sim = run(parse_spec(spec))
    proc = run(parse_spec(processes(spec)))
    assert proc.result["status"] == "succeeded"
    assert_same_run(sim, proc)


def processes(spec: dict[str, Any], **pipeline: Any) -> dict[str, Any]:
    return {**spec, "pipeline": {**spec["pipeline"], "executor": "processes", **pipeline}}


def test_a_divergence_fails_as_in_the_simulator() -> None:
    """The last stage's non-finite loss stops every stage; the metric points before it,
    the error and stage 0's progress at that moment are the simulator's."""
    spec = job("async", "digital", 3)
    spec["optimizer"]["lr"] = 1000.0
    spec["model"] = {"kind": "mlp", "activation": "relu", "hidden": [64, 64]}
    sim = run(parse_spec(spec))
    proc = run(parse_spec(processes(spec)))
    assert sim.result["status"] == proc.result["status"] == "failed"
    assert "diverged" in proc.result["error"]
    assert without_wall(proc.metrics) == without_wall(sim.metrics)
    assert comparable(proc.result) == comparable(sim.result)


def test_a_resumed_run_equals_the_uninterrupted_one() -> None:
    """Each stage hands its part of a checkpoint; the merged checkpoint continues the run
    exactly, in processes and in the simulator alike."""
    spec = job("gpipe", "pulsed", 3)
    spec["training"]["steps"] = 8
    taken: list[bytes] = []
    callbacks = Callbacks(on_checkpoint=taken.append, checkpoint_every=4)
    full = run(parse_spec(processes(spec)), callbacks)
    assert len(taken) == 3  # after 4, 8 and 12 of the 16 micro-batches
    resumed = run(parse_spec(processes(spec)), resume=taken[1])
    assert without_wall(resumed.metrics) == without_wall(full.metrics)
    assert comparable(resumed.result) == comparable(full.result)
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    sim = run(parse_spec(spec))
    assert_same_run(sim, full)


def test_a_cancel_stops_every_stage_process() -> None:
    spec = job("async", "expected", 2)
    spec["training"] = {"steps": 100_000, "micro_batch_size": 8, "eval_every": 50}
    points: list[dict[str, Any]] = []
    callbacks = Callbacks(on_metrics=points.append, should_stop=lambda: len(points) >= 2)
    proc = run(parse_spec(processes(spec)), callbacks)
    assert proc.result["status"] == "cancelled"
    assert 0 < proc.result["samples"] < 100_000 * 8
    assert all(not psutil.pid_exists(p["pid"]) for p in proc.result["processes"])
    assert stage_processes() == {}


def stage_processes() -> dict[int, int]:
    """Stage -> pid of this process's stage processes (named `aimc-stage-<s>`)."""
    found = {}
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            name = process.name()
            if name.startswith("aimc-stage-") and process.status() != psutil.STATUS_ZOMBIE:
                found[int(name.rsplit("-", 1)[1])] = process.pid
    return found


def test_a_killed_stage_fails_the_run_naming_it() -> None:
    spec = job("async", "digital", 3)
    spec["training"] = {"steps": 100_000, "micro_batch_size": 8, "eval_every": 50}
    killed: list[int] = []

    def kill_the_middle_stage(record: dict[str, Any]) -> None:
        if not killed:
            stages = stage_processes()
            assert sorted(stages) == [0, 1, 2]
            os.kill(stages[1], signal.SIGKILL)
            killed.append(stages[1])

    with pytest.raises(RunError, match="stage 1"):
        run(parse_spec(processes(spec)), Callbacks(on_metrics=kill_the_middle_stage))
    assert killed
    assert stage_processes() == {}  # no stage process left behind


@pytest.mark.parametrize(
    ("pipeline", "field", "words"),
    [
        ({"devices": ["cpu"]}, "pipeline.devices", "1 devices for 2 stages"),
        ({"devices": ["cpu", "gpu"]}, "pipeline.devices.1", "got 'gpu'"),
        ({"devices": ["cpu", "cuda:0"]}, "pipeline.devices", "mixes cpu and cuda"),
        ({"executor": "simulated", "devices": ["cpu", "cpu"]}, "pipeline.devices", "only with"),
        ({"port": 80}, "pipeline.port", "greater than or equal to 1024"),
    ],
)
def test_placements_that_cannot_work_are_refused_at_submit(
    pipeline: dict[str, Any], field: str, words: str
) -> None:
    spec = processes(job("async", "digital", 2), **pipeline)
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert any(loc == field and words in msg for loc, msg in caught.value.problems), caught.value


def test_a_cuda_device_this_machine_lacks_is_refused_naming_it() -> None:
    spec = {**processes(job("async", "digital", 2), devices=["cuda:0", "cuda:7"]), "device": "auto"}
    if torch.cuda.device_count() >= 8:
        pytest.skip("this machine has cuda:7")
    with pytest.raises(RunError, match=r"pipeline\.devices\.[01]: cuda:[07] does not exist"):
        run(parse_spec(spec))


def test_one_gpu_for_two_stages_is_refused_naming_the_field() -> None:
    spec = {**processes(job("async", "digital", 2), devices=["cuda:0", "cuda"]), "device": "auto"}
    with pytest.raises(RunError, match=r"pipeline\.devices: cuda:0 given to several stages"):
        run(parse_spec(spec))


def test_a_port_in_use_is_refused_naming_the_field() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = processes(job("async", "digital", 2), port=port)
        with pytest.raises(RunError, match=f"pipeline.port: {port}"):
            run(parse_spec(spec))


@pytest.mark.parametrize("eval_every", [50, 1])
def test_a_hung_stage_fails_the_run_within_its_timeout(eval_every: int) -> None:
    """A stage that stops answering (SIGSTOP) is found by its neighbours' timeouts
    (pipeline.timeout_s), and the run fails naming it instead of hanging: in training,
    and at metric points (a point every micro-batch: the others wait on the metric links,
    whose process group has the same timeout)."""
    spec = processes(job("async", "digital", 3), timeout_s=5)
    spec["training"] = {"steps": 100_000, "micro_batch_size": 8, "eval_every": eval_every}
    stopped: list[int] = []

    def stop_the_middle_stage(record: dict[str, Any]) -> None:
        if not stopped:
            stages = stage_processes()
            os.kill(stages[1], signal.SIGSTOP)
            stopped.append(stages[1])

    with pytest.raises(RunError, match="stage 1: lost its process"):
        run(parse_spec(spec), Callbacks(on_metrics=stop_the_middle_stage))
    assert stopped and stage_processes() == {}


def test_two_runs_at_once_never_collide() -> None:
    """Each run's rendezvous listens on a port the system gives it: two processes runs
    started together (threads of one process here, as two workers' jobs would) both
    finish with their own numbers."""
    specs = [job("async", "expected", 2), job("gpipe", "rounded", 2)]
    outputs: dict[int, RunOutput] = {}

    def go(i: int) -> None:
        outputs[i] = run(parse_spec(processes(specs[i])))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, spec in enumerate(specs):
        assert_same_run(run(parse_spec(spec)), outputs[i])


LAUNCHER = """
import sys
from aimc_engine.runner import run
from aimc_spec.spec import parse_spec
if __name__ == "__main__":
    run(parse_spec(__import__("json").loads(sys.argv[1])))
"""


def test_no_stage_process_outlives_a_killed_launcher() -> None:
    """kill -9 the process that started the stages (a worker's job process, say): every
    stage process ends too, with nothing left running on its own."""
    spec = processes(job("async", "digital", 2))
    spec["training"] = {"steps": 200_000, "micro_batch_size": 8, "eval_every": 1000}
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, json.dumps(spec)], start_new_session=True
    )
    try:
        stages: list[psutil.Process] = []
        while len(stages) < 2:  # until both stages run (a fresh fork server takes seconds)
            assert launcher.poll() is None, "the launcher ended before its stages started"
            time.sleep(0.05)
            stages = [
                p
                for p in psutil.Process(launcher.pid).children(recursive=True)
                if p.name().startswith("aimc-stage-")
            ]
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        _, alive = psutil.wait_procs(stages, timeout=60)
        assert alive == [], f"stage processes outlived their launcher: {alive}"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_runs_a_spec_as_it_would_across_hosts(tmp_path: Path) -> None:
    """The documented multi-host command, on one machine with 2 processes: rank 0 writes
    the run folder, with the simulator's numbers (torchrun gives each process 1 thread)."""
    spec = processes(job("async", "pulsed", 2))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", "1", "--nproc-per-node", "2",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
        "-m", "aimc_cli", "run", "spec.json", "--out", "out", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    result = json.loads((out / "result.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    sim = run(parse_spec({**spec, "pipeline": {**spec["pipeline"], "executor": "simulated"}}))
    assert without_wall(metrics) == without_wall(sim.metrics)
    assert comparable(result) == comparable(sim.result)
    assert [p["stage"] for p in result["processes"]] == [0, 1]
    weights = load_file(out / "weights.safetensors")
    for key, value in sim.model.state_dict().items():
        assert torch.equal(weights[key], value), key


# aihwkit configurations whose state is new with them: auto_scale's running maxima and
# the row count (TTv2, AGAD), vector cells with write noise, a refreshed pair under
# mixed precision
CONFIGS = ["TTv2ReRamSBPreset", "AGADEcRamPreset", "ReRamES2Preset", "MixedPrecisionPCMPreset"]


@pytest.mark.parametrize("config", CONFIGS)
def test_processes_reproduce_the_simulator_for_aihwkit_configurations(config: str) -> None:
    spec = job("async_stash", "pulsed", 2)
    spec["analog"] = {"config": config}
    sim = run(parse_spec(spec))
    proc = run(parse_spec(processes(spec)))
    assert proc.result["status"] == "succeeded"
    assert_same_run(sim, proc)
