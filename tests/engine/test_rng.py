"""The cheap uniforms behind stochastic rounding and pulse trains."""

from __future__ import annotations

import torch

from aimc_engine.rng import uniform


def test_uniform_moments_and_range_in_every_lane() -> None:
    u = uniform((400_001,), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert u.shape == (400_001,) and u.dtype == torch.float32
    assert u.min() > 0 and u.max() < 1
    lanes = u[:400_000].view(-1, 4)
    torch.testing.assert_close(lanes.mean(0), torch.full((4,), 0.5), atol=3e-3, rtol=0)
    torch.testing.assert_close(lanes.std(0), torch.full((4,), 12**-0.5), atol=3e-3, rtol=0)
    # neighbours are independent: correlation of consecutive samples near 0
    corr = torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1]
    assert abs(corr) < 0.01


def test_uniform_is_seeded_and_shaped() -> None:
    a = uniform((3, 5), torch.Generator().manual_seed(7), torch.device("cpu"))
    b = uniform((3, 5), torch.Generator().manual_seed(7), torch.device("cpu"))
    assert a.shape == (3, 5) and torch.equal(a, b)
