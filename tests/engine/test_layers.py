"""Analog layers: an ideal device with perfect IO is plain torch; every conv path gives the
im2col numbers; no stash."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_engine.algorithms import Algorithm
from aimc_engine.layers import AnalogConv2d, AnalogLinear
from aimc_engine.models import LayeredNet, build_model
from aimc_engine.mvm import acts_per_element
from aimc_engine.tiles import TileConfig
from aimc_spec.spec import parse_spec


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


# IO models of the conv paths: torch convolutions (per-element IO) and im2col rows
PERFECT = {"perfect": True}
PER_ELEMENT = {
    "perfect": False,
    "out_noise": 0.0,
    "noise_management": False,
    "bound_management": False,
}
ROW_WISE = {"perfect": False, "out_noise": 0.0}  # noise and bound management: im2col


def conv_and_rows_twin(io: dict, **analog_fields: object) -> tuple[AnalogConv2d, AnalogLinear]:
    """A conv layer and a linear layer holding the same tile, generators in the same state:
    the linear layer applied to im2col rows is the conv path of before this change."""
    analog = parse_spec({"analog": {"io": io, **analog_fields}}).analog

    def config() -> TileConfig:
        return TileConfig(
            analog, torch.Generator().manual_seed(3), torch.Generator().manual_seed(7)
        )

    conv = AnalogConv2d(3, 4, 3, config(), stride=2, padding=1)
    rows = AnalogLinear(27, 4, config())
    with torch.no_grad():
        rows.tile.set_weights(conv.tile.weight * 3)  # larger weights: ADC and clipping matter
        conv.tile.set_weights(conv.tile.weight * 3)
        rows.bias.copy_(conv.bias)  # type: ignore[union-attr]
    return conv, rows


def through_rows(rows: AnalogLinear, x: Tensor) -> Tensor:
    """The im2col reference: unfold, the tile's row-wise MVM, fold back into an image."""
    b, _, h, w = x.shape
    h_out, w_out = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    cols = F.unfold(x, 3, padding=1, stride=2).transpose(1, 2).reshape(b * h_out * w_out, -1)
    y = rows(cols)
    return y.reshape(b, h_out * w_out, -1).transpose(1, 2).reshape(b, -1, h_out, w_out)


@pytest.mark.parametrize(
    "io", [PERFECT, PER_ELEMENT, ROW_WISE], ids=["perfect", "per_element", "row_wise"]
)
def test_conv_paths_give_the_im2col_numbers(io: dict) -> None:
    """Forward, input gradient and weight gradient of every conv path equal the im2col
    rows through the tile (float tolerance; the row-wise fallback is that path)."""
    conv, rows = conv_and_rows_twin(io)
    assert (conv.tile.analog.io.perfect or acts_per_element(conv.tile.analog.io)) == (
        io is not ROW_WISE
    )
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(5)) * 2
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, ref = conv(x1), through_rows(rows, x2)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(6))
    y.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.bias.grad, rows.bias.grad)  # type: ignore[union-attr]
    ref_x, ref_d = rows.take_pending()
    conv_x, conv_d = conv.take_pending()  # rows made from the recorded images
    torch.testing.assert_close(conv_x, ref_x)
    torch.testing.assert_close(conv_d, ref_d)


@pytest.mark.parametrize("update", ["expected", "rounded", "pulsed"])
def test_conv_updates_give_the_im2col_numbers(update: str, gen: torch.Generator) -> None:
    """A training step of a conv layer moves its tile as the im2col rows' update does:
    from d^T x (the convolution's weight gradient) or, pulsed, from the rows."""
    # a coarse device (300 states) with noise: rounding and pulses matter
    device = {"states": 300, "c2c_noise": 0.3}
    spec = parse_spec({"analog": {"update": update, "device": device}})
    conv, rows = conv_and_rows_twin({"perfect": True}, update=update, device=device)
    w0 = conv.tile.weight.clone()
    algos = [Algorithm(spec, m, TileConfig(spec.analog, gen, gen)) for m in (conv, rows)]
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    for step in range(3):
        grad = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(step))
        conv(x).backward(grad)
        through_rows(rows, x).backward(grad)
        for algo in algos:
            algo.step(0.5, scale=0.5)
        torch.testing.assert_close(conv.tile.weight, rows.tile.weight, rtol=1e-5, atol=1e-6)
    assert (conv.tile.weight - w0).abs().max() > 0.02  # several pulses' worth moved


def test_noisy_per_element_conv_matches_the_rows_in_distribution() -> None:
    """Output noise and ADC through the convolution path: per output element the same
    mean and spread as the im2col rows (the draws differ: they follow the image layout)."""
    io = {"perfect": False, "out_noise": 0.3, "noise_management": False, "bound_management": False}
    conv, rows = conv_and_rows_twin(io)
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ys = torch.stack([conv(x) for _ in range(400)])
        refs = torch.stack([through_rows(rows, x) for _ in range(400)])
    spread = refs.std(0)
    assert spread.mean().item() == pytest.approx(0.3, rel=0.1)
    # means agree within 5 standard errors, spreads within 20%, element by element
    assert ((ys.mean(0) - refs.mean(0)).abs() <= 5 * spread / 20 + 1e-6).all()
    assert ((ys.std(0) - spread).abs() <= 0.2 * spread + 1e-6).all()


def test_gradient_probe_covers_convolutions(gen: torch.Generator) -> None:
    """While exact_weight is set a conv layer is plain torch and records nothing."""
    conv = AnalogConv2d(3, 4, 3, TileConfig(parse_spec({}).analog, gen, gen), padding=1)
    leaf = conv.tile.weight.clone().requires_grad_()
    conv.exact_weight = leaf
    x = torch.randn(2, 3, 6, 6, generator=gen)
    conv(x).square().sum().backward()
    ref = leaf.detach().reshape(4, 3, 3, 3).requires_grad_()
    F.conv2d(x, ref, conv.bias, padding=1).square().sum().backward()
    torch.testing.assert_close(leaf.grad, ref.grad.reshape(4, 27))  # type: ignore[union-attr]
    assert conv.pending == []


def test_gradient_only_conv_records_the_same_product() -> None:
    """A conv layer whose update needs only d^T x computes it in its backward (one
    convolution_backward call): the same input, bias and weight gradients as from the
    recorded images, summed over micro-batches."""
    conv, _ = conv_and_rows_twin(PERFECT)
    twin, _ = conv_and_rows_twin(PERFECT)
    twin.gradient_only = True
    g = torch.Generator().manual_seed(5)
    for _ in range(2):  # two micro-batches before the update
        x = torch.randn(2, 3, 9, 9, generator=g)
        grad = torch.randn(2, 4, 5, 5, generator=g)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        conv(x1).backward(grad)
        twin(x2).backward(grad)
        torch.testing.assert_close(x2.grad, x1.grad)
    assert twin.pending == [] and len(conv.pending) == 2
    torch.testing.assert_close(twin.bias.grad, conv.bias.grad)  # type: ignore[union-attr]
    torch.testing.assert_close(twin.take_gradient(0.5), conv.take_gradient(0.5))
    with pytest.raises(RuntimeError, match="no backward pass recorded"):
        twin.take_gradient()
