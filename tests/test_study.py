"""Study files: their form, their expansion into jobs, and errors that name the field; the
report's statistics from run folders."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from aimc_spec.spec import SpecError
from aimc_spec.statistics import HOLDS, welch
from aimc_spec.study import load_study_file, parse_study
from aimc_spec.study_report import evaluate_claim, load_runs, runs_csv, summary_csv

ROOT = Path(__file__).resolve().parents[1]
BASE = {"training": {"steps": 20, "micro_batch_size": 8, "eval_every": 10}}


def study(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "spec": BASE, **fields}


def problems(data: dict[str, Any], *, quick: bool = False) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_study(data, ROOT, quick=quick)
    return info.value.problems


def test_grid_variants_and_seeds_expand_into_validated_jobs() -> None:
    s = parse_study(
        study(
            grid={"optimizer.lr": [0.05, 0.2]},
            variants=[
                {
                    "name": "digital",
                    "overrides": {"analog.enabled": False, "optimizer.algorithm": "sgd"},
                },
                {"name": "analog"},
            ],
            seeds=[3, 4],
        ),
        ROOT,
    )
    assert s.keys == ["variant", "optimizer.lr"]
    assert [g.label for g in s.groups] == [
        "digital, lr=0.05",
        "digital, lr=0.2",
        "analog, lr=0.05",
        "analog, lr=0.2",
    ]
    assert len(s.jobs) == 8 and s.jobs[0].label == "digital_lr=0.05_seed=3"
    first = s.jobs[0].spec
    assert (first.seed, first.optimizer.lr, first.analog.enabled) == (3, 0.05, False)
    assert s.jobs[-1].spec.analog.enabled and s.jobs[-1].spec.optimizer.algorithm == "analog_sgd"
    assert [p.variant for p in s.parts] == ["digital", "analog"]  # one sweep each
    assert s.parts[0].base["analog"]["enabled"] is False and "optimizer.lr" in s.parts[0].grid


def test_quick_shrinks_grid_seeds_and_training() -> None:
    data = study(
        grid={"optimizer.lr": [0.05, 0.1, 0.2]},
        seeds=[1, 2, 3],
        quick={"overrides": {"training.steps": 10}, "grid": {"optimizer.lr": [0.1]}, "seeds": [1]},
    )
    assert len(parse_study(data, ROOT).jobs) == 9
    quick = parse_study(data, ROOT, quick=True)
    assert [(j.spec.optimizer.lr, j.seed, j.spec.training.steps) for j in quick.jobs] == [
        (0.1, 1, 10)
    ]
    assert problems(study(), quick=True) == [
        ("quick", "--quick needs a `quick:` block in the study")
    ]


def test_example_study_file_reads_its_base_spec_relative_to_itself() -> None:
    s = load_study_file(ROOT / "examples/studies/quick.yaml", quick=True)
    assert s.source == "../paper_async_analog.yaml"
    assert {j.spec.pipeline.stages for j in s.jobs} == {4} and len(s.jobs) == 8


def test_form_errors_name_the_field() -> None:
    found = problems(
        {
            "name": "s",
            "spec": {},
            "grid": {"seed": [1, 2]},
            "seeds": [1, 1],
            "colour": "red",
            "comparisons": [{"name": "c", "metric": "accuracy"}],
            "variants": [{"name": "a b"}],
        }
    )
    locs = dict(found)
    assert "seeds come from `seeds`" in locs["grid"]
    assert "distinct" in locs["seeds"]
    assert locs["colour"] == "unknown field (not part of a study)"
    assert "'accuracy' is not a metric; allowed: samples" in locs["comparisons.0.metric"]
    assert "variants.0.name" in locs
    assert problems([1, 2]) == [("", "a study must be a mapping, got list")]  # type: ignore[arg-type]


def test_design_errors_name_the_field() -> None:
    found = problems(
        study(
            grid={"optimizer.lr": [0.1, 0.2]},
            variants=[{"name": "x", "overrides": {"optimizer.lr": 0.3}}, {"name": "x"}],
            quick={"overrides": {"optimizer": {"lr": 1}}, "grid": {"pipeline.stages": [1]}},
        ),
        quick=True,
    )
    assert found == [
        ("quick.grid.pipeline.stages", "not a grid key; quick.grid only shrinks it"),
        ("quick.overrides.optimizer", "is a grid key; shrink it with quick.grid"),
        ("variants.0.overrides.optimizer.lr", "is also a grid key"),
        ("variants", "names must be distinct, got ['x', 'x']"),
    ]


def test_comparison_errors_name_the_field() -> None:
    found = dict(
        problems(
            study(
                grid={"optimizer.lr": [0.1, 0.2]},
                comparisons=[
                    {
                        "name": "c",
                        "x": "training.steps",
                        "where": {"optimizer.lr": 0.5},
                        "claims": [
                            {"a": {"variant": "x"}, "b": {"optimizer.lr": 0.1}},
                            {
                                "a": {"optimizer.lr": 0.1},
                                "b": {"optimizer.lr": 0.2},
                                "expect": "equal",
                            },
                        ],
                    }
                ],
            )
        )
    )
    assert found["comparisons.0.x"].startswith("'training.steps' is not a grid key")
    assert found["comparisons.0.where.optimizer.lr"] == "0.5 is not one of [0.1, 0.2]"
    assert found["comparisons.0.claims.0.a.variant"] == "not a factor; allowed: optimizer.lr"
    assert found["comparisons.0.claims.0"] == "a and b must name the same factors (at least one)"
    assert found["comparisons.0.claims.1.margin"] == "expect: equal needs a margin > 0"


def test_invalid_job_specs_are_located_at_the_override_that_made_them() -> None:
    found = problems(
        study(spec={**BASE, "model": {"hidden": [16]}}, grid={"pipeline.stages": [2, 9]})
    )
    assert found == [
        (
            "grid.pipeline.stages",
            "9 stages but the mlp has 2 layers; allowed: 1..2 (in stages=9)",
        )
    ]
    found = problems(study(variants=[{"name": "v", "overrides": {"optimizer.lr": -1}}]))
    assert found[0][0] == "variants.0.overrides.optimizer.lr" and "greater than 0" in found[0][1]
    assert problems(study(spec={"modle": {}}))[0] == (
        "spec.modle",
        "unknown field (not part of the job spec) (in base)",
    )
    missing = problems({"name": "s", "spec": "no/such.yaml"})
    assert missing[0][0] == "spec" and "cannot read" in missing[0][1]


def write_run(runs: Path, label: str, accuracy: float, status: str = "succeeded") -> None:
    folder = runs / label
    folder.mkdir(parents=True)
    points = [{"step": 10, "samples": 80, "sim_time_ns": 5.0, "test_accuracy": accuracy}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    result = {
        "status": status,
        "error": None,
        "timeline": {"makespan_ns": 7.0},
        "wall_seconds": 1.5,
    }
    (folder / "result.json").write_text(json.dumps(result))


def test_report_statistics_from_run_folders(tmp_path: Path) -> None:
    s = parse_study(
        study(
            grid={"pipeline.schedule": ["sequential", "async"]},
            seeds=[1, 2, 3],
            comparisons=[
                {
                    "name": "c",
                    "claims": [
                        {
                            "a": {"pipeline.schedule": "async"},
                            "b": {"pipeline.schedule": "sequential"},
                        }
                    ],
                }
            ],
        ),
        ROOT,
    )
    accuracies = {"sequential": [0.80, 0.82, 0.81], "async": [0.90, 0.93, 0.91]}
    for job in s.jobs:
        write_run(tmp_path, job.label, accuracies[job.factors["pipeline.schedule"]][job.seed - 1])
    records = load_runs(s, tmp_path)
    rows = list(csv.DictReader(io.StringIO(runs_csv(s, records))))
    assert [(r["pipeline.schedule"], r["seed"], r["sim_time_ns"]) for r in rows][:2] == [
        ("sequential", "1", "7.0"),
        ("sequential", "2", "7.0"),
    ]
    summary = list(csv.DictReader(io.StringIO(summary_csv(s, records, ["test_accuracy"]))))
    assert float(summary[1]["mean"]) == pytest.approx(0.9133333)
    [result] = evaluate_claim(s, s.file.comparisons[0], s.file.comparisons[0].claims[0], records)
    expected = welch(accuracies["async"], accuracies["sequential"])
    assert result.difference == expected and result.verdict == HOLDS
