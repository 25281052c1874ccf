"""Specs that pass the schema build (model, data, schedule) or fail naming a field.

A property test: hypothesis draws job specs from the schema's own ranges (sizes kept
small: the property is about shapes, not scale), and every one either passes `aimc
validate` and constructs, or fails with the spec's own errors (SpecError, RunError)
whose message starts with a field path; never a traceback from torch or numpy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimc_cli import main
from aimc_engine.runner import Callbacks, RunError, run
from aimc_spec.cost import data_shape
from aimc_spec.fit import fit_problem
from aimc_spec.spec import SpecError, parse_spec

FIELD = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)*: ")

models = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["mlp", "cnn", "resnet"]),
        "hidden": st.lists(st.integers(1, 12), max_size=3),
        "channels": st.lists(st.integers(1, 6), min_size=1, max_size=4),
        "fc": st.integers(1, 12),
        "activation": st.sampled_from(["tanh", "relu", "sigmoid"]),
    }
)
datasets = st.one_of(
    st.fixed_dictionaries(
        {"name": st.just("digits"), "test_fraction": st.sampled_from([0.2, 0.5, 0.99])}
    ),
    st.fixed_dictionaries(
        {
            "name": st.just("synthetic"),
            "synthetic": st.fixed_dictionaries(
                {
                    "n_train": st.integers(10, 80),
                    "n_test": st.integers(10, 30),
                    "features": st.sampled_from([1, 2, 3, 4, 7, 9, 16, 30, 36, 64]),
                    "classes": st.integers(2, 5),
                }
            ),
        }
    ),
)
specs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 10),
        "device": st.just("cpu"),
        "dataset": datasets,
        "model": models,
        "analog": st.fixed_dictionaries(
            {
                "enabled": st.booleans(),
                "layers": st.sampled_from(["all", "last", [0], [1], [0, 2]]),
                "update": st.sampled_from(["expected", "pulsed", "rounded"]),
            }
        ),
        "optimizer": st.fixed_dictionaries(
            {"algorithm": st.sampled_from(["sgd", "analog_sgd", "tiki_taka"])}
        ),
        "training": st.fixed_dictionaries(
            {
                "steps": st.integers(1, 3),
                "micro_batch_size": st.sampled_from([1, 3, 8, 64, 500]),
                "eval_every": st.integers(1, 3),
            }
        ),
        "pipeline": st.fixed_dictionaries(
            {
                "stages": st.integers(1, 6),
                "schedule": st.sampled_from(
                    ["sequential", "gpipe", "1f1b", "async", "async_stash"]
                ),
                "micro_batches": st.integers(1, 4),
            }
        ),
    }
)


def _named(message: str) -> bool:
    return FIELD.match(message) is not None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(specs)
def test_schema_valid_specs_build_or_name_their_field(data: dict[str, Any]) -> None:
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        assert exc.problems and all(loc for loc, _ in exc.problems), exc
        return
    try:
        # construction only: the first step's cancel check stops the run at once
        run(spec, Callbacks(should_stop=lambda: True))
    except RunError as exc:
        assert _named(str(exc)), str(exc)
        known = data_shape(spec, None)
        problem = fit_problem(spec, known[1]) if known else None
        if str(exc).startswith(("model.kind", "model.channels")):
            # what build_model refused, the API's submit-time check refuses too
            assert problem is not None and str(exc).startswith(problem[0])
        return
    known = data_shape(spec, None)
    assert known is not None and fit_problem(spec, known[1]) is None


def test_aimc_run_names_the_field_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "cnn.yaml"
    spec.write_text("model: {kind: cnn, channels: [8, 16, 32, 64]}\ntraining: {steps: 2}\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("model.channels: 4 conv+pool blocks") and "Traceback" not in err
