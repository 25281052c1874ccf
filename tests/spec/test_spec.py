"""The job spec: defaults, presets, normalisation and clear errors for bad specs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aimc_spec.presets import PRESETS
from aimc_spec.spec import JobSpec, SpecError, load_spec_file, parse_spec, read_spec_file


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return info.value.problems


def test_minimal_spec_takes_defaults() -> None:
    spec = parse_spec({})
    assert spec.dataset.name == "digits"
    assert spec.training.epochs == 10 and spec.training.steps is None
    assert spec.analog.device.dw_min == pytest.approx(2 / 1200)
    assert spec.pipeline.latency_ns.update == 165.9


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_expand_and_survive_a_round_trip(name: str) -> None:
    spec = parse_spec({"analog": {"device": {"preset": name}}})
    dev = spec.analog.device
    preset = PRESETS[name]
    assert dev.model == preset["model"]
    assert dev.dw_min == pytest.approx(preset["dw_min"])
    assert dev.states == pytest.approx((preset["w_max"] - preset["w_min"]) / preset["dw_min"])
    assert (dev.w_min, dev.w_max, dev.up_down) == (
        preset["w_min"],
        preset["w_max"],
        preset["up_down"],
    )
    again = parse_spec(spec.normalised())
    assert again == spec


def test_ecram_has_two_slopes() -> None:
    dev = parse_spec({"analog": {"device": {"preset": "ecram"}}}).analog.device
    assert (dev.gamma, dev.gamma_down) == (0.1153, 0.5085)


def test_steps_instead_of_epochs() -> None:
    spec = parse_spec({"training": {"steps": 50}})
    assert spec.training.steps == 50 and spec.training.epochs is None


def test_dw_min_instead_of_states() -> None:
    dev = parse_spec({"analog": {"device": {"dw_min": 0.01}}}).analog.device
    assert dev.states == pytest.approx(200)


BAD_SPECS = [
    # degenerate devices: refused with the field named, never a math error or NaN weights
    ({"analog": {"device": {"states": 2}}}, "analog.device.states", "needs more than 2"),
    (
        {"analog": {"device": {"dw_min": 0.9, "w_min": -0.5, "w_max": 2.0}}},
        "analog.device.dw_min",
        "reaches past w_min",
    ),
    (
        {"analog": {"device": {"model": "exp_step", "exp_step": {"A_up": 50.0}}}},
        "analog.device.exp_step.A_up",
        "no up pulse moves",
    ),
    (
        {"analog": {"device": {"d2d_variation": 0.6}}},
        "analog.device.d2d_variation",
        "less than or equal to 0.5",
    ),
    ({"modle": {}}, "modle", "unknown field"),
    ({"model": {"kind": "transformer"}}, "model.kind", "allowed: 'mlp', 'cnn' or 'resnet'"),
    ({"training": {"epochs": 3, "steps": 10}}, "training.steps", "exactly one of epochs or steps"),
    ({"pipeline": {"stages": 5}}, "pipeline.stages", "5 stages but the mlp has 3 layers"),
    (
        {"analog": {"device": {"preset": "ecram", "states": 10}}},
        "analog.device.states",
        "set by preset 'ecram'",
    ),
    ({"analog": {"device": {"w_min": 0.5}}}, "analog.device.w_min", "less than 0"),
    ({"optimizer": {"lr": -1}}, "optimizer.lr", "greater than 0"),
    ({"dataset": {"name": "npz"}}, "dataset.path", "required for dataset 'npz'"),
    ({"dataset": {"name": "npz", "path": "/no/such.npz"}}, "dataset.path", "no such file"),
    ({"dataset": {"name": "mnist_idx", "path": "/no/dir"}}, "dataset.path", "no such folder"),
    (
        {"dataset": {"name": "cifar10", "path": "/no/dir"}},
        "dataset.path",
        "no such folder: '/no/dir' (expected the cifar-10-batches-py folder)",
    ),
    ({"dataset": {"name": "cifar10"}}, "dataset.path", "required for dataset 'cifar10'"),
    ({"analog": {"layers": [0, 7]}}, "analog.layers.1", "index 7 out of range 0..2"),
    (
        {"analog": {"enabled": False}, "optimizer": {"algorithm": "analog_sgd"}},
        "optimizer.algorithm",
        "needs analog.enabled: true",
    ),
    ({"model": {"kind": "cnn"}, "dataset": {"name": "synthetic"}}, "model.kind", "needs image"),
    ({"training": {"micro_batch_size": 0}}, "training.micro_batch_size", "greater than or equal"),
    ({"model": {"hidden": [64, -3]}}, "model.hidden.1", "between 1 and 65536"),
    (
        {"analog": {"update": "magic"}},
        "analog.update",
        "allowed: 'expected', 'pulsed' or 'rounded'",
    ),
    ({"name": "x" * 201}, "name", "at most 200 characters"),
    ({"analog": {"device": {"states": 100, "dw_min": 0.5}}}, "analog.device.states", "disagree"),
    ({"dataset": {"name": "uploaded"}}, "dataset.id", "required"),
    ({"analog": {"device": {"preset": [None]}}}, "analog.device.preset", "allowed:"),
    ({"pipeline": {"schedule": "zigzag"}}, "pipeline.schedule", "allowed: 'sequential', 'gpipe'"),
    ({"pipeline": {"micro_batches": 0}}, "pipeline.micro_batches", "greater than or equal to 1"),
    ({"pipeline": {"stages": 0}}, "pipeline.stages", "greater than or equal to 1"),
    ({"pipeline": {"latency_ns": {"update": -1}}}, "pipeline.latency_ns.update", "greater than"),
    (
        {"model": {"kind": "resnet", "channels": [8]}, "pipeline": {"stages": 4}},
        "pipeline.stages",
        "4 stages but the resnet has 3 layers",
    ),
]


@pytest.mark.parametrize(("data", "loc", "message"), BAD_SPECS)
def test_bad_specs_name_the_field_and_what_is_allowed(data: dict, loc: str, message: str) -> None:
    found = problems(data)
    assert any(p_loc == loc and message in p_msg for p_loc, p_msg in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"seed": -1, "optimizer": {"lr": 0}, "extra": 1})
    assert {loc for loc, _ in found} == {"seed", "optimizer.lr", "extra"}


def test_not_a_mapping() -> None:
    assert "must be a mapping" in problems([1, 2])[0][1]  # type: ignore[arg-type]


def test_load_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec_file(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match=r"list\.yaml: a job spec must be a mapping, got list"):
        load_spec_file(listed)


def test_read_spec_file_gives_the_mapping_as_written(tmp_path: Path) -> None:
    """A sweep's base: presets stay unexpanded; an empty file is the all-defaults spec."""
    path = tmp_path / "s.yaml"
    path.write_text("analog: {device: {preset: reram_sb}}\n")
    assert read_spec_file(path) == {"analog": {"device": {"preset": "reram_sb"}}}
    assert load_spec_file(path).analog.device.model == "softbounds"
    path.write_text("")
    assert read_spec_file(path) == {}


