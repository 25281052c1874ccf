"""Metric probes: the exact digital gradient, and observation that leaves training's state alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from aimc_engine.metrics import evaluate, gradient_norm_sq, observing
from aimc_engine.models import LayeredNet, build_model
from aimc_engine.tiles import AnalogTile, TileConfig
from aimc_spec.spec import parse_spec


def noisy_model(algorithm: str) -> tuple[LayeredNet, TileConfig]:
    """A tanh MLP 6-8-8-3 on tiles with noisy IO; under Tiki-Taka P is made non-zero."""
    spec = parse_spec(
        {
            "model": {"kind": "mlp", "hidden": [8, 8], "activation": "tanh"},
            "analog": {"io": {"perfect": False}, "layers": [0, 2]},  # layer 1 digital
            "optimizer": {"algorithm": algorithm},
        }
    )
    config = TileConfig(
        spec.analog, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    )
    model = build_model(spec, (6,), 3, config)
    if algorithm == "tiki_taka":
        for layer in model.analog_layers:
            layer.fast = AnalogTile(*layer.tile.shape, config)
            layer.fast_gamma = 0.5
    return model, config


def reference_gradient_norm_sq(model: LayeredNet, x: Tensor, y: Tensor) -> float:
    """The same network written out in plain torch with the weights its MVMs use."""
    layers = model.weight_layers
    weights = [layer.effective_weight().clone().requires_grad_() for layer in layers]
    biases = [layer.bias for layer in layers if layer.bias is not None]
    h = x
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = F.linear(h, w, b)
        if i < len(layers) - 1:
            h = torch.tanh(h)
    loss = F.cross_entropy(h, y)
    grads = torch.autograd.grad(loss, [*weights, *biases])
    return sum(float(g.square().sum()) for g in grads)


def test_gradient_norm_is_the_exact_digital_gradient() -> None:
    """Noisy IO would make the analog backward's gradient random; the probe's is exact
    and repeatable, W + gamma P under Tiki-Taka."""
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(3))
    y = torch.arange(50) % 3
    for algorithm in ("analog_sgd", "tiki_taka"):
        model, _ = noisy_model(algorithm)
        grad_sq, loss = gradient_norm_sq(model, x, y)
        assert grad_sq == gradient_norm_sq(model, x, y)[0]
        assert grad_sq == pytest.approx(reference_gradient_norm_sq(model, x, y), rel=1e-5)
        assert loss > 0


def test_probes_leave_training_state_alone() -> None:
    """Mid-pipeline rows and gradients stay as they were; training's noise stream does not
    move; every tile draws from its own generator again afterwards."""
    model, config = noisy_model("tiki_taka")
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(4))
    y = torch.arange(20) % 3
    F.cross_entropy(model(x[:5]), y[:5]).backward()  # a micro-batch awaiting its update
    pending = [list(layer.pending) for layer in model.weight_layers]
    grads = [p.grad for p in model.digital_parameters()]
    copies = [g.clone() for g in grads if g is not None]
    assert len(copies) == len(grads) == 3
    noise_state = config.noise_generator.get_state()
    observe = torch.Generator().manual_seed(5)
    observe_state = observe.get_state()

    gradient_norm_sq(model, x, y)
    evaluate(model, x, y, generator=observe)

    for layer, rows in zip(model.weight_layers, pending, strict=True):
        assert len(layer.pending) == len(rows) == 1
        assert all(a is b for a, b in zip(layer.pending[0], rows[0], strict=True))
    for p, grad, copy in zip(model.digital_parameters(), grads, copies, strict=True):
        assert p.grad is grad and grad is not None and torch.equal(grad, copy)
    assert torch.equal(config.noise_generator.get_state(), noise_state)
    assert not torch.equal(observe.get_state(), observe_state)  # evaluation drew from it
    tiles = [m for m in model.modules() if isinstance(m, AnalogTile)]
    assert len(tiles) == 5  # three W, two P
    assert all(tile.noise_generator is config.noise_generator for tile in tiles)
    assert all("mvm" not in vars(layer) for layer in model.weight_layers)  # methods back


def test_observing_restores_the_generators_after_an_error() -> None:
    model, config = noisy_model("analog_sgd")
    observe = torch.Generator()
    with pytest.raises(KeyError), observing(model, observe):
        assert all(layer.tile.noise_generator is observe for layer in model.weight_layers)
        raise KeyError("interrupted")
    assert all(
        layer.tile.noise_generator is config.noise_generator for layer in model.weight_layers
    )
