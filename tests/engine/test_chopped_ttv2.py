"""Chopped TTv2 on hand cases: the numbers follow aihwkit 1.2's
src/rpucuda/rpu_chopped_transfer_device.cpp: ChoppedTransferRPUDevice::readAndUpdate
(H += chop * read * lr / bg with bg from ChoppedTransferRPUDeviceMetaParameter::
getBufferGranularity; where |H| >= 1, n = clip(trunc(H), +-desired_BL) steps of
step * granularity into W and H = momentum * H; after the read, the column's input
chopper flips, regularly every max(ceil(1 / in_chop_prob), 2) passes when not random;
a pass ends at the last column) and ChoppedTransferRPUDevice::doDenseUpdate (the
fast array's pulses signed by the product of the input and output choppers)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from aimc_engine.algorithms import Algorithm
from aimc_engine.chopped_ttv2 import Choppers
from aimc_engine.layers import AnalogLinear
from aimc_engine.models import LayeredNet
from aimc_engine.tiles import TileConfig
from aimc_spec.spec import parse_spec
from tests.engine.test_algorithms import final_error

# constant steps of 0.01 on P and W: expected updates move them by exactly delta
CONSTANT = {"model": "constant_step", "w_min": -4.0, "w_max": 4.0, "states": 800}


def chopped_layer(chopped: dict[str, Any]) -> tuple[AnalogLinear, Algorithm]:
    """A 2x2 Chopped TTv2 layer on CONSTANT devices at W = 0, expected updates, no
    reference, the transfer rate unscaled by lr."""
    spec = parse_spec(
        {
            "analog": {"device": CONSTANT, "update": "expected"},
            "optimizer": {
                "algorithm": "chopped_ttv2",
                "chopped_ttv2": {"reference": "none", "scale_transfer_lr": False, **chopped},
            },
        }
    )
    g = torch.Generator().manual_seed(0)
    config = TileConfig(spec.analog, g, g)
    layer = AnalogLinear(2, 2, config, bias=False)
    layer.tile.set_weights(torch.zeros(2, 2))
    return layer, Algorithm(spec, LayeredNet([layer]), config)


def run_updates(n: int, chopped: dict[str, Any]) -> tuple[AnalogLinear, Choppers]:
    """n updates with x = [1, 1], d = [-0.013, 0.004] at the fast lr 1 (aihwkit's
    absolute default), so each adds chop * g to P, g = [[0.013, 0.013], [-0.004,
    -0.004]]; transfer rate 1 over bg = 0.01: H counts 100 * read; columns 0, 1, 0, ..."""
    layer, algo = chopped_layer(chopped)
    for _ in range(n):
        layer.pending.append((torch.tensor([[1.0, 1.0]]), torch.tensor([[-0.013, 0.004]])))
        algo.step(0.3)  # the optimizer's lr reaches neither P (fast_lr) nor H (unscaled)
    state = layer.choppers
    assert isinstance(state, Choppers)
    return layer, state


def test_without_flips_the_buffer_counts_steps() -> None:
    """in_chop_prob 0: update 1 (column 0) H = [1.3, -0.4] -> n = [1, 0], H = [0, -0.4];
    update 2 (column 1) [2.6, -0.8] -> n = [1, 0]; update 3 (column 0) H = [3.9, -0.4 -
    1.2] -> n = [1, -1], H = 0."""
    layer, state = run_updates(3, {"in_chop_prob": 0.0})
    torch.testing.assert_close(layer.tile.weight, torch.tensor([[0.02, 0.01], [-0.01, 0.0]]))
    torch.testing.assert_close(state.h, torch.tensor([[0.0, 0.0], [0.0, -0.8]]))
    assert int(state.passes) == 1


def test_regular_flips_change_the_sign_of_the_gradient_and_of_the_read() -> None:
    """in_chop_prob 0.5, regular: a column's chopper flips after its read in odd passes.
    Updates 1-3 as without flips; column 0 flips after update 3 and column 1 after
    update 4, whose read of P[:, 1] = 4 g gives [5.2, -0.8 - 1.6] -> n = [1, -1]. From
    update 5 P takes -g: P[:, 0] = 3g - g - g, read as -g[:, 0] -> [-1.3, 0.4] -> n =
    [-1, 0]; update 6 reads P[:, 1] = 4g - 2g as [-2.6, 0.8] -> n = [-1, 0]."""
    layer, state = run_updates(6, {"in_chop_prob": 0.5, "in_chop_random": False})
    torch.testing.assert_close(layer.tile.weight, torch.tensor([[0.01, 0.01], [-0.01, -0.01]]))
    torch.testing.assert_close(state.h, torch.tensor([[0.0, 0.0], [0.4, 0.8]]))
    assert layer.fast is not None
    torch.testing.assert_close(layer.fast.weight, torch.tensor([[0.0, 0.026], [0.0, -0.008]]))
    assert state.in_chop.tolist() == [-1.0, -1.0] and int(state.passes) == 3


def test_auto_granularity_scales_the_buffer_step() -> None:
    """auto_granularity 4 on 2 columns, every update: bg = 0.01 * 4 / 2 = 0.02, so update
    1 adds 50 * [0.013, -0.004] and nothing moves."""
    layer, state = run_updates(1, {"in_chop_prob": 0.0, "auto_granularity": 4.0})
    torch.testing.assert_close(state.h[:, 0], torch.tensor([0.65, -0.2]))
    assert torch.equal(layer.tile.weight, torch.zeros(2, 2))


@pytest.mark.parametrize(("momentum", "kept"), [(0.5, 0.65), (0.0, 0.0)])
def test_momentum_keeps_part_of_the_buffer_after_a_write(momentum: float, kept: float) -> None:
    _layer, state = run_updates(1, {"in_chop_prob": 0.0, "momentum": momentum})
    torch.testing.assert_close(state.h[0, 0], torch.tensor(kept))


def test_random_flips_happen_at_in_chop_prob() -> None:
    """One column, 2000 reads at in_chop_prob 0.1: about 200 flips; the sign's runs are
    what the chance makes them (the chopper is a Markov chain on +-1)."""
    spec = parse_spec({"analog": {"device": CONSTANT}, "optimizer": {"algorithm": "chopped_ttv2"}})
    g = torch.Generator().manual_seed(3)
    config = TileConfig(spec.analog, g, g)
    layer = AnalogLinear(1, 1, config, bias=False)
    algo = Algorithm(spec, LayeredNet([layer]), config)
    state = layer.choppers
    assert isinstance(state, Choppers)
    signs = []
    for _ in range(2000):
        layer.pending.append((torch.ones(1, 1), torch.zeros(1, 1)))
        algo.step(0.1)
        signs.append(float(state.in_chop[0]))
    flips = sum(a != b for a, b in itertools.pairwise(signs))
    assert 150 < flips < 250, flips


@pytest.mark.parametrize(
    ("algorithm", "fields"),
    [
        ("chopped_ttv2", {"in_chop_prob": 0.01}),
        ("agad", {}),  # no programmed reference: the dynamic one
    ],
)
def test_chopped_algorithms_beat_analog_sgd_on_an_asymmetric_device(
    algorithm: str, fields: dict[str, Any]
) -> None:
    """Noisy least squares on softbounds with up_down 0.2 (test_algorithms.final_error),
    4 columns per update, fast_lr 0.05: measured 0.033 (Chopped TTv2) and 0.044 (AGAD)
    against Analog SGD's 0.355."""
    device = {"model": "softbounds", "states": 1200, "up_down": 0.2}
    part = {"transfer_columns": 4, "fast_lr": 0.05, **fields}
    chopped = final_error(algorithm, device, **{algorithm: part})
    assert chopped * 5 < final_error("analog_sgd", device), chopped


