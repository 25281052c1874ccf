"""Analog layers: an ideal device with perfect IO is plain torch; conv via im2col; no stash."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aimc_engine.algorithms import Algorithm
from aimc_engine.layers import AnalogConv2d, AnalogLinear
from aimc_engine.models import LayeredNet, build_model
from aimc_engine.spec import parse_spec
from aimc_engine.tiles import TileConfig


def twin_models(
    algorithm: str, update: str = "expected"
) -> tuple[LayeredNet, nn.Module, Algorithm]:
    spec = parse_spec(
        {
            "model": {"kind": "mlp", "hidden": [16]},
            "analog": {"device": {"model": "ideal"}, "update": update},
            "optimizer": {"algorithm": algorithm, "lr": 0.1},
        }
    )
    g = torch.Generator().manual_seed(0)
    ours = build_model(spec, (6,), 3, TileConfig(spec.analog, g, g))
    ref = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    with torch.no_grad():
        for ref_layer, layer in zip((ref[0], ref[2]), ours.analog_layers, strict=True):
            ref_layer.weight.copy_(layer.tile.weight)
            ref_layer.bias.copy_(layer.bias)
    return ours, ref, Algorithm(spec, ours, TileConfig(spec.analog, g, g))


@pytest.mark.parametrize("algorithm", ["sgd", "analog_sgd"])
def test_ideal_device_equals_torch_sgd(algorithm: str) -> None:
    ours, ref, algo = twin_models(algorithm)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(8, 6, generator=data)
        y = torch.randint(0, 3, (8,), generator=data)
        loss = F.cross_entropy(ours(x), y)
        loss.backward()
        algo.step(0.1)
        ref_loss = F.cross_entropy(ref(x), y)
        opt.zero_grad()
        ref_loss.backward()
        opt.step()
        torch.testing.assert_close(loss, ref_loss)
    for ref_layer, layer in zip((ref[0], ref[2]), ours.analog_layers, strict=True):
        torch.testing.assert_close(layer.tile.weight, ref_layer.weight.detach())
        torch.testing.assert_close(layer.bias, ref_layer.bias)


def test_conv_through_im2col_matches_torch_conv(gen: torch.Generator) -> None:
    spec = parse_spec({})
    conv = AnalogConv2d(3, 5, 3, TileConfig(spec.analog, gen, gen), stride=2, padding=1)
    x = torch.randn(2, 3, 9, 9, generator=gen, requires_grad=True)
    weight = conv.tile.weight.reshape(5, 3, 3, 3)
    ref_w = weight.clone().requires_grad_(True)
    ref_x = x.detach().clone().requires_grad_(True)
    y = conv(x)
    ref_y = F.conv2d(ref_x, ref_w, conv.bias.detach(), stride=2, padding=1)
    torch.testing.assert_close(y, ref_y)
    grad = torch.randn(y.shape, generator=gen)
    y.backward(grad)
    ref_y.backward(grad)
    torch.testing.assert_close(x.grad, ref_x.grad)
    rows_x, rows_d = conv.take_pending()
    torch.testing.assert_close((rows_d.T @ rows_x).reshape(5, 3, 3, 3), ref_w.grad)


def test_backward_reads_the_current_weights_not_a_stash(gen: torch.Generator) -> None:
    """On hardware there is no copy: a backward after an update sees the new weights."""
    layer = AnalogLinear(4, 3, TileConfig(parse_spec({}).analog, gen, gen))
    x = torch.randn(2, 4, generator=gen, requires_grad=True)
    y = layer(x)
    new_w = torch.randn(3, 4, generator=gen)
    layer.tile.weight = new_w
    d = torch.ones(2, 3)
    y.backward(d)
    torch.testing.assert_close(x.grad, d @ new_w)
    rows_x, rows_d = layer.take_pending()
    torch.testing.assert_close(rows_x, x.detach())
    torch.testing.assert_close(rows_d, d)


def test_first_layer_records_without_input_gradient(gen: torch.Generator) -> None:
    layer = AnalogLinear(4, 3, TileConfig(parse_spec({}).analog, gen, gen))
    layer(torch.randn(2, 4, generator=gen)).sum().backward()
    rows_x, rows_d = layer.take_pending()
    assert rows_x.shape == (2, 4) and rows_d.shape == (2, 3)
    with pytest.raises(RuntimeError, match="no backward pass recorded"):
        layer.take_pending()


def test_analog_layers_selection() -> None:
    def kinds(layers: object) -> list[bool]:
        spec = parse_spec({"model": {"hidden": [8, 8]}, "analog": {"layers": layers}})
        g = torch.Generator()
        m = build_model(spec, (4,), 2, TileConfig(spec.analog, g, g))
        return [layer.is_analog for layer in m.weight_layers]

    assert kinds("all") == [True, True, True]
    assert kinds("last") == [False, False, True]
    assert kinds([0, 2]) == [True, False, True]


def test_tiki_taka_transfers_columns_in_turn(gen: torch.Generator) -> None:
    spec = parse_spec(
        {
            "model": {"hidden": []},
            "analog": {"device": {"model": "ideal"}},
            "optimizer": {
                "algorithm": "tiki_taka",
                "tiki_taka": {
                    "transfer_lr": 1.0,
                    "scale_transfer_lr": False,
                    "transfer_every": 2,
                    "transfer_columns": 1,
                },
            },
        }
    )
    model = build_model(spec, (3,), 2, TileConfig(spec.analog, gen, gen))
    algo = Algorithm(spec, model, TileConfig(spec.analog, gen, gen))
    layer = model.analog_layers[0]
    assert layer.fast is not None and torch.equal(layer.fast.weight, torch.zeros(2, 3))
    w0 = layer.tile.weight.clone()
    for step in range(6):
        model(torch.randn(4, 3, generator=gen)).sum().backward()
        p_before = layer.fast.weight.clone()
        algo.step(0.1)
        moved = (layer.tile.weight - w0).abs().sum(0) > 0  # which columns of W changed
        if step % 2 == 0:  # no transfer on this update: W untouched
            assert not moved.any()
        else:
            col = step // 2
            assert moved[col]
            torch.testing.assert_close(
                layer.tile.weight[:, col] - w0[:, col], layer.fast.weight[:, col], atol=1e-6, rtol=0
            )
            assert not torch.equal(p_before, layer.fast.weight)
        w0 = layer.tile.weight.clone()
