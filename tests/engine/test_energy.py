"""The energy of a run (aimc_spec/energy.py, docs/energy.md) from what the engine did:
a two-layer job priced by hand under each schedule, energy linear in the samples, the
pulse counter, and observation invariance (the hardware block changes no weight)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aimc_engine.runner import run
from aimc_engine.tiles import AnalogTile, TileConfig
from aimc_spec.spec import AnalogSpec, parse_spec

A, C, W, L = 0.25, 2.0, 3.0, 0.5  # pJ: MAC, digital op, buffer word, link bit
HARDWARE = {
    "mvm_pj_per_mac": A,
    "digital_op_pj": C,
    "sram_pj_per_word": W,
    "link_pj_per_bit": L,
    "link_bits": 16,
    "pulse_pj": 0.0,  # pulses are data: priced in their own test
    "digital_pj_per_flop": 10.0,
}
SCHEDULES: dict[str, dict[str, Any]] = {
    "sequential": {"schedule": "sequential"},
    "gpipe": {"schedule": "gpipe"},
    "1f1b": {"schedule": "1f1b"},
    "async": {"schedule": "async"},
    "async_stash": {"schedule": "async_stash"},
    "async+accumulate": {"schedule": "async", "compensation": {"mode": "accumulate", "k": 2}},
}


def two_layer_job(schedule: dict[str, Any], steps: int = 6, **more: Any) -> dict[str, Any]:
    """synthetic 32 features -> 8 -> 10 classes, one layer per stage, batch 4."""
    return {
        "seed": 2,
        "dataset": {"name": "synthetic", "synthetic": {"n_train": 256, "n_test": 64}},
        "model": {"kind": "mlp", "hidden": [8]},
        "analog": {"device": {"model": "constant_step", "states": 200}},
        "training": {"steps": steps, "micro_batch_size": 4, "eval_every": 3},
        "pipeline": {"stages": 2, "micro_batches": 2, **schedule},
        "hardware": HARDWARE,
        **more,
    }


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_a_two_layer_job_costs_what_the_formulas_say(name: str) -> None:
    out = run(parse_spec(two_layer_job(SCHEDULES[name])))
    energy, samples = out.result["energy"], out.result["samples"]
    micro_batches = samples / 4
    w0, w1 = 32 * 8 + 8, 8 * 10 + 10  # weights and biases of each stage
    stage0 = {
        "forward": samples * 32 * 8 * A,
        "backward": 0.0,  # the first layer's input needs no gradient
        "update": 0.0,
        "transfer": 0.0,
        "peripheral": samples * (32 + 8) * C + 2 * samples * 8 * C,
        "communication": 2 * samples * 8 * 16 * L,
    }
    stage1 = {
        "forward": samples * 8 * 10 * A,
        "backward": samples * 8 * 10 * A,
        "update": 0.0,
        "transfer": 0.0,
        "peripheral": samples * (8 + 10) * C + 2 * samples * 10 * C,
        "communication": 0.0,
    }
    if name == "async_stash":
        stage0["peripheral"] += 2 * micro_batches * w0 * W
        stage1["peripheral"] += 2 * micro_batches * w1 * W
    if name == "async+accumulate":  # k = 2: one addition per weight every 2 micro-batches
        stage0["peripheral"] += micro_batches * w0 * C / 2
        stage1["peripheral"] += micro_batches * w1 * C / 2
    for found, expected in zip(energy["by_stage_pj"], (stage0, stage1), strict=True):
        assert found == pytest.approx(expected, rel=1e-12)
    total = sum(stage0.values()) + sum(stage1.values())
    assert energy["total_pj"] == pytest.approx(total, rel=1e-12)
    assert out.metrics[-1]["energy_pj"] == pytest.approx(total, rel=1e-12)
    assert energy["per_sample_pj"] == pytest.approx(total / samples, rel=1e-12)
    flops = samples * (32 * 8 * 4 + 8 * 10 * 6) + out.result["updates"] * 2 * (w0 + w1)
    assert energy["digital_reference_pj"] == pytest.approx(flops * 10.0, rel=1e-12)
    assert energy["digital_over_analog"] == pytest.approx(flops * 10.0 / total, rel=1e-12)
    assert energy["not_counted"] == []
    assert energy["hardware_ns"] == out.metrics[-1]["sim_time_ns"] > 0
    cumulative = [m["energy_pj"] for m in out.metrics]
    assert cumulative[0] == 0.0 and cumulative == sorted(cumulative)


def test_energy_grows_linearly_with_the_samples() -> None:
    short = run(parse_spec(two_layer_job(SCHEDULES["async"], steps=6))).result
    long = run(parse_spec(two_layer_job(SCHEDULES["async"], steps=12))).result
    assert long["samples"] == 2 * short["samples"]
    assert long["energy"]["total_pj"] == pytest.approx(2 * short["energy"]["total_pj"], rel=1e-12)
    assert long["energy"]["per_sample_pj"] == pytest.approx(short["energy"]["per_sample_pj"])


def test_unset_figures_are_listed_not_guessed() -> None:
    spec = two_layer_job(SCHEDULES["async"], hardware={"profile": "published"})
    energy = run(parse_spec(spec)).result["energy"]
    # constant_step is no preset with a published pulse energy; two stages need a link
    assert energy["not_counted"] == ["link_pj_per_bit", "pulse_pj"]
    assert energy["by_kind_pj"]["communication"] == 0.0 and energy["pulses"] > 0


def test_the_hardware_block_changes_no_weight_and_no_other_metric() -> None:
    """Observation invariance: the energy only reads what the run does."""
    outs = [
        run(parse_spec(two_layer_job(SCHEDULES["async_stash"], hardware=hw)))
        for hw in ({"profile": "published"}, {"profile": "arrays_only"}, HARDWARE)
    ]

    def without_energy(out: Any) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in m.items() if k not in ("wall_s", "energy_pj")} for m in out.metrics
        ]

    first = outs[0].model.state_dict()
    for out in outs[1:]:
        assert without_energy(out) == without_energy(outs[0])
        for key, value in out.model.state_dict().items():
            assert torch.equal(value, first[key]), key
    assert len({out.result["energy"]["total_pj"] for out in outs}) == 3


def test_a_tile_counts_its_pulses_as_change_over_granularity() -> None:
    """Constant steps of 0.01 under the expected update: an update of lr * grad moves
    each weight by exactly that much, |lr grad_ij| / 0.01 pulses."""
    spec = AnalogSpec.model_validate({"device": {"model": "constant_step", "states": 200}})
    config = TileConfig(spec, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    tile = AnalogTile(2, 3, config)
    tile.set_weights(torch.zeros(2, 3))
    grad = torch.tensor([[0.02, -0.03, 0.0], [0.05, 0.01, -0.04]])
    tile.update_from_gradient(grad.clone(), 1.0)
    assert float(tile.pulses) == pytest.approx(float(grad.abs().sum()) / 0.01, rel=1e-5)
    tile.update_from_gradient(-grad.clone(), 1.0)  # and back: twice as many in all
    assert float(tile.pulses) == pytest.approx(2 * float(grad.abs().sum()) / 0.01, rel=1e-5)


def test_published_pulse_energy_prices_the_pulses_of_a_preset() -> None:
    spec = two_layer_job(
        SCHEDULES["async"], analog={"device": {"preset": "ecram"}}, hardware={"link_pj_per_bit": 1}
    )
    energy = run(parse_spec(spec)).result["energy"]
    assert energy["by_kind_pj"]["update"] == pytest.approx(energy["pulses"] * 0.001)
    assert energy["not_counted"] == []


def test_energy_to_a_target_accuracy_is_the_first_point_that_reaches_it() -> None:
    spec = two_layer_job(SCHEDULES["async"], steps=12)
    spec["hardware"] = {**HARDWARE, "target_accuracy": 0.01}
    out = run(parse_spec(spec))
    target = out.result["energy"]["to_target"]
    first = next(m for m in out.metrics if m["test_accuracy"] >= 0.01)
    assert target == {
        "target_accuracy": 0.01,
        "reached": True,
        "energy_pj": first["energy_pj"],
        "hardware_ns": first["sim_time_ns"],
        "step": first["step"],
    }
    spec["hardware"]["target_accuracy"] = 1.0
    assert run(parse_spec(spec)).result["energy"]["to_target"] == {
        "target_accuracy": 1.0,
        "reached": False,
    }