def test_spec_module_and_package_do_not_import_torch() -> None:
    """Neither do the modules the API uses, nor the API app itself (it stays light)."""
    code = (
        "import aimc_engine, aimc_spec.spec, aimc_spec.cost, aimc_engine.pipeline.schedule, "
        "aimc_engine.pipeline.timeline, aimc_spec.sweep, aimc_study.comparison, "
        "aimc_spec.dataset_files, aimc_spec.metric_record, service.app, sys; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_field_has_a_description() -> None:
    """Descriptions reach OpenAPI and the docs of every field."""
    missing = []

    def walk(model: type, prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{prefix}{name}.")
            elif not field.description:
                missing.append(prefix + name)

    walk(JobSpec, "")
    assert not missing, missing


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aimc_cli", *args], capture_output=True, text=True)


def test_cli_validate_prints_the_normalised_spec(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("analog: {device: {preset: reram_sb}}\n")
    out = run_cli("validate", str(f))
    assert out.returncode == 0, out.stderr
    data = yaml.safe_load(out.stdout)
    assert data["analog"]["device"]["model"] == "softbounds"
    assert data["analog"]["device"]["dw_min"] == 0.002


def test_cli_validate_bad_spec_exits_2_with_a_line_per_problem(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("optimizer: {lr: 0}\nmodel: {kind: rnn}\n")
    out = run_cli("validate", str(f))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("model.kind: got 'rnn'; allowed:")
    assert lines[1].startswith("optimizer.lr: ")
