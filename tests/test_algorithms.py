"""Analog SGD's error floor on a saturating device, and Tiki-Taka's cure (section 6)."""

from __future__ import annotations

import torch

from aimc_engine.algorithms import Algorithm
from aimc_engine.layers import AnalogLinear
from aimc_engine.models import LayeredNet
from aimc_engine.spec import parse_spec
from aimc_engine.tiles import TileConfig


def final_error(algorithm: str, steps: int = 4000) -> float:
    """Mean ||W - W*||^2 over the last 500 steps of noisy least squares, lr decaying.

    The teacher W* has entries up to 0.6 on a soft-bounds device with tau = 1;
    labels carry unit noise, so gradients stay noisy at the optimum.
    """
    spec = parse_spec(
        {
            "analog": {"device": {"model": "softbounds", "states": 1200}},
            "optimizer": {
                "algorithm": algorithm,
                "lr": 0.05,
                "tiki_taka": {"transfer_lr": 0.05, "transfer_every": 1, "transfer_columns": 1},
            },
        }
    )
    g = torch.Generator().manual_seed(0)
    w_star = torch.rand(4, 8, generator=torch.Generator().manual_seed(42)) * 1.2 - 0.6
    config = TileConfig(spec.analog, g, g)
    layer = AnalogLinear(8, 4, config, bias=False)
    layer.tile.weight = torch.zeros(4, 8)
    model = LayeredNet([layer])
    algo = Algorithm(spec, model, config)
    data = torch.Generator().manual_seed(1)
    errors = []
    for t in range(steps):
        x = torch.randn(4, 8, generator=data)
        y = x @ w_star.T + torch.randn(4, 4, generator=data)
        (0.5 * (model(x) - y).square().sum(1).mean()).backward()
        algo.step(0.05 / (1 + t / 500))
        if t >= steps - 500:
            errors.append(float((layer.effective_weight() - w_star).square().sum()))
    return sum(errors) / len(errors)


def test_analog_sgd_floor_and_tiki_taka_closes_most_of_the_gap() -> None:
    digital, analog, tiki_taka = (final_error(a) for a in ("sgd", "analog_sgd", "tiki_taka"))
    assert analog > 5 * digital  # the asymmetric device's floor
    closed = (analog - tiki_taka) / (analog - digital)
    assert closed > 0.7, (digital, analog, tiki_taka)
