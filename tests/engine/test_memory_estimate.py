"""The admission's memory estimate (aimc_spec.resources) is within a factor 1.5 of the
peak a job's process really takes, for every model kind, update mode and the schedules
that hold more (async_stash, gpipe). Each spec runs in a process forked from this one,
as a worker forks its jobs; its peak is VmHWM less what it held at the fork."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from aimc_spec.cost import data_shape
from aimc_spec.resources import resources
from aimc_spec.spec import parse_spec

BIG = {"hidden": [2048, 2048]}  # weights and device state well above the runtime's share
CASES: dict[str, dict[str, Any]] = {
    "mlp-expected": {"model": BIG},
    "mlp-pulsed": {"model": BIG, "analog": {"update": "pulsed"}},
    "mlp-rounded": {"model": BIG, "analog": {"update": "rounded"}},
    "mlp-tiki_taka": {"model": BIG, "optimizer": {"algorithm": "tiki_taka"}},
    "mlp-sgd": {"model": BIG, "optimizer": {"algorithm": "sgd"}},
    "mlp-async_stash": {"model": BIG, "pipeline": {"stages": 3, "schedule": "async_stash"}},
    "mlp-gpipe": {"model": BIG, "pipeline": {"stages": 3, "schedule": "gpipe"}},
    "cnn-expected": {"model": {"kind": "cnn", "channels": [64, 128], "fc": 512}},
    "cnn-pulsed": {
        "model": {"kind": "cnn", "channels": [64, 128], "fc": 512},
        "analog": {"update": "pulsed"},
    },
    "resnet-expected": {"model": {"kind": "resnet", "channels": [64, 128]}},
}


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def measured_peak(spec_data: dict[str, Any]) -> int:
    """The bytes a process forked from this one took at its peak to run the spec."""
    import aimc_engine.runner  # imported before the fork, as the worker does

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            start = _vm("VmRSS")
            aimc_engine.runner.run(
                parse_spec(spec_data),
                aimc_engine.runner.Callbacks(on_checkpoint=lambda _: None, checkpoint_every=5),
            )
            os.write(write, str(_vm("VmHWM") - start).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    answer = os.read(read, 64)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and answer, "the run failed"
    return int(answer)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_estimate_is_within_1_5_of_the_measured_peak(case: str) -> None:
    spec_data = {**CASES[case], "training": {"steps": 10, "eval_every": 10}}
    spec = parse_spec(spec_data)
    shape = data_shape(spec, None)
    assert shape is not None
    estimate = resources(spec, *shape).peak_bytes
    peak = measured_peak(spec_data)
    assert 1 / 1.5 <= estimate / peak <= 1.5, (case, estimate / 2**20, peak / 2**20)
