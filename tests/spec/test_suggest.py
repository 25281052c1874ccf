"""An unknown field's error offers the closest known field, wherever the spec is parsed:
a spec file, a study, `aimc validate` and the API's 422s (tests/api/test_spec_errors.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimc_cli import main
from aimc_spec.spec import JobSpec, SpecError, parse_spec
from aimc_spec.suggest import closest_field, known_fields
from aimc_study.design import StudyFile
from aimc_study.plan import parse_plan


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return dict(caught.value.problems)


@pytest.mark.parametrize(
    ("data", "loc", "suggestion"),
    [
        ({"optimiser": {"lr": 0.1}}, "optimiser", "optimizer"),
        ({"modle": {}}, "modle", "model"),
        ({"training": {"epochz": 2}}, "training.epochz", "epochs"),
        ({"analog": {"device": {"dw_minn": 0.01}}}, "analog.device.dw_minn", "dw_min"),
    ],
)
def test_an_unknown_field_names_the_closest_known_one(
    data: dict, loc: str, suggestion: str
) -> None:
    assert problems(data)[loc] == (
        f"unknown field (not part of the job spec); did you mean {suggestion!r}?"
    )


def test_a_field_like_none_gets_no_guess() -> None:
    assert problems({"colour": "red"}) == {"colour": "unknown field (not part of the job spec)"}


def test_the_fields_offered_are_those_of_the_mapping_it_sits_in() -> None:
    """`name` is a field of the spec and of its dataset: under training it is neither."""
    assert "epochs" in known_fields(JobSpec, ["training"])
    assert "name" not in known_fields(JobSpec, ["training"])
    assert closest_field(JobSpec, ["dataset", "nmae"]) == "name"
    assert closest_field(JobSpec, ["training", "nmae"]) is None


def test_a_study_suggests_its_own_fields_through_lists(tmp_path: Path) -> None:
    """A study's fields, not a job spec's; a variant's inside the variants list."""
    with pytest.raises(SpecError) as caught:
        parse_plan(
            {"name": "s", "spec": {}, "grids": {}, "variants": [{"name": "a", "overides": {}}]},
            tmp_path,
        )
    found = dict(caught.value.problems)
    assert found["grids"] == "unknown field (not part of a study); did you mean 'grid'?"
    assert found["variants.0.overides"].endswith("did you mean 'overrides'?")
    assert closest_field(StudyFile, ["variants", "0", "overides"]) == "overrides"


def test_aimc_validate_prints_the_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("optimiser: {lr: 0.1}\n")
    assert main(["validate", str(spec)]) == 2
    assert "optimiser: unknown field (not part of the job spec); did you mean 'optimizer'?" in (
        capsys.readouterr().err
    )
