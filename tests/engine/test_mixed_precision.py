"""Mixed precision on hand cases: the numbers follow aihwkit 1.2's update rules in
src/rpucuda/rpu_mixedprec_device.cpp (MixedPrecRPUDevice::doDirectVectorUpdate: chi +=
lr * q(d) q(x)^T with per-vector dynamic quantisation; MixedPrecRPUDevice::forwardUpdate:
n = trunc(chi / eps), chi -= n * eps, the row written as eps * transfer_lr * n) and
src/rpucuda/rpu_mixedprec_device_base.cpp (MixedPrecRPUDeviceBase::doTransfer: after
vector c, transfer if c > 0 and c % (transfer_every * m_batch) == 0;
MixedPrecRPUDeviceBase::transfer: n_rows_per_transfer rows from current_row_index_)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aimc_engine.algorithms import Algorithm
from aimc_engine.layers import AnalogLinear
from aimc_engine.mixed_precision import MixedPrecisionState, quantise
from aimc_engine.models import LayeredNet
from aimc_engine.tiles import TileConfig
from aimc_spec.spec import SpecError, parse_spec
from tests.engine.test_algorithms import final_error

CONSTANT = {"model": "constant_step", "w_min": -4.0, "w_max": 4.0, "states": 800}


def setup(
    out: int, inp: int, mixed_precision: dict[str, Any]
) -> tuple[AnalogLinear, Algorithm, MixedPrecisionState]:
    """A bias-free layer at W = 0 on a constant-step device (q = 1: an expected update
    moves W by exactly delta) under mixed precision."""
    spec = parse_spec(
        {
            "analog": {"device": CONSTANT, "update": "expected"},
            "optimizer": {"algorithm": "mixed_precision", "mixed_precision": mixed_precision},
        }
    )
    g = torch.Generator().manual_seed(0)
    config = TileConfig(spec.analog, g, g)
    layer = AnalogLinear(inp, out, config, bias=False)
    layer.tile.set_weights(torch.zeros(out, inp))
    algo = Algorithm(spec, LayeredNet([layer]), config)
    state = layer.mixed_precision
    assert isinstance(state, MixedPrecisionState)
    return layer, algo, state


def step(layer: AnalogLinear, algo: Algorithm, x: list[list[float]], d: list[list[float]]) -> None:
    layer.pending.append((torch.tensor(x, dtype=torch.float32), torch.tensor(d)))
    algo.step(0.5)


def test_chi_accumulates_and_transfers_after_the_first_vector_of_the_next_update() -> None:
    """Two updates of two vectors each, lr 0.5, eps 0.25. Update 0: chi = 0.5 * (d0 x0^T +
    d1 x1^T) = [[0.4, 0.2], [-0.1, 0.3]], no transfer (vector counts 0, 1). Update 1: the
    count 2 = transfer_every * m_batch comes at its first vector: chi + 0.5 d2 x2^T =
    [[0.6, 0.4], [-0.7, -0.3]] gives n = trunc(chi / 0.25) = [[2, 1], [-2, -1]], W = -0.25 n,
    chi keeps [[0.1, 0.15], [-0.2, -0.05]], then vector 3 adds 0.5 d3 x3^T."""
    layer, algo, state = setup(2, 2, {"granularity": 0.25})
    step(layer, algo, [[1, 0], [0, 1]], [[0.8, -0.2], [0.4, 0.6]])
    torch.testing.assert_close(state.chi, torch.tensor([[0.4, 0.2], [-0.1, 0.3]]))
    assert torch.equal(layer.tile.weight, torch.zeros(2, 2))
    step(layer, algo, [[1, 1], [1, 0]], [[0.4, -1.2], [2.0, 0.0]])
    torch.testing.assert_close(layer.tile.weight, torch.tensor([[-0.5, -0.25], [0.5, 0.25]]))
    torch.testing.assert_close(state.chi, torch.tensor([[1.1, 0.15], [-0.2, -0.05]]))
    assert int(state.vectors) == 4


def test_transfer_lr_scales_the_write_not_the_threshold() -> None:
    """transfer_lr 2: the same n as above, written as 2 * 0.25 * n; chi keeps the same."""
    layer, algo, state = setup(2, 2, {"granularity": 0.25, "transfer_lr": 2.0})
    step(layer, algo, [[1, 0], [0, 1]], [[0.8, -0.2], [0.4, 0.6]])
    step(layer, algo, [[1, 1], [1, 0]], [[0.4, -1.2], [2.0, 0.0]])
    torch.testing.assert_close(layer.tile.weight, torch.tensor([[-1.0, -0.5], [1.0, 0.5]]))
    torch.testing.assert_close(state.chi, torch.tensor([[1.1, 0.15], [-0.2, -0.05]]))


def test_rows_per_transfer_walk_the_rows_in_turn() -> None:
    """n_rows_per_transfer 1 on 3 rows, one vector per update (a transfer after every
    vector but the first): rows 0, 1, 2, 0 in turn, each written as trunc(chi / eps)."""
    layer, algo, state = setup(3, 1, {"granularity": 0.25, "n_rows_per_transfer": 1})
    for t in range(5):  # chi grows by 0.5 * 0.6 = 0.3 per update in every row
        step(layer, algo, [[1.0]], [[0.6, 0.6, 0.6]])
        assert int(state.next_row) == t % 3
    # transfers after updates 1, 2, 3, 4 took rows 0, 1, 2, 0: row 0 at chi 0.6 (n 2,
    # keeps 0.1) then 0.1 + 0.9 = 1.0 (n 4, keeps 0); row 1 at 0.9 (n 3, keeps 0.15, then
    # + 0.6); row 2 at 1.2 (n 4, keeps 0.2, then + 0.3)
    torch.testing.assert_close(layer.tile.weight, -0.25 * torch.tensor([[6.0], [3.0], [4.0]]))
    torch.testing.assert_close(state.chi, torch.tensor([[0.0], [0.75], [0.5]]))


def test_quantisation_by_each_vectors_abs_max() -> None:
    """n_bins 4: two levels each side, width max|x| / 2; n_bins 3: one level, width max|x|;
    rint rounds half to even as aihwkit's RPU_ROUNDFUNF (rintf)."""
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.3, -1.0, 0.6, 0.25], [0.0, 0.0, 0.0, 0.0]])
    expected = torch.tensor([[0.5, -1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(quantise(x, 4, False, g), expected)
    d = torch.tensor([[0.2, -0.7, 0.36]])
    torch.testing.assert_close(quantise(d, 3, False, g), torch.tensor([[0.0, -0.7, 0.7]]))
    assert quantise(d, 0, True, g) is d


def test_stochastic_rounding_stays_on_the_grid_and_is_unbiased() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.tensor([[0.3, -1.0, 0.6, -0.05]]).repeat(20000, 1)
    q = quantise(x, 4, True, g)
    assert set(q.unique().tolist()) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
    torch.testing.assert_close(q.mean(0), x[0], atol=0.01, rtol=0)


def test_quantised_chi_is_the_product_of_the_quantised_vectors() -> None:
    layer, algo, state = setup(
        2, 3, {"n_x_bins": 4, "n_d_bins": 3, "stoc_round_x": False, "stoc_round_d": False}
    )
    step(layer, algo, [[0.3, -1.0, 0.6]], [[0.2, -0.7]])
    qx, qd = torch.tensor([0.5, -1.0, 0.5]), torch.tensor([0.0, -0.7])
    torch.testing.assert_close(state.chi, 0.5 * torch.outer(qd, qx))


@pytest.mark.parametrize(
    ("field", "value"), [("n_x_bins", 1), ("n_d_bins", 1), ("n_rows_per_transfer", 0)]
)
def test_degenerate_settings_are_refused_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(SpecError, match=rf"optimizer\.mixed_precision\.{field}"):
        parse_spec(
            {"optimizer": {"algorithm": "mixed_precision", "mixed_precision": {field: value}}}
        )


def test_digital_accumulation_lowers_analog_sgds_floor() -> None:
    """Noisy least squares on softbounds with up_down 0.2 (test_algorithms.final_error):
    gradient noise cancels in chi before it reaches the asymmetric device. Measured
    0.219 against Analog SGD's 0.355 (digital SGD: 0.026)."""
    device = {"model": "softbounds", "states": 1200, "up_down": 0.2}
    mixed = final_error("mixed_precision", device)
    assert mixed * 1.4 < final_error("analog_sgd", device), mixed
