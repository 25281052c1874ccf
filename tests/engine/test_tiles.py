"""The tile's write noise (aihwkit's write_noise_std): a hidden weight plus read noise."""

from __future__ import annotations

import pytest
import torch

from aimc_engine.tiles import AnalogTile, TileConfig
from aimc_spec.spec import AnalogSpec


def noisy_tile(update: str = "expected", shape: tuple[int, int] = (300, 300)) -> AnalogTile:
    analog = AnalogSpec(
        device={"model": "softbounds", "dw_min": 0.002, "write_noise_std": 50.0}, update=update
    )
    g = torch.Generator().manual_seed(0)
    return AnalogTile(*shape, TileConfig(analog, g, torch.Generator().manual_seed(1)))


def test_write_noise_has_the_stated_mean_and_spread() -> None:
    tile = noisy_tile()
    tile.set_weights(torch.full(tile.shape, 0.3))
    noise = tile.weight - tile.hidden
    assert torch.equal(tile.hidden, torch.full(tile.shape, 0.3))
    assert noise.mean().item() == pytest.approx(0.0, abs=3 * 0.1 / 300)
    assert noise.std().item() == pytest.approx(50 * 0.002, rel=0.02)  # 0.1 in weight units


@pytest.mark.parametrize("update", ["expected", "pulsed", "rounded"])
def test_update_redraws_the_noise_of_touched_elements_only(update: str) -> None:
    tile = noisy_tile(update, shape=(40, 50))
    tile.set_weights(torch.zeros(tile.shape))
    before_read, before_hidden = tile.weight.clone(), tile.hidden.clone()
    x = torch.zeros(4, 50)
    x[:, :10] = 1.0  # only the first 10 columns see an input
    d = torch.ones(4, 40)
    tile.update(x, d, lr=0.05)
    touched = tile.hidden != before_hidden
    assert touched[:, :10].all() and not touched[:, 10:].any()
    # untouched elements keep their noise exactly; touched ones read hidden + fresh noise
    assert torch.equal(tile.weight[:, 10:], before_read[:, 10:])
    fresh = tile.weight[:, :10] - tile.hidden[:, :10]
    old = before_read[:, :10] - before_hidden[:, :10]
    assert not torch.isclose(fresh, old).any()
    assert fresh.std().item() == pytest.approx(0.1, rel=0.2)


def test_updates_act_on_the_hidden_weight() -> None:
    """The device rule moves the noise-free state; the noise never accumulates in it."""
    tile = noisy_tile()
    tile.set_weights(torch.zeros(tile.shape))
    for _ in range(20):
        tile.update(torch.ones(1, 300), torch.full((1, 300), -0.1), lr=0.1)  # dW = +0.01
    # soft bounds from 0 by 20 steps of 0.01 * q: every element the same, no noise in it
    expected = torch.zeros(1)
    for _ in range(20):
        expected = expected + 0.01 * (1 - expected)
    torch.testing.assert_close(tile.hidden, expected.expand(tile.shape), rtol=1e-5, atol=1e-6)
    assert (tile.weight - tile.hidden).std().item() == pytest.approx(0.1, rel=0.02)
