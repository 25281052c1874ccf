"""Presets are aihwkit's devices (simulator/presets/devices.py), field by field.

The expected values are written out here from aihwkit's source, independently of
aimc_spec/presets.py, and q+/q- are checked against the formulas of the aihwkit
device classes at 41 points of each preset's range.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import yaml

from aimc_engine.devices import Device
from aimc_spec.spec import parse_spec

# aihwkit: class, (dw_min, w_min, w_max, up_down, dw_min_std, noise form, dw_min_dtod,
# w_min_dtod, w_max_dtod, up_down_dtod, write_noise_std), shape parameters
AIHWKIT = {
    "reram_es": (
        "ExpStepDevice",
        (0.00135, -1.0, 1.0, 0.259359, 5.0, "multiplicative", 0.2, 0.3, 0.3, 0.05, 75.0),
        {
            "A_up": -1.18445,
            "A_down": -0.081404,
            "gamma_up": 5.0,
            "gamma_down": 5.0,
            "a": -0.5,
            "b": -0.5,
        },
    ),
    "reram_sb": (
        "SoftBoundsReferenceDevice",
        (0.002, -0.75, 1.25, 0.0, 3.75, "additive", 0.3, 0.3 / 0.75, 0.3 / 1.25, 0.01, 56.0),
        {},
    ),
    "capacitor": (
        "LinearStepDevice",
        (0.005, -1.0, 1.0, 0.0, 0.3, "additive", 0.1, 0.07, 0.07, 0.06, 0.0),
        {"gamma_up": 0.05, "gamma_down": 0.05, "gamma_dtod": 0.01},
    ),
    "ecram": (
        "LinearStepDevice",
        (0.002, -0.8276, 1.1724, 0.0, 0.3, "multiplicative", 0.1, 0.05, 0.05, 0.01, 0.0),
        {"gamma_up": 0.1153, "gamma_down": 0.5085, "gamma_dtod": 0.05},
    ),
    "ecram_mo": (
        "LinearStepDevice",
        (2.8214e-4, -0.8286, 1.1714, 0.0, 2.0, "multiplicative", 0.1, 0.05, 0.05, 0.01, 0.0),
        {"gamma_up": 0.4152, "gamma_down": 0.7342, "gamma_dtod": 0.05},
    ),
    "idealized": (
        "ConstantStepDevice",
        (2e-4, -1.0, 1.0, 0.0, 0.3, "multiplicative", 0.3, 0.3, 0.3, 0.0, 0.0),
        {},
    ),
    "gokmen_vlasov": (
        "ConstantStepDevice",
        (0.0016, -1.0, 1.0, 0.0, 0.3, "multiplicative", 0.3, 0.3, 0.3, 0.01, 0.0),
        {},
    ),
}


def aihwkit_q(cls: str, shape: dict, w: float, w_min: float, w_max: float) -> tuple[float, float]:
    """q+(w), q-(w) of the aihwkit device class, written from its C++ update rule."""
    if cls == "ExpStepDevice":
        z = 2 * shape["a"] * w / (w_max - w_min) + shape["b"]
        up = max(1 - shape["A_up"] * math.exp(shape["gamma_up"] * z), 0.0)
        down = max(1 - shape["A_down"] * math.exp(-shape["gamma_down"] * z), 0.0)
        return up, down
    if cls == "SoftBoundsReferenceDevice":
        return 1 - w / w_max, 1 - w / w_min
    if cls == "LinearStepDevice":
        return 1 - shape["gamma_up"] * w / w_max, 1 - shape["gamma_down"] * w / w_min
    return 1.0, 1.0  # ConstantStepDevice


@pytest.mark.parametrize("name", sorted(AIHWKIT))
def test_preset_fields_are_aihwkits(name: str) -> None:
    _, values, shape = AIHWKIT[name]
    dev = parse_spec({"analog": {"device": {"preset": name}}}).analog.device
    ours = (
        dev.dw_min,
        dev.w_min,
        dev.w_max,
        dev.up_down,
        dev.c2c_noise,
        dev.c2c_mode,
        dev.d2d_variation,
        dev.d2d_w_min,
        dev.d2d_w_max,
        dev.d2d_up_down,
        dev.write_noise_std,
    )
    for field, got, want in zip(range(len(values)), ours, values, strict=True):
        assert got == (pytest.approx(want) if isinstance(want, float) else want), (name, field)
    if "gamma_dtod" in shape:
        assert dev.d2d_gamma == pytest.approx(shape["gamma_dtod"])
    if dev.model == "exp_step":
        for key in ("A_up", "A_down", "gamma_up", "gamma_down", "a", "b"):
            assert getattr(dev.exp_step, key) == pytest.approx(shape[key])


@pytest.mark.parametrize("name", sorted(AIHWKIT))
def test_preset_response_equals_aihwkits_formula_at_41_points(name: str) -> None:
    cls, values, shape = AIHWKIT[name]
    _, w_min, w_max = values[:3]
    spec = parse_spec({"analog": {"device": {"preset": name}}}).analog.device
    # the nominal device: d2d off, so each element has the preset's own values
    nominal = spec.model_copy(
        update={
            "d2d_variation": 0.0,
            "d2d_w_min": 0.0,
            "d2d_w_max": 0.0,
            "d2d_up_down": 0.0,
            "d2d_gamma": 0.0,
        }
    )
    w = torch.linspace(w_min, w_max, 41, dtype=torch.float64)
    dev = Device(nominal, (41,), generator=torch.Generator())
    q_up, q_down = dev.raw(w)
    for i, wi in enumerate(w.tolist()):
        ref_up, ref_down = aihwkit_q(cls, shape, wi, w_min, w_max)
        assert q_up[i].item() == pytest.approx(ref_up, rel=1e-9, abs=1e-12), (name, wi)
        assert q_down[i].item() == pytest.approx(ref_down, rel=1e-9, abs=1e-12), (name, wi)


def test_reram_es_symmetric_point_is_near_minus_0_2() -> None:
    """aihwkit's ReRamES (not ExpStep's class defaults, whose point is near +0.9)."""
    spec = parse_spec({"analog": {"device": {"preset": "reram_es"}}}).analog.device
    nominal = spec.model_copy(
        update={"d2d_variation": 0.0, "d2d_w_min": 0.0, "d2d_w_max": 0.0, "d2d_up_down": 0.0}
    )
    point = Device(nominal, (1,), generator=torch.Generator()).symmetric_point()
    assert point.item() == pytest.approx(-0.217, abs=0.01)


def test_validate_shows_the_expanded_preset(tmp_path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("analog: {device: {preset: reram_es}}\n")
    out = subprocess.run(
        [sys.executable, "-m", "aimc_cli", "validate", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    device = yaml.safe_load(out)["analog"]["device"]
    assert device["exp_step"]["A_up"] == -1.18445 and device["write_noise_std"] == 75.0
    assert device["c2c_mode"] == "multiplicative" and device["d2d_up_down"] == 0.05
