"""The presets with every field of their aihwkit 1.2 class (pcm, reram_array_om,
reram_array_hfo2) are aihwkit's, field by field, and respond as aihwkit's C++ does.

The expected values are written out here from aihwkit 1.2.0's
simulator/presets/devices.py (PCMPresetDevice, ReRamArrayOMPresetDevice,
ReRamArrayHfO2PresetDevice) and, where a preset leaves a field alone, from its class's
defaults in simulator/configs/devices.py (PulsedDevice, SoftBoundsReferenceDevice),
independently of aimc_spec/presets.py. q+/q- are checked per element, d2d on, at 41
points of each element's range against the update rules of rpu_expstep_device.cpp
(update_once_complex_noise: y_up = max(1 - A_up e^{gamma_up z}, 0), y_down = max(1 -
A_down e^{-gamma_down z}, 0), z = 2 a w / (b_max - b_min) + b) and
rpu_softbounds_reference_device.cpp (update_once_add: the state w + r moves by
scale_up (1 - (w + r) / b_max) up, scale_down (1 - (w + r) / b_min) down).
"""

from __future__ import annotations

import math

import pytest
import torch

from aimc_engine.devices import Device
from aimc_spec.spec import SpecError, parse_spec

# aihwkit's field name -> its value, for every field the class's update and populate read
PULSED_DEFAULTS = {
    "dw_min_dtod_log_normal": False,
    "enforce_consistency": True,
    "corrupt_devices_prob": 0.0,
    "corrupt_devices_range": 0.1,
    "reset": 0.0,
    "reset_dtod": 0.0,
    "reset_std": 0.01,
}
REFERENCE_DEFAULTS = {
    "slope_up_dtod": 0.0,
    "slope_down_dtod": 0.0,
    "reference_mean": 0.0,
    "reference_std": 0.0,
    "subtract_symmetry_point": False,
}
AIHWKIT = {
    "pcm": PULSED_DEFAULTS
    | {
        "dw_min": 0.01,
        "up_down": 0.0,
        "w_max": 2.0,
        "w_min": 0.0,
        "A_up": -27.235,
        "A_down": -2.235,
        "gamma_up": 2.5,
        "gamma_down": 2.5,
        "a": -1.0,
        "b": 0.0,
        "dw_min_dtod": 0.2,
        "up_down_dtod": 0.05,
        "w_max_dtod": 0.1,
        "w_min_dtod": 0.0,
        "dw_min_std": 0.6,
        "dw_min_std_add": 0.042,
        "dw_min_std_slope": 0.108,
        "write_noise_std": 0.0,
        "reset": 0.01,
        "reset_dtod": 0.02,
        "mult_noise": True,  # ExpStep's noise form (no such field there)
    },
    "reram_array_om": PULSED_DEFAULTS
    | REFERENCE_DEFAULTS
    | {
        "enforce_consistency": True,
        "dw_min_dtod_log_normal": True,
        "dw_min": 0.0949,
        "up_down": 0.0,
        "w_max": 1.0,
        "w_min": -1.0,
        "mult_noise": False,
        "dw_min_dtod": 0.7829,
        "up_down_dtod": 0.01,
        "w_max_dtod": 0.3499,
        "w_min_dtod": 0.5695,
        "dw_min_std": 0.4158,
        "write_noise_std": 1.4113,
        "corrupt_devices_range": 0.0100,
        "corrupt_devices_prob": 0.0,
        "subtract_symmetry_point": True,
        "reference_std": 0.05,
    },
    "reram_array_hfo2": PULSED_DEFAULTS
    | REFERENCE_DEFAULTS
    | {
        "enforce_consistency": True,
        "dw_min_dtod_log_normal": True,
        "dw_min": 0.4622,
        "up_down": 0.0,
        "w_max": 1.0,
        "w_min": -1.0,
        "mult_noise": False,
        "dw_min_dtod": 0.7125,
        "up_down_dtod": 0.01,
        "w_max_dtod": 0.4295,
        "w_min_dtod": 0.5990,
        "dw_min_std": 0.2174,
        "write_noise_std": 0.5841,
        "corrupt_devices_range": 0.0100,
        "corrupt_devices_prob": 0.0,
        "subtract_symmetry_point": True,
        "reference_std": 0.05,
    },
}
# aihwkit's name -> ours (docs/aihwkit.md); the names not listed are the same
OURS = {
    "dw_min_dtod": "d2d_variation",
    "dw_min_dtod_log_normal": "d2d_log_normal",
    "up_down_dtod": "d2d_up_down",
    "w_min_dtod": "d2d_w_min",
    "w_max_dtod": "d2d_w_max",
    "dw_min_std": "c2c_noise",
    "dw_min_std_add": "c2c_add",
    "dw_min_std_slope": "c2c_slope",
    "reset_dtod": "d2d_reset",
    "slope_up_dtod": "d2d_slope_up",
    "slope_down_dtod": "d2d_slope_down",
}
EXP_STEP = ("A_up", "A_down", "gamma_up", "gamma_down", "a", "b")


