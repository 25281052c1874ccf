"""Counter-based uniform random numbers for stochastic rounding and pulse trains.

Number i of a draw is u_i = (lowbias32(i + key) >> 8 + 0.5) / 2^24, with lowbias32
Wellons' integer hash (hash-prospector, its improved constants) and the key one
32-bit draw of the run's generator. So a tile's worth of numbers costs one draw of
the generator, element i's number depends on nothing but i and the key, and a kernel
can compute just the numbers it needs, in any order, on any number of threads:
update_kernels.c computes these very bits inside its loops. torch's CPU generator,
sequential at about 5 ns per float, had been the largest cost of rounded and pulsed
updates. The resolution is 2^-24: a probability is off by at most 2^-25.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Both multipliers are below 2^31, so the int64 products here never overflow.
_MASK = 0xFFFFFFFF
_MUL1, _MUL2 = 0x21F0AAAD, 0x735A2D97


def draw_key(generator: torch.Generator) -> Tensor:
    """A fresh 32-bit key from the run's generator (a 0-d int64 tensor on its device)."""
    return torch.randint(0, 2**32, (), generator=generator, device=generator.device)


def counter_uniform(shape: tuple[int, ...], key: Tensor, device: torch.device) -> Tensor:
    """Uniform float32 samples in (0, 1): element i (in row-major order) is
    (lowbias32(i + key) >> 8 + 0.5) / 2^24."""
    n = math.prod(shape)
    return uniform_at(torch.arange(n, dtype=torch.int64, device=device), key).reshape(shape)


def uniform_at(index: Tensor, key: Tensor) -> Tensor:
    """The counter-based uniforms of the given numbers i (int64, any shape), float32."""
    # in place: each op is a pass over n int64s, the cost of this function
    x = index.add(key.to(index.device)).bitwise_and_(_MASK)
    x.bitwise_xor_(x >> 16).mul_(_MUL1).bitwise_and_(_MASK)
    x.bitwise_xor_(x >> 15).mul_(_MUL2).bitwise_and_(_MASK)
    x.bitwise_xor_(x >> 15)
    return (x >> 8).to(torch.float32).add_(0.5).mul_(2.0**-24)


def normal_at(index: Tensor, key: Tensor) -> Tensor:
    """Counter-based standard normal number i for each i of index: the first of
    Box-Muller pair i (normal_pair_at), float32."""
    return normal_pair_at(index, key)[0]


def normal_pair_at(index: Tensor, key: Tensor) -> tuple[Tensor, Tensor]:
    """Both normal numbers of Box-Muller pair i for each i of index, on the uniforms 2i
    and 2i + 1: r cos(2 pi u2) and r sin(2 pi u2) with r = sqrt(-2 log u1), two
    independent standard normals for the price of one logarithm. The angle is u2 less
    its nearest quarter turn q/4 (exact), times 2 pi, the quarter turns then swapping and
    negating cos and sin: the reduction update_kernels.c makes (its own vectorised log
    and sincos), so both agree within a float32 ulp or so."""
    u1, u2 = uniform_at(2 * index, key), uniform_at(2 * index + 1, key)
    r = u1.log_().mul_(-2.0).sqrt_()
    quarter = torch.floor(u2 * 4 + 0.5)
    theta = (u2 - quarter * 0.25) * (2 * math.pi)
    k = quarter.to(torch.int64)
    odd = (k & 1).bool()
    cos, sin = theta.cos(), theta.sin()
    c = torch.where(odd, sin, cos) * torch.where(((k + 1) & 2).bool(), -1.0, 1.0)
    s = torch.where(odd, cos, sin) * torch.where((k & 2).bool(), -1.0, 1.0)
    return r * c, r * s