def test_the_running_mean_of_auto_scale_is_updateautoscale_row_by_row() -> None:
    """ChoppedTransferRPUDeviceMetaParameter::updateAutoScale applied to each row's max
    in turn (m <- (1 - tau) m + tau v, tau = (1 - momentum) / rows; a zero max skipped;
    the first positive one taken whole while m is 0) equals the closed form used here."""
    from aimc_engine.chopped_ttv2 import running_mean_

    maxima = torch.tensor([0.0, 0.7, 0.2, 0.0, 1.5, 0.3])
    for start in (0.0, 0.9):
        m, tau = start, (1 - 0.9) / len(maxima)
        for v in maxima.tolist():
            if v <= 0:
                continue
            m = v if m <= 0 else (1 - tau) * m + tau * v
        mean = torch.tensor(start, dtype=torch.float64)
        running_mean_(mean, maxima, 0.9)
        assert float(mean) == pytest.approx(m, rel=1e-12)


def test_auto_scale_sets_the_fast_rate_from_the_rows_maxima() -> None:
    """getPulseCountAutoLR: rate = fast_lr * desired_BL * granularity(P) / (m_x m_d).
    One row x = [1, -0.5], d = [-0.013, 0.004]: m_x = 1, m_d = 0.013, so with BL 31
    and granularity 0.01 the rate is 0.5 * 31 * 0.01 / 0.013 and P = -rate d^T x."""
    layer, algo = chopped_layer(
        {"auto_scale": True, "fast_lr": 0.5, "in_chop_prob": 0.0, "transfer_every": 1000}
    )
    x, d = torch.tensor([[1.0, -0.5]]), torch.tensor([[-0.013, 0.004]])
    layer.pending.append((x, d))
    algo.step(0.3)
    rate = 0.5 * 31 * 0.01 / 0.013
    assert layer.fast is not None
    torch.testing.assert_close(layer.fast.weight, -rate * d.T @ x)
    state = layer.choppers
    assert isinstance(state, Choppers)
    assert float(state.m_x) == 1.0 and float(state.m_d) == pytest.approx(0.013)


def test_without_units_in_mbatch_transfer_every_counts_rows() -> None:
    """transfer_every 2 in rows: an update of 5 rows passes rows 2 and 4 (two column
    reads: 0, 1, one pass), the next of 5 passes 6, 8 and 10 (columns 0, 1, 0)."""
    layer, algo = chopped_layer({"units_in_mbatch": False, "transfer_every": 2, "in_chop_prob": 0})
    state = layer.choppers
    assert isinstance(state, Choppers)
    rows = torch.ones(5, 2), torch.full((5, 2), -0.001)
    layer.pending.append(rows)
    algo.step(0.1)
    assert int(state.vectors) == 5 and int(state.passes) == 1
    layer.pending.append(rows)
    algo.step(0.1)
    assert int(state.vectors) == 10 and int(state.passes) == 2
    # P took 10 rows of 0.001 per element; reads of 0.005 (col 0, 1), then 0.01 (0, 1, 0):
    # H counts 100 * read, so column 0 holds 0.5 + 1 + 1 and column 1 0.5 + 1 before writes
    assert layer.fast is not None
    torch.testing.assert_close(layer.fast.weight, torch.full((2, 2), 0.01))
    torch.testing.assert_close(layer.tile.weight, torch.tensor([[0.02, 0.01], [0.02, 0.01]]))
