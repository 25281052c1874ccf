"""Residual Learning (arXiv 2502.06309): the update rules on a hand case, and the paper's
claim on noisy least squares: with P's reference at its symmetric point (G = 0 where P
reads 0) the error falls to digital SGD's order, where Analog SGD keeps the floor of
its implicit penalty and a P read without the reference keeps a bias."""

from __future__ import annotations

import torch

from aimc_engine.algorithms import Algorithm
from aimc_engine.layers import AnalogLinear
from aimc_engine.models import LayeredNet
from aimc_engine.tiles import TileConfig
from aimc_spec.spec import parse_spec
from tests.engine.test_algorithms import final_error

ASYMMETRIC = {"model": "softbounds", "states": 1200, "up_down": 0.2}


def test_p_takes_the_gradient_and_w_takes_beta_p_every_transfer() -> None:
    """Constant steps (F = 1, G = 0), reference none, lr 0.5, beta 0.25, gamma 2,
    transfer_every 2: update 1 sets P = -0.5 d^T x and leaves W; update 2 adds the same
    to P (2 P in all) and writes W = 0.25 * 2 P; the MVMs read W + 2 P."""
    spec = parse_spec(
        {
            "analog": {"device": {"model": "constant_step", "w_min": -4, "w_max": 4}},
            "optimizer": {
                "algorithm": "residual_learning",
                "residual_learning": {
                    "gamma": 2.0,
                    "beta": 0.25,
                    "transfer_every": 2,
                    "reference": "none",
                },
            },
        }
    )
    g = torch.Generator().manual_seed(0)
    config = TileConfig(spec.analog, g, g)
    layer = AnalogLinear(2, 2, config, bias=False)
    layer.tile.set_weights(torch.zeros(2, 2))
    algo = Algorithm(spec, LayeredNet([layer]), config)
    assert layer.fast is not None and layer.fast_ref is None
    x, d = torch.tensor([[1.0, -0.5]]), torch.tensor([[0.4, 0.2]])
    p1 = -0.5 * d.T @ x  # [[-0.2, 0.1], [-0.1, 0.05]]
    layer.pending.append((x, d))
    algo.step(0.5)
    torch.testing.assert_close(layer.fast.weight, p1)
    assert torch.equal(layer.tile.weight, torch.zeros(2, 2))
    layer.pending.append((x, d))
    algo.step(0.5)
    torch.testing.assert_close(layer.fast.weight, 2 * p1)
    torch.testing.assert_close(layer.tile.weight, 0.25 * 2 * p1)
    torch.testing.assert_close(layer.effective_weight(), 0.25 * 2 * p1 + 2.0 * 2 * p1)


def test_the_reference_gives_exact_convergence_unlike_analog_sgd() -> None:
    """Noisy least squares on a device whose symmetric point is not 0
    (test_algorithms.final_error, lr decaying). Measured: sgd 0.026, residual_learning
    0.040, without the reference 0.110, analog_sgd 0.355."""
    digital = final_error("sgd", ASYMMETRIC)
    residual = final_error("residual_learning", ASYMMETRIC)
    unreferenced = final_error(
        "residual_learning", ASYMMETRIC, residual_learning={"reference": "none"}
    )
    analog = final_error("analog_sgd", ASYMMETRIC)
    assert residual < 2 * digital, (digital, residual)
    assert analog > 5 * residual, (analog, residual)
    assert unreferenced > 2 * residual, (unreferenced, residual)
