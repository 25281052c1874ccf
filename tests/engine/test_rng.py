"""The counter-based uniforms behind stochastic rounding and pulse trains."""

from __future__ import annotations

import torch

from aimc_engine.rng import counter_uniform, draw_key


def lowbias32(x: int) -> int:
    """Wellons' lowbias32 (hash-prospector), the reference for counter_uniform."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x735A2D97) & 0xFFFFFFFF
    return x ^ (x >> 15)


def test_counter_uniforms_are_the_hash_of_index_plus_key() -> None:
    key = torch.tensor(2**32 - 500)  # the index + key wraps around 2^32
    u = counter_uniform((2, 500), key, torch.device("cpu"))
    ref = [((lowbias32(i + int(key)) >> 8) + 0.5) / 2**24 for i in range(1000)]
    assert torch.equal(u.reshape(-1), torch.tensor(ref, dtype=torch.float32))


def test_counter_uniforms_are_uniform_and_independent() -> None:
    """Mean, variance, a 100-bin chi-square, neighbours' and two keys' correlation."""
    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(8)
    u = counter_uniform((1_000_000,), draw_key(g), cpu)
    assert float(u.min()) > 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.002 and abs(float(u.var()) - 1 / 12) < 0.001
    counts = torch.histc(u, bins=100, min=0, max=1)
    chi2 = float(((counts - 10_000) ** 2 / 10_000).sum())
    assert chi2 < 150  # 99 degrees of freedom: p ~ 0.0006 at 150
    other = counter_uniform((1_000_000,), draw_key(g), cpu)
    for a, b in ((u[:-1], u[1:]), (u, other)):
        assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.005


def test_a_key_is_one_draw_of_the_generator() -> None:
    """Keys come from the run's generator: the same seed, the same keys."""
    a, b = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert [int(draw_key(a)) for _ in range(3)] == [int(draw_key(b)) for _ in range(3)]
