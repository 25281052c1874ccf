"""AGAD on a hand case: the numbers follow aihwkit 1.2's
src/rpucuda/rpu_dynamic_transfer_device.cpp, DynamicTransferRPUDevice::readAndUpdate
(after a column's chopper flipped, mu = its running mean; H += chop * (read - mu) *
lr / bg; where |H| >= 1 a step into W, written only once transfer_counter > the
period; mean += m (read - mean), m = min(tail_weightening / period, 1); regular flips
when transfer_counter % period + 1 == period) and DynamicTransferRPUDeviceMetaParameter::
getNumInChopSamples (period = max(ceil(1 / in_chop_prob), 2))."""

from __future__ import annotations

import pytest
import torch

from aimc_engine.agad import DynamicReference
from aimc_engine.algorithms import Algorithm
from aimc_engine.layers import AnalogLinear
from aimc_engine.models import LayeredNet
from aimc_engine.tiles import TileConfig
from aimc_spec.spec import SpecError, parse_spec

CONSTANT = {"model": "constant_step", "w_min": -4.0, "w_max": 4.0, "states": 800}


def test_the_reference_follows_the_running_mean_of_the_last_period() -> None:
    """One weight, period 2 (in_chop_prob 0.5), m = 0.5 (tail_weightening 1), H counts
    100 * (read - mu); P gains 0.013 times the chopper sign per update.
    1: read 0.013, mu 0: H 1.3 -> a step, not written (warm-up), mean 0.0065.
    2: read 0.026: H 2.6 -> a step, not written, mean 0.01625; the chopper flips.
    3: P 0.013, mu = 0.01625, H = -(0.013 - 0.01625) * 100 = 0.325, mean 0.014625.
    4: P 0, H = 0.325 + 1.625 = 1.95 -> one step written (pass 3 > period 2), mean
       0.0073125; the chopper flips back.
    5: P 0.013, mu = 0.0073125, H = 0.56875, mean 0.01015625."""
    spec = parse_spec(
        {
            "analog": {"device": CONSTANT, "update": "expected"},
            "optimizer": {
                "algorithm": "agad",
                "agad": {"in_chop_prob": 0.5, "tail_weightening": 1.0, "scale_transfer_lr": False},
            },
        }
    )
    g = torch.Generator().manual_seed(0)
    config = TileConfig(spec.analog, g, g)
    layer = AnalogLinear(1, 1, config, bias=False)
    layer.tile.set_weights(torch.zeros(1, 1))
    algo = Algorithm(spec, LayeredNet([layer]), config)
    state = layer.choppers
    assert isinstance(state, DynamicReference) and layer.fast_ref is None
    for _ in range(5):
        layer.pending.append((torch.ones(1, 1), torch.tensor([[-0.013]])))
        algo.step(0.3)
    torch.testing.assert_close(layer.tile.weight, torch.tensor([[0.01]]))
    torch.testing.assert_close(state.h, torch.tensor([[0.56875]]))
    torch.testing.assert_close(state.past_mean, torch.tensor([[0.0073125]]))
    torch.testing.assert_close(state.running_mean, torch.tensor([[0.01015625]]))
    assert float(state.in_chop[0]) == 1.0 and int(state.passes) == 5


def test_agad_needs_chopper_flips() -> None:
    with pytest.raises(SpecError, match=r"optimizer\.agad\.in_chop_prob"):
        parse_spec({"optimizer": {"algorithm": "agad", "agad": {"in_chop_prob": 0}}})
