"""Study files: their form, their expansion into jobs, and errors that name the field; the
report's statistics from run folders."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from aimc_spec.spec import SpecError
from aimc_study.claims import evaluate_claim
from aimc_study.plan import load_study_file, parse_plan, parse_study
from aimc_study.records import load_runs, measure, measure_name
from aimc_study.statistics import HOLDS, welch
from aimc_study.tables import runs_csv, summary_csv

ROOT = Path(__file__).resolve().parents[2]
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
        "unknown field (not part of the job spec); did you mean 'model'? (in base)",
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


DIGITAL = {"analog.enabled": False, "optimizer.algorithm": "sgd"}


def test_named_factors_cross_with_each_other_and_the_grid() -> None:
    s = parse_study(
        study(
            grid={"optimizer.lr": [0.05, 0.2]},
            factors={
                "device": [{"name": "digital", "overrides": DIGITAL}, {"name": "analog"}],
                "depth": [
                    {"name": "p1", "value": 1, "overrides": {"pipeline.stages": 1}},
                    {"name": "p3", "value": 3, "overrides": {"pipeline.stages": 3}},
                ],
            },
            seeds=[1],
        ),
        ROOT,
    )
    assert s.keys == ["device", "depth", "optimizer.lr"]
    assert [g.label for g in s.groups][:3] == [
        "digital, p1, lr=0.05",
        "digital, p1, lr=0.2",
        "digital, p3, lr=0.05",
    ]
    job = s.matching({"device": "digital", "depth": "p3", "optimizer.lr": 0.2})[0].jobs[0]
    assert (job.spec.analog.enabled, job.spec.pipeline.stages, job.spec.optimizer.lr) == (
        False,
        3,
        0.2,
    )
    assert [p.levels for p in s.parts][1] == {"device": "digital", "depth": "p3"}
    assert s.position("depth", "p3") == 3.0 and s.position("optimizer.lr", 0.2) == 0.2
    quick = parse_study(
        study(
            factors={"device": [{"name": "digital", "overrides": DIGITAL}, {"name": "analog"}]},
            quick={"factors": {"device": ["analog"]}},
        ),
        ROOT,
        quick=True,
    )
    assert [g.label for g in quick.groups] == ["analog"]


def test_factor_and_claim_errors_name_the_field() -> None:
    found = dict(
        problems(
            study(
                grid={"optimizer.lr": [0.1, 0.2]},
                factors={
                    "device": [{"name": "digital", "overrides": DIGITAL}, {"name": "analog"}],
                    "alg": [{"name": "sgd", "overrides": {"optimizer.algorithm": "sgd"}}],
                },
                quick={"factors": {"device": ["ideal"], "size": ["x"]}},
            ),
            quick=True,
        )
    )
    assert found["factors.alg.0.overrides.optimizer.algorithm"] == "is set by factor 'device' too"
    assert found["quick.factors.device"] == "['ideal']: a non-empty choice of ['digital', 'analog']"
    assert found["quick.factors.size"] == "not a named factor; allowed: ['device', 'alg']"
    found = dict(
        problems(
            study(
                grid={"optimizer.lr": [0.1, 0.2]},
                factors={"device": [{"name": "digital", "overrides": DIGITAL}, {"name": "analog"}]},
                comparisons=[
                    {
                        "name": "c",
                        "claims": [
                            {"kind": "trend", "x": "device"},
                            {"kind": "trend", "x": "optimizer.lr", "a": {"device": "analog"}},
                            {
                                "kind": "ratio",
                                "a": {"device": "analog"},
                                "b": {"device": "digital"},
                                "formula": "B / 2",
                                "symbols": {"B": "device"},
                            },
                        ],
                    }
                ],
            )
        )
    )
    assert "'device' has values that are not numbers" in found["comparisons.0.claims.0.x"]
    assert "comparisons.0.claims.1" not in found  # a trend over one side's groups is fine
    assert found["comparisons.0.claims.2.symbols.B"] == "'device' is fixed by a and b; it must vary"

    form = dict(
        problems(
            study(
                factors={"Bad.Name": [{"name": "x"}], "empty": []},
                comparisons=[
                    {
                        "name": "c",
                        "claims": [
                            {"kind": "trend"},
                            {"kind": "ratio", "a": {}, "b": {}},
                            {"kind": "ratio", "formula": "__import__('os').getcwd()"},
                            {"kind": "ratio", "formula": "B + 1"},
                            {"x": "optimizer.lr"},
                        ],
                    }
                ],
            )
        )
    )
    assert "a factor's name is lower-case letters" in form["factors"]
    tail = problems(study(comparisons=[{"name": "c", "tail": 3, "target": 0.9}]))
    assert tail == [
        ("comparisons.0.tail", "a time-to-target comparison looks at every point, not a tail")
    ]
    clock = problems(study(comparisons=[{"name": "c", "clock": "wall"}]))
    assert clock == [("comparisons.0.clock", "a clock is read only to reach a target: set target")]
    assert form["comparisons.0.claims.0.x"] == "a trend claim needs the factor it runs along"
    assert form["comparisons.0.claims.1.formula"] == "a ratio claim needs the expected ratio"
    assert "only numbers, names and + - * / **" in form["comparisons.0.claims.2.formula"]
    assert form["comparisons.0.claims.3.symbols"] == "the formula's ['B'] need a factor each"
    assert form["comparisons.0.claims.4.x"] == "not a field of a difference claim"
    logs = dict(
        problems(
            study(
                grid={"optimizer.lr_decay": [None]},
                factors={"f": [{"name": "a", "value": 0}, {"name": "b", "value": 1}]},
                comparisons=[{"name": "c", "claims": [{"kind": "trend", "x": "f", "log_x": True}]}],
            )
        )
    )
    assert logs["comparisons.0.claims.0.x"] == "log_x needs positive values of 'f', got [0.0, 1.0]"


def test_parts_take_the_top_spec_seeds_and_quick() -> None:
    data = {
        "name": "paper",
        "spec": BASE,
        "seeds": [1, 2, 3],
        "quick": {"overrides": {"training.steps": 4}, "seeds": [1]},
        "parts": [
            {"name": "one", "grid": {"optimizer.lr": [0.1, 0.2]}},
            {
                "name": "two",
                "spec": {**BASE, "model": {"hidden": [8]}},
                "seeds": [7],
                "quick": {"overrides": {"training.eval_every": 2}},
            },
        ],
    }
    plan = parse_plan(data, ROOT)
    one, two = plan.studies
    assert plan.parted and plan.jobs == 7 and (one.name, two.name) == ("one", "two")
    assert one.seeds == [1, 2, 3] and two.seeds == [7]
    assert two.jobs[0].spec.model.hidden == [8]
    assert plan.folder(Path("out"), two) == Path("out/two")
    quick = parse_plan(data, ROOT, quick=True)
    first, second = quick.studies
    assert [j.seed for j in second.jobs] == [1]
    assert first.jobs[0].spec.training.steps == 4
    assert second.jobs[0].spec.training.steps == 4  # the top's quick overrides, merged
    assert second.jobs[0].spec.training.eval_every == 2
    assert problems(data)[0] == ("parts", "this study has parts: read it with parse_plan")

    bad: dict[str, Any] = {
        "name": "p",
        "grid": {"optimizer.lr": [0.1]},
        "parts": [{"name": "a b", "spec": BASE}],
    }
    with pytest.raises(SpecError) as info:
        parse_plan(bad, ROOT)
    assert info.value.problems == [("grid", "a study with parts keeps it in each part")]
    del bad["grid"]
    with pytest.raises(SpecError) as info:
        parse_plan(bad, ROOT)
    assert info.value.problems[0][0] == "parts.0.name"
    bad["parts"] = [{"name": "x", "spec": BASE, "parts": [{"name": "y", "spec": BASE}]}]
    with pytest.raises(SpecError) as info:
        parse_plan(bad, ROOT)
    assert info.value.problems == [("parts.0.parts", "parts do not nest")]
    located = {
        "name": "p",
        "spec": BASE,
        "parts": [{"name": "a", "grid": {"pipeline.stages": [9]}}],
    }
    with pytest.raises(SpecError) as info:
        parse_plan(located, ROOT)
    assert info.value.problems[0][0] == "parts.0.grid.pipeline.stages"


def write_points(runs: Path, label: str, points: list[dict[str, float]], makespan: float) -> None:
    folder = runs / label
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    result = {"status": "succeeded", "timeline": {"makespan_ns": makespan}, "wall_seconds": 1}
    (folder / "result.json").write_text(json.dumps(result))


def test_tail_and_time_to_target_measures(tmp_path: Path) -> None:
    s = parse_study(
        study(
            comparisons=[
                {"name": "tail", "tail": 2},
                {"name": "target", "target": 0.5},
                {"name": "loss", "metric": "test_loss", "target": 1.0},
                {"name": "wall", "target": 0.5, "clock": "wall"},
                {"name": "energy", "target": 0.5, "clock": "energy"},
                {"name": "spent", "metric": "energy_pj"},
            ]
        ),
        ROOT,
    )
    points = [
        {"sim_time_ns": 10.0, "wall_s": 1.5, "test_accuracy": 0.3, "test_loss": 2.0},
        {"sim_time_ns": 20.0, "wall_s": 2.5, "test_accuracy": 0.6, "test_loss": 0.9},
        {"sim_time_ns": 30.0, "wall_s": 3.5, "test_accuracy": 0.4, "test_loss": 1.5},
    ]
    for point, pj in zip(points, (0.0, 7e6, 9e6), strict=True):
        point["energy_pj"] = pj
    write_points(tmp_path, s.jobs[0].label, points, 30.0)
    record = load_runs(s, tmp_path)[s.jobs[0].label]
    tail, target, loss, wall, energy, spent = s.file.comparisons
    assert measure(record, tail) == pytest.approx(0.5)  # mean of 0.6 and 0.4
    assert measure(record, target) == 20.0  # the first point at or above 0.5
    assert measure(record, loss) == 20.0  # a loss reaches its target from above
    assert measure(record, wall) == 2.5  # the same point, on the wall clock
    assert measure_name(wall) == "wall-clock s until test_accuracy ≥ 0.5"
    assert measure(record, energy) == 7e6  # energy to target: the pJ spent by that point
    assert measure_name(energy) == "pJ spent until test_accuracy ≥ 0.5"
    assert measure(record, spent) == 9e6  # the energy of the whole run
    never = target.model_copy(update={"target": 0.9})
    assert math.isnan(measure(record, never))


def test_trend_and_ratio_claims_from_run_folders(tmp_path: Path) -> None:
    lrs = [0.05, 0.1, 0.2]
    s = parse_study(
        study(
            grid={"optimizer.lr": lrs, "pipeline.schedule": ["gpipe", "async"]},
            seeds=[1, 2],
            comparisons=[
                {
                    "name": "gap",
                    "claims": [
                        {
                            "kind": "trend",
                            "a": {"pipeline.schedule": "gpipe"},
                            "b": {"pipeline.schedule": "async"},
                            "x": "optimizer.lr",
                            "log_x": True,
                        }
                    ],
                },
                {
                    "name": "time",
                    "metric": "sim_time_ns",
                    "claims": [
                        {
                            "kind": "ratio",
                            "a": {"pipeline.schedule": "gpipe"},
                            "b": {"pipeline.schedule": "async"},
                            "formula": "10 * lr",
                            "symbols": {"lr": "optimizer.lr"},
                            "expect": "equal",
                            "margin": 0.1,
                        }
                    ],
                },
            ],
        ),
        ROOT,
    )
    accuracy = {"gpipe": {1: 0.9, 2: 0.8}, "async": {1: 0.85, 2: 0.8}}
    for job in s.jobs:
        lr, schedule = job.factors["optimizer.lr"], job.factors["pipeline.schedule"]
        # the gap grows with lr: gpipe - async = (seed 1: 0.05, seed 2: 0) + lr
        value = accuracy[schedule][job.seed] + (lr if schedule == "gpipe" else 0.0)
        makespan = 100.0 * (
            10 * lr * (1.02 if job.seed == 1 else 0.98) if schedule == "gpipe" else 1
        )
        write_points(tmp_path, job.label, [{"test_accuracy": value}], makespan)
    records = load_runs(s, tmp_path)
    gap, time = s.file.comparisons
    [trend] = evaluate_claim(s, gap, gap.claims[0], records)
    xs = [math.log(lr) for lr in lrs for _ in (1, 2)]
    ys = [d + lr for lr in lrs for d in (0.05, 0.0)]
    reference = stats.linregress(xs, ys)
    assert trend.difference is not None and trend.verdict == HOLDS
    assert trend.difference.estimate == pytest.approx(reference.slope)
    assert trend.difference.p_value == pytest.approx(reference.pvalue)
    assert trend.stratum == {} and "0.05: 0.075" in trend.detail
    ratios = evaluate_claim(s, time, time.claims[0], records)
    assert [r.stratum for r in ratios] == [{"optimizer.lr": lr} for lr in lrs]
    for r in ratios:  # a/b = formula * (1.02, 0.98): deviations +-0.02 around 0
        assert r.difference is not None and r.difference.estimate == pytest.approx(0.0, abs=1e-12)
        half = 12.7062047 * 0.02 * math.sqrt(2) / math.sqrt(2)
        assert r.difference.ci_high == pytest.approx(half)
        assert r.verdict == "inconclusive"  # 2 seeds: t_{0.975,1} = 12.7 makes it wide
