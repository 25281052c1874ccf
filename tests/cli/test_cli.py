"""`aimc run`: artifacts on disk, exit codes, progress output; every example is runnable."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import yaml
from safetensors import safe_open

from aimc_cli import main
from aimc_spec.spec import AlgorithmName, load_spec_file

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def aimc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aimc_cli", *args], capture_output=True, text=True)


def write_spec(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_writes_every_artifact(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.yaml",
        {"optimizer": {"algorithm": "tiki_taka"}, "training": {"steps": 20, "eval_every": 5}},
    )
    out = tmp_path / "out"
    proc = aimc("run", str(spec), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "succeeded"
    # not a terminal: plain progress lines, one per metric point
    assert sum(line.startswith("step ") for line in proc.stderr.splitlines()) == 5
    result = json.loads((out / "result.json").read_text())
    assert result["updates"] == 20 and result["spec"]["optimizer"]["algorithm"] == "tiki_taka"
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 5, 10, 15, 20]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 5 and float(rows[-1]["test_accuracy"]) == result["final"]["test_accuracy"]
    with safe_open(str(out / "weights.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert json.loads(f.metadata()["spec"])["name"] == "job"
    assert "units.0.1.tile.weight" in keys  # W
    assert "units.0.1.fast.weight" in keys  # Tiki-Taka's P
    assert "units.0.1.tile.device_model.w_max" in keys  # device state
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timeline = json.loads((out / "timeline.json").read_text())  # the dashboard's Gantt
    assert timeline["stages"] == result["spec"]["pipeline"]["stages"]
    first = timeline["actions"][0]
    assert first[:3] == [0, "F", 0] and first[3] == 0 and first[4] > first[3]
    assert {a[1] for a in timeline["actions"]} == {"F", "B", "U"}


def test_bad_spec_exits_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", {"training": {"epochs": 1, "steps": 2}})
    proc = aimc("run", str(spec), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "training.steps: give exactly one of epochs or steps"


def test_unrunnable_spec_exits_2_with_the_reason(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.yaml", {"dataset": {"name": "uploaded", "id": "x1"}})
    proc = aimc("run", str(spec), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("dataset.name: 'uploaded' datasets are resolved by the aimc")


def test_failed_run_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(
        tmp_path / "s.yaml",
        {
            "analog": {"enabled": False},
            "model": {"activation": "relu", "hidden": [64, 64, 64]},  # diverges at every seed tried
            "optimizer": {"algorithm": "sgd", "lr": 1000},
            "training": {"steps": 30, "micro_batch_size": 8},
        },
    )
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "training diverged" in capsys.readouterr().err


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate_and_start(example: Path, tmp_path: Path) -> None:
    data = load_spec_file(example).model_dump()
    data["training"] = {**data["training"], "epochs": None, "steps": 3, "eval_every": 3}
    assert (
        main(["run", str(write_spec(tmp_path / "s.yaml", data)), "--out", str(tmp_path), "--quiet"])
        == 0
    )


def test_examples_cover_every_preset_and_algorithm() -> None:
    specs = [load_spec_file(p) for p in EXAMPLES]
    assert {s.analog.device.preset for s in specs if s.analog.enabled} >= {
        "reram_es",
        "reram_sb",
        "capacitor",
        "ecram",
        "idealized",
        "gokmen_vlasov",
    }
    assert {s.optimizer.algorithm for s in specs} == set(get_args(AlgorithmName))
    assert {s.analog.update for s in specs if s.analog.enabled} == {"expected", "pulsed", "rounded"}


def test_schedule_prints_the_grid_split_and_timeline(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "s.yaml",
        {"model": {"hidden": [8, 8, 8]}, "pipeline": {"stages": 4, "schedule": "gpipe"}},
    )
    proc = aimc("schedule", str(spec), "--actions", "6", "--microbatches", "10")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "gpipe: P=4, 10 micro-batches, 5 per update"
    assert lines[1] == "stage 0: 0F0 0F1 0F2 0F3 0F4 0B4 ... (+16)"
    assert "stage 3: units 3..3 of the mlp, 1 layers" in lines
    assert any(line.startswith("unit time") and "bubble 0.375" in line for line in lines)


def test_configs_are_listed_and_validate_shows_what_one_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 52 and lines[0].split()[:2] == ["ReRamESPreset", "reram_es"]
    assert main(["configs", "agad_ecram"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("# AGADEcRamPreset (agad_ecram)")
    assert yaml.safe_load(shown)["optimizer"]["agad"]["tail_weightening"] == 50.0
    assert main(["configs", "agad_ecrm"]) == 2
    assert "did you mean AGADEcRamPreset" in capsys.readouterr().err
    spec = write_spec(tmp_path / "s.yaml", {"analog": {"config": "pcm", "bit_length": 7}})
    assert main(["validate", str(spec)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# analog.config PCMPreset (pcm)")
    assert "#     unit_cell:" in out  # the configuration's part, as comments
    normalised = yaml.safe_load(out)  # then the spec as it runs: its own bit_length wins
    assert normalised["analog"]["bit_length"] == 7
    assert normalised["analog"]["unit_cell"]["kind"] == "one_sided"
