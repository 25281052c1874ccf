"""analog.unit_cell: parsed once, defaults as aihwkit's, and clear errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from aimc_spec.spec import SpecError, parse_spec
from aimc_spec.unit_cell_spec import OneSidedCellSpec, VectorCellSpec


def problems(analog: dict[str, Any], **rest: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec({"analog": analog, **rest})
    return info.value.problems


def test_defaults_are_aihwkits() -> None:
    pair = parse_spec({"analog": {"unit_cell": {"kind": "one_sided"}}}).analog.unit_cell
    assert isinstance(pair, OneSidedCellSpec)
    thresholds = (pair.refresh_upper_thres, pair.refresh_lower_thres)
    assert (pair.refresh_every, *thresholds) == (0, 0.75, 0.25)
    cell = parse_spec({"analog": {"unit_cell": {"kind": "vector"}}}).analog.unit_cell
    assert isinstance(cell, VectorCellSpec)
    assert (cell.devices, cell.update_policy, cell.gammas()) == (2, "all", [0.5, 0.5])
    assert parse_spec({}).analog.unit_cell is None


def test_a_normalised_spec_round_trips() -> None:
    spec = parse_spec({"analog": {"device": {"preset": "pcm"}, "unit_cell": {"kind": "one_sided"}}})
    assert parse_spec(spec.normalised()) == spec


@pytest.mark.parametrize(
    ("cell", "field", "says"),
    [
        ({"kind": "vector", "devices": 2, "gamma_vec": [1.0]}, "gamma_vec", "one per device"),
        ({"kind": "vector", "devices": 2, "first_update_idx": 2}, "first_update_idx", "0..1"),
        ({"kind": "vector", "devices": 9}, "devices", "less than or equal to 8"),
        ({"kind": "vector", "update_policy": "best"}, "update_policy", "single_random"),
        ({"kind": "one_sided", "units_in_mbatch": False}, "units_in_mbatch", "only true"),
        ({"kind": "one_sided", "copy_inverted": True}, "copy_inverted", "only false"),
        (
            {"kind": "one_sided", "refresh_lower_thres": 0.8},
            "refresh_lower_thres",
            "refresh_upper_thres",
        ),
        ({"kind": "pair"}, "kind", "one_sided"),
    ],
)
def test_bad_cells_are_refused_by_field(cell: dict[str, Any], field: str, says: str) -> None:
    found = problems({"unit_cell": cell})
    assert len(found) == 1
    where, message = found[0]
    assert where == f"analog.unit_cell.{field}"
    assert says in message


def test_write_noise_in_a_pair_and_other_algorithms_are_refused() -> None:
    pair = {"kind": "one_sided"}
    noisy = problems({"device": {"preset": "reram_es"}, "unit_cell": pair})
    assert noisy[0][0] == "analog.unit_cell" and "write_noise_std" in noisy[0][1]
    # a vector cell never resets its devices: aihwkit's VectorUnitCell takes write noise
    vector = {"device": {"preset": "reram_es"}, "unit_cell": {"kind": "vector"}}
    assert parse_spec({"analog": vector}).analog.device.write_noise_std == 75.0
    other = problems({"unit_cell": {"kind": "vector"}}, optimizer={"algorithm": "tiki_taka"})
    says = (
        "unit cells train with optimizer.algorithm 'analog_sgd' or 'mixed_precision', "
        "not 'tiki_taka'"
    )
    assert other == [("analog.unit_cell", says)]
    mixed = parse_spec(
        {"analog": {"unit_cell": pair}, "optimizer": {"algorithm": "mixed_precision"}}
    )
    assert mixed.analog.unit_cell is not None
