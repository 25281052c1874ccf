"""The hardware block and the torch-free parts of the energy estimate (docs/energy.md):
profiles and their sources' numbers, refused values, transfer reads per algorithm, the
pooled boundary of a CNN stage, units."""

from __future__ import annotations

from typing import Any

import pytest

from aimc_spec.energy import (
    StageWork,
    boundary_elements,
    column_reads,
    digital_reference,
    estimate,
    format_energy,
)
from aimc_spec.resources import Layer, layers
from aimc_spec.spec import SpecError, parse_spec


def problems(hardware: Any) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec({"hardware": hardware})
    return info.value.problems


def test_the_published_profile_carries_its_sources_numbers() -> None:
    hw = parse_spec({}).hardware
    assert hw.profile == "published"
    assert hw.mvm_pj_per_mac == pytest.approx(2 / 9.76)  # Le Gallo 2023: 9.76 TOPS/W
    assert hw.digital_op_pj == pytest.approx(0.9 + 3.7)  # Han 2015 Table 1
    assert hw.sram_pj_per_word == 5.0
    assert hw.digital_pj_per_flop == pytest.approx(400 / 19.5)  # A100: 400 W, 19.5 TFLOPS
    assert hw.dac_pj is None and hw.adc_pj is None and hw.link_pj_per_bit is None
    assert hw.pulse_pj_for("ecram") == 0.001 and hw.pulse_pj_for("reram_es") is None
    arrays = parse_spec({"hardware": {"profile": "arrays_only"}}).hardware
    assert arrays.digital_op_pj is None and arrays.sram_pj_per_word is None
    own = parse_spec({"hardware": {"profile": "arrays_only", "digital_op_pj": 1.5}}).hardware
    assert own.digital_op_pj == 1.5 and own.mvm_pj_per_mac == pytest.approx(2 / 9.76)
    assert parse_spec({"hardware": {"pulse_pj": 0.2}}).hardware.pulse_pj_for("ecram") == 0.2


@pytest.mark.parametrize(
    ("hardware", "where", "says"),
    [
        ({"mvm_pj_per_mac": -1}, "hardware.mvm_pj_per_mac", "greater than or equal to 0"),
        ({"link_bits": 0}, "hardware.link_bits", "greater than or equal to 1"),
        ({"link_bits": None}, "hardware.link_bits", "integer"),
        ({"profile": "tpu"}, "hardware.profile", "'published' or 'arrays_only'"),
        ({"pulse_energy": 1}, "hardware.pulse_energy", "pulse_pj"),
        ({"target_accuracy": 1.5}, "hardware.target_accuracy", "less than or equal to 1"),
    ],
)
def test_bad_figures_are_refused_by_field(hardware: dict, where: str, says: str) -> None:
    found = problems(hardware)
    assert found[0][0] == where and says in found[0][1], found


def test_transfer_reads_follow_each_algorithms_rule() -> None:
    layer = Layer(fan_in=6, fan_out=4, positions=3)

    def reads(optimizer: dict[str, Any], samples: int = 50, updates: int = 10) -> int:
        spec = parse_spec({"optimizer": optimizer})
        return column_reads(spec, layer, samples, updates)

    assert reads({"algorithm": "analog_sgd"}) == 0
    # tiki_taka: every 2 updates, 3 columns: 5 transfers x 3
    tt = {"algorithm": "tiki_taka", "tiki_taka": {"transfer_every": 2, "transfer_columns": 3}}
    assert reads(tt) == 15
    assert reads({"algorithm": "ttv2", "ttv2": {"transfer_columns": 9}}) == 10 * 6  # <= fan_in
    # chopped, counting rows: 50 samples x 3 positions every 4 rows, one column each
    rows = {"units_in_mbatch": False, "transfer_every": 4}
    assert reads({"algorithm": "chopped_ttv2", "chopped_ttv2": rows}) == 150 // 4
    assert reads({"algorithm": "agad", "agad": {"transfer_every": 3}}) == 3
    rl = {"algorithm": "residual_learning", "residual_learning": {"transfer_every": 5}}
    assert reads(rl) == 2 * 6  # all of P, every 5 updates


def test_a_cnn_stage_sends_its_pooled_output() -> None:
    spec = parse_spec({"dataset": {"name": "digits"}, "model": {"kind": "cnn", "channels": [4]}})
    found = layers(spec, (1, 8, 8))
    assert found[0] == Layer(25, 4, 64)  # 5x5 conv, 4 channels on 8x8
    assert boundary_elements(spec, found, 0) == 4 * 4 * 4  # pooled to 4x4
    assert boundary_elements(spec, found, 1) == found[1].fan_out  # the fc layer: as it is


def test_the_digital_reference_counts_flops() -> None:
    spec = parse_spec({"model": {"hidden": [5]}, "hardware": {"digital_pj_per_flop": 2.0}})
    # 64 -> 5 -> 10: forward 2 per MAC, backward 4 (2 for the first layer), 2 per weight
    flops = 3 * (64 * 5 * 4 + 5 * 10 * 6) + 2 * 2 * (64 * 5 + 5 + 5 * 10 + 10)
    assert digital_reference(spec, (64,), samples=3, updates=2) == pytest.approx(flops * 2.0)
    none = parse_spec({"hardware": {"digital_pj_per_flop": None}})
    assert digital_reference(none, (64,), 3, 2) is None


def test_a_digital_job_prices_its_layers_as_digital_work() -> None:
    spec = parse_spec(
        {
            "analog": {"enabled": False},
            "optimizer": {"algorithm": "sgd"},
            "model": {"hidden": [5]},
            "hardware": {"digital_op_pj": 1.0},
        }
    )
    e = estimate(spec, (64,), [range(0, 2)], samples=4, work=[StageWork(updates=2, pulses=0)])
    stage = e.by_stage[0]
    assert stage["forward"] == 4 * (64 * 5 + 5 * 10)
    assert stage["backward"] == 4 * (64 * 5 + 2 * 5 * 10)  # the first layer: weights only
    assert stage["update"] == 2 * (64 * 5 + 5 + 5 * 10 + 10)
    assert stage["peripheral"] == 2 * 4 * (5 + 10)  # activations only: no pulse trains
    assert e.not_counted == []  # no analog layer: no MVM or pulse figure needed


def test_energy_reads_in_its_unit() -> None:
    assert format_energy(320.0) == "320 pJ"
    assert format_energy(1.85e6) == "1.85 uJ"
    assert format_energy(4.2e12) == "4.2 J"
