"""Every preset, every example and every device family gives the numbers it gave before
the device spec became one model per family (aimc_spec/devices/): the same spec fields,
the same per-element device parameters and responses, the same metrics of a short run.

The expected values in device_numbers.json were computed by this module on the code
before that change (`python -m tests.engine.test_device_numbers write`, at commit
29d578b). Fields the old flat spec accepted for every family but a family never read
(gamma next to softbounds, say) are no longer part of that family's spec; they are
listed in IGNORED, and only they may be missing now.

aimc 0.5 redrew the pulsed update of linear-family devices (aimc_engine/pulsed.py: one
C call, noise per element from counter-based keys; docs/outputs.md), and aimc 0.7 that
of the curved families (pulsed_curve.py): the metrics of the cases in REDRAWN, the
pulsed runs, and only theirs, were written again at those changes (`python -m
tests.engine.test_device_numbers write-redrawn`); their devices are still 29d578b's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from aimc_engine.devices import Device
from aimc_engine.runner import run
from aimc_spec.devices import FLAT_FIELDS
from aimc_spec.presets import PRESETS
from aimc_spec.spec import parse_device, parse_spec, read_spec_file

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = Path(__file__).with_name("device_numbers.json")
SHAPE = (4, 3)
LINEAR = ("ideal", "constant_step", "linear", "softbounds")
# the fields the flat spec carried for every family, by the families that never read them
IGNORED = {
    "ideal": {"gamma", "gamma_down", "d2d_gamma", "exp_step"},
    "constant_step": {"gamma", "gamma_down", "d2d_gamma", "exp_step"},
    "softbounds": {"gamma", "gamma_down", "d2d_gamma", "exp_step"},
    "linear": {"exp_step"},
    "power": {"gamma_down", "d2d_gamma", "exp_step"},
    "exp": {"gamma_down", "d2d_gamma", "exp_step"},
    "exp_step": {"gamma", "gamma_down", "d2d_gamma"},
}
SHORT = {"steps": 4, "micro_batch_size": 8, "eval_every": 2}
# the presets at 29d578b; those added since (pcm, the ReRAM arrays) have no earlier numbers
# and are tested in tests/spec/test_presets.py and tests/engine/test_full_devices.py
PRESETS_BEFORE = (
    "reram_es",
    "reram_sb",
    "capacitor",
    "ecram",
    "ecram_mo",
    "idealized",
    "gokmen_vlasov",
)


# the examples at 29d578b; those added since (the aihwkit 1.2 algorithms') have no
# earlier numbers; tests/cli/test_cli.py runs every example and their algorithms have tests
EXAMPLES_BEFORE = (
    "digits_analog_pulsed",
    "digits_analog_sgd",
    "digits_cnn_capacitor",
    "digits_digital",
    "digits_gokmen_vlasov_lastlayer",
    "digits_reram_es",
    "digits_tiki_taka",
    "mnist_subset_cnn",
    "paper_async_analog",
    "paper_async_analog_accumulate",
    "paper_async_digital",
    "paper_gpipe_analog",
    "paper_gpipe_digital",
    "synthetic_idealized",
)
# the pulsed runs, on every family: every other case's metrics are still 29d578b's
REDRAWN = {
    "example-digits_analog_pulsed",
    "example-digits_gokmen_vlasov_lastlayer",
    *(f"family-{model}" for model in IGNORED),
    *(f"preset-{name}" for name in PRESETS_BEFORE),
}


def family_devices() -> dict[str, dict[str, Any]]:
    """One device of each family with noise, d2d and asymmetry on (the digest's cases)."""
    out = {}
    for model in IGNORED:
        dev = {"model": model, "c2c_noise": 0.2, "d2d_variation": 0.1, "up_down": 0.05}
        if model == "linear":
            dev["d2d_gamma"] = 0.05
        out[f"family-{model}"] = dev
    return out


def job_specs() -> dict[str, dict[str, Any]]:
    """Each preset and family on a small MLP (pulsed), and each example, shortened."""
    small = {"device": "cpu", "dataset": {"name": "digits"}, "model": {"hidden": [16]}}
    devices = {f"preset-{name}": {"preset": name} for name in PRESETS_BEFORE} | family_devices()
    specs = {
        name: {**small, "analog": {"device": dev, "update": "pulsed"}, "training": SHORT}
        for name, dev in devices.items()
    }
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        if path.stem not in EXAMPLES_BEFORE:
            continue
        data = read_spec_file(path)
        training = {k: v for k, v in data.get("training", {}).items() if k != "epochs"}
        specs[f"example-{path.stem}"] = {**data, "device": "cpu", "training": training | SHORT}
    return specs


def as_list(v: torch.Tensor | float) -> list[float]:
    return torch.as_tensor(v, dtype=torch.float64).expand(SHAPE).reshape(-1).tolist()


def device_numbers(data: dict[str, Any]) -> dict[str, Any]:
    """The spec's device fields, and one tile's parameters, responses and balance points."""
    spec = parse_spec(data).analog.device
    dev = Device(spec, SHAPE, generator=torch.Generator().manual_seed(3))
    w = torch.linspace(0.95 * spec.w_min, 0.95 * spec.w_max, SHAPE[0] * SHAPE[1]).reshape(SHAPE)
    q_up, q_down = dev.response(w)
    params = zip(("w_min", "w_max", "up", "down"), dev.params(), strict=True)
    out = {
        "fields": spec.model_dump(mode="json"),
        **{name: as_list(v) for name, v in params},
        "q_up": as_list(q_up),
        "q_down": as_list(q_down),
        "settle": as_list(dev.alternating_pulse_point()),
        "granularity": dev.granularity,
    }
    if spec.model in LINEAR:  # the slopes' buffers mean something only there
        out |= {"slope_up": as_list(dev.slope_up), "slope_down": as_list(dev.slope_down)}
    return out


# not the training's numbers: the wall clock, and the energy estimate (aimc 0.6) that
# prices the run's counts and reads nothing back into it
NOT_PINNED = ("wall_s", "energy_pj")


def run_numbers(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The metric points of a short run, wall clock and energy left out."""
    metrics = run(parse_spec(data)).metrics
    return [{k: v for k, v in m.items() if k not in NOT_PINNED} for m in metrics]


def numbers() -> dict[str, Any]:
    torch.set_num_threads(1)
    return {
        name: {"device": device_numbers(data), "metrics": run_numbers(data)}
        for name, data in job_specs().items()
    }


def expected() -> dict[str, Any]:
    return json.loads(EXPECTED.read_text())


def test_every_case_has_its_expected_numbers() -> None:
    assert sorted(expected()) == sorted(job_specs())
    assert set(PRESETS_BEFORE) < set(PRESETS)


@pytest.mark.parametrize("name", sorted(job_specs()))
def test_same_device_as_before(name: str) -> None:
    before = expected()[name]["device"]
    now = device_numbers(job_specs()[name])
    fields = now.pop("fields")
    old = before.pop("fields")
    assert set(old) - set(fields) <= IGNORED[fields["model"]]
    assert fields == {k: v for k, v in old.items() if k in fields}
    assert now.keys() == before.keys()
    for key, values in before.items():
        assert now[key] == pytest.approx(values, rel=1e-6, abs=1e-9, nan_ok=True), key


@pytest.mark.parametrize("name", sorted(job_specs()))
def test_a_device_normalised_before_reads_as_the_same_device(name: str) -> None:
    """A stored spec normalised by the flat model (a job queued before the change) has
    every family's fields: those its family has not are dropped, not refused."""
    old = expected()[name]["device"]["fields"]
    assert old.keys() == FLAT_FIELDS
    assert parse_device(old) == parse_spec(job_specs()[name]).analog.device


@pytest.mark.parametrize("name", sorted(job_specs()))
def test_same_metrics_as_before(name: str) -> None:
    before = expected()[name]["metrics"]
    torch.set_num_threads(1)
    now = run_numbers(job_specs()[name])
    assert [sorted(m) for m in now] == [sorted(m) for m in before]
    for point, old in zip(now, before, strict=True):
        for key, value in old.items():
            if isinstance(value, float):
                assert point[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (key, point)
            else:
                assert point[key] == value, (key, point)


def write(found: dict[str, Any]) -> None:
    cases = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in found.items()]
    EXPECTED.write_text("{\n" + ",\n".join(cases) + "\n}\n")  # one case a line


if __name__ == "__main__" and sys.argv[1:] == ["write"]:
    write(numbers())
elif __name__ == "__main__" and sys.argv[1:] == ["write-redrawn"]:
    torch.set_num_threads(1)
    kept = expected()
    specs = job_specs()
    write(
        {k: {**v, "metrics": run_numbers(specs[k])} if k in REDRAWN else v for k, v in kept.items()}
    )
