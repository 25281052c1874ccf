"""Unit cells against aihwkit 1.2's rules (rpucuda/rpu_onesided_device.cpp and
rpu_vector_device.cpp): one-sided directions, the refresh and its reset, the vector
policies, the weight read, and short reproducible, resumable runs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aimc_engine.runner import Callbacks, run
from aimc_engine.tiles import AnalogTile, TileConfig
from aimc_engine.unit_cells import REFRESHES
from aimc_spec.spec import AnalogSpec, parse_spec

# constant steps of 1/64 (exact in float32) without noise: hand-computable numbers
EXACT = {"model": "constant_step", "states": 128}
FIXED = {"kind": "vector", "update_policy": "single_fixed"}


def tile(cell: dict[str, Any], shape: tuple[int, int] = (1, 4), **analog: Any) -> AnalogTile:
    spec = AnalogSpec.model_validate({"device": EXACT, "unit_cell": cell, **analog})
    config = TileConfig(spec, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    return AnalogTile(*shape, config)


def step(t: AnalogTile, delta: list[list[float]]) -> None:
    """One update of dW = delta (lr 1, grad = -delta)."""
    t.update_from_gradient(-torch.tensor(delta), 1.0)


def test_one_sided_programs_the_pair_and_pulses_one_device_per_sign() -> None:
    # onSetWeights: g+ = max(w, 0), g- = max(-w, 0); doDenseUpdate: an increase of w
    # goes to g+, a decrease to g- as an increase; both devices only ever step up
    t = tile({"kind": "one_sided"})
    t.set_weights(torch.tensor([[0.25, -0.125, 0.5, 0.0]]))
    assert t.cell is not None
    assert t.cell.states[0].tolist() == [[0.25, 0.0, 0.5, 0.0]]
    assert t.cell.states[1].tolist() == [[0.0, 0.125, 0.0, 0.0]]
    step(t, [[0.125, -0.125, -0.25, 0.0625]])
    assert t.cell.states[0].tolist() == [[0.375, 0.0, 0.5, 0.0625]]
    assert t.cell.states[1].tolist() == [[0.0, 0.25, 0.25, 0.0]]
    assert t.weight.tolist() == [[0.375, -0.25, 0.25, 0.0625]]


@pytest.mark.parametrize("update", ["rounded", "pulsed"])
def test_one_sided_pulses_never_step_a_device_down(update: str) -> None:
    t = tile({"kind": "one_sided"}, (20, 20), update=update)
    assert t.cell is not None
    for _ in range(5):
        before = t.cell.states.clone()
        t.update(torch.randn(8, 20), torch.randn(8, 20), 0.05)
        assert (t.cell.states >= before).all()
        assert (t.cell.states > before).any()
    assert torch.equal(t.weight, t.cell.states[0] - t.cell.states[1])


def test_refresh_resets_the_pairs_past_the_thresholds_and_writes_their_difference() -> None:
    # refreshCriterion with w_max 1, thresholds 0.75/0.25; one pair per column, so each
    # column's pulse train (x = e_j, d = the difference, update management) is its own
    t = tile({"kind": "one_sided", "refresh_every": 1})
    assert t.cell is not None
    g_plus = torch.tensor([[56, 56, 48, 20]]) / 64
    g_minus = torch.tensor([[51, 12, 32, 60]]) / 64
    t.cell.states.copy_(torch.stack([g_plus, g_minus]))
    step(t, [[0.0, 0.0, 0.0, 0.0]])  # the refresh comes at the end of the update
    # column 0: 56/64 > 0.75 and 51/64 > 0.25: both reset to 0 (constant_step has no
    # reset fields), then 5 slots of BL 5 at probability 1 write 5/64 onto g+.
    # column 1: 12/64 < 0.25, column 2: 48/64 = 0.75 is not past it: left alone.
    # column 3: g- is the larger (60/64 > 0.75, 20/64 > 0.25): 40 pulses wanted, the
    # pulse train is capped at refresh_bit_length 31 slots, all firing: 31/64 onto g-.
    assert (t.cell.states[0] * 64).tolist() == [[5, 56, 48, 0]]
    assert (t.cell.states[1] * 64).tolist() == [[0, 12, 32, 31]]
    assert (t.weight * 64).tolist() == [[5, 44, 16, -31]]
    assert int(t.cell.counters[REFRESHES]) == 2


def test_refresh_comes_every_refresh_every_updates() -> None:
    # finishUpdateCycle: the count goes up first, then refresh when it divides evenly
    t = tile({"kind": "one_sided", "refresh_every": 3})
    assert t.cell is not None
    saturated = torch.stack([torch.full((1, 4), 0.875), torch.full((1, 4), 0.5)])
    refreshed_at = []
    for n in range(1, 7):
        t.cell.states.copy_(saturated)
        step(t, [[0.0] * 4])
        if not torch.equal(t.cell.states, saturated):
            refreshed_at.append(n)
    assert refreshed_at == [3, 6]


def test_a_reset_draws_the_reset_value_and_its_noise() -> None:
    # resetAtIndices: w_reset_bias + reset_std * N(0, 1), clipped; the device that is
    # not written keeps just that
    device = {"model": "exp_step_noise", "reset": 0.0, "reset_std": 0.05, "c2c_noise": 0.0}
    spec = AnalogSpec.model_validate(
        {"device": device, "unit_cell": {"kind": "one_sided", "refresh_every": 1}}
    )
    gen = torch.Generator().manual_seed(0)
    t = AnalogTile(100, 100, TileConfig(spec, gen, torch.Generator().manual_seed(1)))
    assert t.cell is not None
    t.cell.states[0].fill_(0.9)
    t.cell.states[1].fill_(0.5)
    step(t, [[0.0] * 100] * 100)
    assert int(t.cell.counters[REFRESHES]) == 100 * 100
    residual = t.cell.states[1] - t.cell.devices[1].reset_bias
    assert abs(float(residual.mean())) < 0.003
    assert float(residual.std()) == pytest.approx(0.05, rel=0.05)
    # g+ got the difference (0.4) written back, capped at refresh_bit_length pulses
    written = t.cell.states[0] - t.cell.devices[0].reset_bias
    assert 0.5 * 31 * t.cell.dw_min < float(written.mean()) <= 31 * t.cell.dw_min * 1.5


def test_the_refresh_reads_through_the_forward_io() -> None:
    # refreshWeights reads g+ and g- with forward passes of unit vectors (refresh_forward):
    # pairs at half their range are never due when read exactly, some are through noise
    def refreshes(io: dict[str, Any]) -> int:
        t = tile({"kind": "one_sided", "refresh_every": 1}, (50, 50), io=io)
        assert t.cell is not None
        t.cell.states.fill_(0.5)
        step(t, [[0.0] * 50] * 50)
        return int(t.cell.counters[REFRESHES])

    assert refreshes({"perfect": True}) == 0
    assert refreshes({"perfect": False, "out_noise": 0.5}) > 50


def changed(t: AnalogTile, delta: float = 1 / 64) -> list[int]:
    """The devices one update moved."""
    assert t.cell is not None
    before = t.cell.states.clone()
    step(t, [[delta] * 4])
    return [k for k in range(len(before)) if not torch.equal(before[k], t.cell.states[k])]


def test_single_sequential_moves_on_before_each_update() -> None:
    # initUpdateCycle: current_device_idx += 1 (mod n) before the update, from first_update_idx
    t = tile({"kind": "vector", "devices": 3, "update_policy": "single_sequential"})
    assert [changed(t) for _ in range(5)] == [[1], [2], [0], [1], [2]]


def test_single_fixed_and_all() -> None:
    fixed = tile({**FIXED, "devices": 4, "first_update_idx": 2})
    assert [changed(fixed) for _ in range(3)] == [[2], [2], [2]]
    every = tile({"kind": "vector", "devices": 4})
    assert changed(every) == [0, 1, 2, 3]


def test_single_random_picks_one_device_uniformly_and_reproducibly() -> None:
    def picks() -> list[int]:
        t = tile({"kind": "vector", "devices": 4, "update_policy": "single_random"})
        return [k for _ in range(400) for k in changed(t, 1 / 640)]

    first = picks()
    assert len(first) == 400  # exactly one device each update
    assert all(80 <= first.count(k) <= 120 for k in range(4))
    assert picks() == first


def test_the_weight_is_the_gamma_weighted_sum() -> None:
    # reduceToWeights: w = sum_k gamma_k w_k (default gamma 1/n); onSetWeights puts w on
    # every device (single_fixed: on its device only)
    t = tile({"kind": "vector", "devices": 2, "gamma_vec": [1.0, 0.5]})
    assert t.cell is not None
    t.set_weights(torch.tensor([[0.5, -0.25, 0.0, 1.0]]))
    assert t.weight.tolist() == [[0.75, -0.375, 0.0, 1.5]]
    t.cell.states[1].fill_(0.25)
    assert t.cell.read().tolist() == [[0.625, -0.125, 0.125, 1.125]]
    fixed = tile({**FIXED, "devices": 2, "first_update_idx": 1})
    assert fixed.cell is not None
    fixed.cell.states.zero_()
    fixed.set_weights(torch.tensor([[0.5, -0.25, 0.0, 1.0]]))
    assert fixed.cell.states[0].tolist() == [[0.0] * 4]
    assert fixed.weight.tolist() == [[0.25, -0.125, 0.0, 0.5]]


def test_a_vector_cell_under_all_averages_its_devices_steps() -> None:
    t = tile({"kind": "vector", "devices": 4})
    t.set_weights(torch.zeros(1, 4))
    step(t, [[0.125, -0.125, 0.0, 0.25]])
    assert t.weight.tolist() == [[0.125, -0.125, 0.0, 0.25]]


SHORT = {"training": {"steps": 20, "micro_batch_size": 8, "eval_every": 5}}
CELLS = {
    "pcm_pair": {
        "device": {"preset": "pcm"},
        "unit_cell": {"kind": "one_sided", "refresh_every": 1},
        "update": "pulsed",
    },
    "ecram_x4": {
        "device": {"preset": "ecram"},
        "unit_cell": {"kind": "vector", "devices": 4, "update_policy": "single_random"},
        "update": "rounded",
    },
}


def metrics(result: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k != "wall_s"} for m in result.metrics]


@pytest.mark.parametrize("name", sorted(CELLS))
def test_a_run_with_unit_cells_is_reproducible_and_resumes_exactly(name: str) -> None:
    spec = parse_spec({**SHORT, "analog": CELLS[name]})
    blobs: list[bytes] = []
    full = run(spec, Callbacks(on_checkpoint=blobs.append, checkpoint_every=10))
    assert metrics(run(spec)) == metrics(full)
    assert blobs
    assert metrics(run(spec, resume=blobs[0])) == metrics(full)
    plain = parse_spec({**SHORT, "analog": {**CELLS[name], "unit_cell": None}})
    assert metrics(run(plain)) != metrics(full)


def test_a_vector_cell_reads_each_devices_write_noise_redrawn_where_touched() -> None:
    """aihwkit's VectorRPUDevice: each device keeps its own write noise (PulsedRPUDevice's
    persistent weight plus N(0, (write_noise_std dw_min)^2), redrawn where an update
    touches it), and the cell reads sum gamma_k of the noisy weights."""
    t = tile({**FIXED, "devices": 2}, device={**EXACT, "write_noise_std": 2.0})
    cell = t.cell
    assert cell is not None and cell.write_noise == 2.0 / 64
    noise = cell.noisy - cell.states
    assert float(noise.std()) > 0.01  # both devices drew noise when programmed
    torch.testing.assert_close(t.weight, 0.5 * cell.noisy[0] + 0.5 * cell.noisy[1])
    before = cell.noisy.clone()
    step(t, [[1 / 64, 0.0, 1 / 64, 0.0]])  # single_fixed: device 0, elements 0 and 2
    moved = (cell.noisy != before).tolist()
    assert moved == [[[True, False, True, False]], [[False, False, False, False]]]
    torch.testing.assert_close(t.weight, 0.5 * cell.noisy[0] + 0.5 * cell.noisy[1])
