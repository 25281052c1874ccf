"""The device spec is one model per response family (aimc_spec/devices/): a device takes
its family's fields only, and a field of another family is refused naming the families
that have it and the fields the chosen one takes, wherever a spec is read."""

from __future__ import annotations

from pathlib import Path

import jsonschema_rs
import pytest
from pydantic import TypeAdapter

from aimc_cli import main
from aimc_spec.devices import (
    DEVICE_MODELS,
    FAMILY_SPECS,
    DeviceSpec,
    DeviceSpecBase,
    LinearDeviceSpec,
    SoftBoundsDeviceSpec,
    parse_device,
)
from aimc_spec.spec import SpecError, parse_spec

# aihwkit's PulsedDevice fields the families with every field add (aimc_spec/devices/pulsed.py)
PULSED = {"d2d_log_normal", "enforce_consistency", "corrupt_devices_prob", "corrupt_devices_range"}
PULSED |= {"reset", "d2d_reset", "reset_std"}
REFERENCE = {"d2d_slope_up", "d2d_slope_down", "reference_mean", "reference_std"}
REFERENCE |= {"subtract_symmetry_point"}
OWN = {
    "ideal": set(),
    "constant_step": set(),
    "linear": {"gamma", "gamma_down", "d2d_gamma"},
    "softbounds": set(),
    "power": {"gamma"},
    "exp": {"gamma"},
    "exp_step": {"exp_step"},
    "exp_step_noise": {"exp_step", "c2c_add", "c2c_slope", *PULSED},
    "softbounds_reference": {*PULSED, *REFERENCE},
}


def device_problems(device: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_spec({"analog": {"device": device}})
    return dict(caught.value.problems)


def test_each_family_has_the_shared_fields_and_its_own() -> None:
    assert tuple(OWN) == DEVICE_MODELS
    shared = set(DeviceSpecBase.model_fields)
    for model, family in zip(DEVICE_MODELS, FAMILY_SPECS, strict=True):
        assert set(family.model_fields) == shared | OWN[model], model


@pytest.mark.parametrize("model", DEVICE_MODELS)
def test_a_field_of_another_family_names_the_families_and_the_fields_taken(model: str) -> None:
    foreign = sorted(set().union(*OWN.values()) - OWN[model])
    found = device_problems({"model": model, **dict.fromkeys(foreign, 0.5)})
    family = FAMILY_SPECS[DEVICE_MODELS.index(model)]
    for name in foreign:
        *others, last = [repr(m) for m in DEVICE_MODELS if name in OWN[m]]
        owners = f"{', '.join(others)} or {last}" if others else last
        assert found[f"analog.device.{name}"] == (
            f"not a field of model {model!r} (only of model {owners}); {model!r} takes: "
            + ", ".join(family.model_fields)
        )
    assert len(found) == len(foreign)


def test_the_default_family_refuses_a_slope() -> None:
    """gamma without a model was accepted and ignored (softbounds has slopes 1)."""
    msg = device_problems({"gamma": 0.3})["analog.device.gamma"]
    assert msg.startswith("not a field of model 'softbounds' (only of model 'linear', 'power' or")
    assert "takes: model, preset, w_min, w_max, states, dw_min" in msg


def test_a_preset_expands_into_its_family_and_keeps_its_checks() -> None:
    dev = parse_device(preset="ecram")
    assert isinstance(dev, LinearDeviceSpec) and dev.slopes() == (0.1153, 0.5085)
    assert dev.slope_spread() == 0.05
    # the preset's own value again is fine; another value, or another family's field, is not
    assert parse_device(preset="ecram", gamma=0.1153) == dev
    assert device_problems({"preset": "ecram", "gamma": 0.2}) == {
        "analog.device.gamma": "set by preset 'ecram' to 0.1153; drop the preset or the field"
    }
    assert (
        "not a field of model 'softbounds'"
        in (device_problems({"preset": "reram_sb", "gamma": 0.2})["analog.device.gamma"])
    )


def test_only_a_whole_flat_device_drops_other_families_fields() -> None:
    """The flat model's normalised form (every one of its fields) reads as before; a
    spec naming some of them is judged as written."""
    flat = {**parse_device().model_dump(), "gamma": 0.5, "gamma_down": None, "d2d_gamma": 0.0}
    flat["exp_step"] = {"A_up": 0.00081}
    assert isinstance(parse_device(flat), SoftBoundsDeviceSpec)
    del flat["exp_step"]
    assert set(device_problems(flat)) == {
        f"analog.device.{name}" for name in ("gamma", "gamma_down", "d2d_gamma")
    }


def test_a_device_without_model_is_softbounds() -> None:
    dev = parse_spec({"analog": {"device": {"states": 100}}}).analog.device
    assert isinstance(dev, SoftBoundsDeviceSpec) and dev.slopes() == (1.0, 1.0)
    assert isinstance(parse_spec({}).analog.device, SoftBoundsDeviceSpec)


@pytest.mark.parametrize(
    ("device", "loc", "message"),
    [
        (
            {"model": "magic"},
            "analog.device.model",
            "got 'magic'; allowed: 'ideal', 'constant_step'",
        ),
        ({"model": "power", "gama": 1}, "analog.device.gama", "did you mean 'gamma'?"),
        ({"model": "linear", "states": 2}, "analog.device.states", "needs more than 2"),
        ({"model": "linear", "gamma": -1}, "analog.device.gamma", "greater than or equal to 0"),
        ({"model": "exp_step", "exp_step": {"A_upp": 1}}, "analog.device.exp_step.A_upp", "'A_up'"),
    ],
)
def test_errors_inside_a_family_keep_the_path_as_written(
    device: dict, loc: str, message: str
) -> None:
    """pydantic locates them under the family's tag (analog.device.linear.states): the
    spec's errors leave it out."""
    found = device_problems(device)
    assert message in found[loc], found


@pytest.mark.parametrize("model", DEVICE_MODELS)
def test_every_family_survives_a_round_trip(model: str) -> None:
    spec = parse_spec({"analog": {"device": {"model": model, "c2c_noise": 0.1}}})
    assert parse_spec(spec.normalised()) == spec
    assert spec.normalised()["analog"]["device"]["model"] == model


def test_the_schema_refuses_what_the_spec_refuses() -> None:
    """The union's JSON schema (the API's document): anyOf the families, model left out
    is softbounds, another family's field is invalid."""
    schema = TypeAdapter(DeviceSpec).json_schema()
    assert "discriminator" not in schema and len(schema["anyOf"]) == len(DEVICE_MODELS)
    check = jsonschema_rs.Draft202012Validator(schema)
    for good in ({}, {"preset": "ecram"}, {"model": "linear", "gamma": 0.3}, {"states": 10}):
        assert check.is_valid(good), good
    for bad in ({"model": "softbounds", "gamma": 0.3}, {"gamma": 0.3}, {"model": "magic"}):
        assert not check.is_valid(bad), bad


def test_aimc_validate_prints_the_family_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("analog: {device: {model: constant_step, gamma: 0.5}}\n")
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "analog.device.gamma: not a field of model 'constant_step' (only of model" in err
