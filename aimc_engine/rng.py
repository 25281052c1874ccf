"""Cheap uniform random numbers for stochastic rounding and pulse trains.

torch's CPU generator spends about 5 ns per float32 uniform, which made random
numbers a large cost of pulsed and rounded updates. Here one 64-bit draw feeds
four uniforms, one per 16-bit lane: about half the cost per number. torch's
int64 draws are 63 random bits, so the top lane has 15 bits and is rescaled
on its own. With a resolution of 2^-16 (2^-15 for every fourth number) a
probability is off by at most 2^-16: far below one pulse's worth on any tile.
On CUDA the device generator is fast and used directly.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

_TOP = 3 if sys.byteorder == "little" else 0  # the int16 lane holding bits 48..63


def uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """Uniform float32 samples in (0, 1) of the given shape, from `generator`."""
    if device.type != "cpu":
        return torch.rand(shape, generator=generator, device=device)
    n = 1
    for size in shape:
        n *= size
    draws = torch.empty(-(-n // 4), dtype=torch.int64).random_(generator=generator)
    # lanes as signed int16 in [-32768, 32767] -> (v + 32768.5) / 65536 in (0, 1)
    u = draws.view(torch.int16).to(torch.float32).add_(32768.5).mul_(1 / 65536)
    # the top lane holds [0, 32767]: (v + 0.5) / 32768 = 2 u - 1
    u.view(-1, 4)[:, _TOP].mul_(2).sub_(1)
    return u[:n].reshape(shape)


# Counter-based uniforms: u_i = lowbias32(i + key) (Wellons' hash-prospector, the
# improved constants), 24 bits per number. Element i's number depends on nothing but
# i and the key, so a kernel can draw only the numbers it needs, in any order and on
# any number of threads (update_kernels.c computes the same bits), and one draw of the
# run's generator (the key) stands for a whole tile's numbers. Both multipliers are below
# 2^31, so the int64 products here never overflow.
_MASK = 0xFFFFFFFF
_MUL1, _MUL2 = 0x21F0AAAD, 0x735A2D97


def draw_key(generator: torch.Generator) -> Tensor:
    """A fresh 32-bit key from the run's generator (a 0-d int64 tensor on its device)."""
    return torch.randint(0, 2**32, (), generator=generator, device=generator.device)


def counter_uniform(shape: tuple[int, ...], key: Tensor, device: torch.device) -> Tensor:
    """Uniform float32 samples in (0, 1): element i (in row-major order) is
    (lowbias32(i + key) >> 8 + 0.5) / 2^24."""
    n = 1
    for size in shape:
        n *= size
    x = (torch.arange(n, dtype=torch.int64, device=device) + key.to(device)) & _MASK
    x = x ^ (x >> 16)
    x = (x * _MUL1) & _MASK
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _MASK
    x = x ^ (x >> 15)
    return ((x >> 8).to(torch.float32) + 0.5).mul_(2.0**-24).reshape(shape)