def preset(name: str):
    return parse_spec({"analog": {"device": {"preset": name}}}).analog.device


@pytest.mark.parametrize("name", sorted(AIHWKIT))
def test_every_field_is_aihwkits(name: str) -> None:
    dev = preset(name)
    for key, want in AIHWKIT[name].items():
        if key == "mult_noise":
            got = dev.c2c_mode == "multiplicative"
        elif key in EXP_STEP:
            got = getattr(dev.exp_step, key)
        else:
            got = getattr(dev, OURS.get(key, key))
        assert got == (pytest.approx(want) if isinstance(want, float) else want), (name, key)
    # and nothing else: every field of the family is one of aihwkit's (or the preset's tag)
    ours = {OURS.get(k, k) for k in AIHWKIT[name]} | {"model", "preset", "states", "c2c_mode"}
    ours |= {"exp_step"} if dev.model == "exp_step_noise" else set()
    assert set(type(dev).model_fields) == ours - {*EXP_STEP, "mult_noise"}


def aihwkit_q(name: str, w: float, b_min: float, b_max: float, r: float) -> tuple[float, float]:
    """y_up, y_down of aihwkit's update rule for the preset's class (module docstring)."""
    p = AIHWKIT[name]
    if "A_up" in p:  # ExpStepDevice
        z = 2 * p["a"] * w / (b_max - b_min) + p["b"]
        up = max(1 - p["A_up"] * math.exp(p["gamma_up"] * z), 0.0)
        down = max(1 - p["A_down"] * math.exp(-p["gamma_down"] * z), 0.0)
        return up, down
    g = w + r  # SoftBoundsReferenceDevice: the state is the weight plus the reference
    return 1 - g / b_max if b_max > 0 else 1.0, 1 - g / b_min if b_min < 0 else 1.0


@pytest.mark.parametrize("name", sorted(AIHWKIT))
def test_response_is_aihwkits_at_41_points_of_each_element(name: str) -> None:
    dev = Device(preset(name), (12,), generator=torch.Generator().manual_seed(5))
    r = dev.reference if dev.family.reference else torch.zeros(12)
    b_min, b_max = dev.w_min + r, dev.w_max + r  # aihwkit's bounds are the state's
    for k in range(41):
        w = (dev.w_min + (dev.w_max - dev.w_min) * k / 40).double()
        q_up, q_down = dev.raw(w)
        for i in range(12):
            ref_up, ref_down = aihwkit_q(
                name, w[i].item(), b_min[i].item(), b_max[i].item(), r[i].item()
            )
            assert q_up[i].item() == pytest.approx(ref_up, rel=1e-5, abs=1e-6), (name, k, i)
            assert q_down[i].item() == pytest.approx(ref_down, rel=1e-5, abs=1e-6), (name, k, i)


def test_pcm_granularity_is_expsteps_down_step_at_zero() -> None:
    """calcWeightGranularity of rpu_expstep_device.h: scale_down max(1 - A_down e^{-gamma_down
    b}, 0) at w = 0, 0.01 x (1 + 2.235) for pcm."""
    dev = Device(preset("pcm"), (2,), generator=torch.Generator())
    assert dev.granularity == pytest.approx(0.01 * (1 + 2.235))


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        ({"model": "softbounds_reference", "d2d_variation": 0.7}, "d2d_variation", "log_normal"),
        (
            {"model": "softbounds_reference", "d2d_variation": 2, "d2d_log_normal": True},
            "d2d_w_min",
            "give d2d_w_min",
        ),
        ({"model": "exp_step_noise", "c2c_add": 0.1}, "c2c_add", "c2c_noise, which is 0"),
        ({"model": "softbounds_reference", "w_min": 0.0}, "w_min", "less than 0"),
        ({"model": "exp_step_noise", "w_min": 0.5}, "w_min", "less than or equal to 0"),
        ({"model": "softbounds_reference", "corrupt_devices_prob": 1.5}, "corrupt", "1"),
        ({"model": "exp_step", "reset": 0.1}, "reset", "not a field of model 'exp_step'"),
    ],
)
def test_new_fields_are_checked(fields: dict, path: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"analog": {"device": fields}})
    problems = dict(caught.value.problems)
    key = next(k for k in problems if path in k)
    assert words in problems[key]


def test_a_preset_field_given_again_must_agree() -> None:
    with pytest.raises(SpecError, match="set by preset 'pcm'"):
        parse_spec({"analog": {"device": {"preset": "pcm", "c2c_slope": 0.2}}})
    same = {"preset": "reram_array_om", "reference_std": 0.05}
    assert parse_spec({"analog": {"device": same}}).analog.device == preset("reram_array_om")
