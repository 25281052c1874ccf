"""Cheap uniform random numbers for stochastic rounding and pulse trains.

torch's CPU generator spends about 5 ns per float32 uniform, which made random
numbers the largest cost of a pulsed or rounded update. Here one 64-bit draw
feeds three 16-bit uniforms (the top 16 bits of torch's int64 draws are only
15 random bits, so they are skipped). Resolution 2^-16 means a probability is
off by at most 2^-17, far below one pulse's worth for any tile we simulate.
On CUDA the device generator is fast and used directly.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor

_LANES = 3  # usable 16-bit lanes per int64 draw
# the int16 views of an int64 whose top lane (15 random bits) is skipped
_LOW_LANES = slice(0, 3) if sys.byteorder == "little" else slice(1, 4)


def uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """Uniform float32 samples in (0, 1) of the given shape, from `generator`."""
    if device.type != "cpu":
        return torch.rand(shape, generator=generator, device=device)
    n = math.prod(shape)
    draws = torch.empty(-(-n // _LANES), dtype=torch.int64).random_(generator=generator)
    lanes = draws.view(torch.int16).reshape(-1, 4)[:, _LOW_LANES]
    u = lanes.reshape(-1)[:n].to(torch.float32).add_(32768.5).mul_(1 / 65536)
    return u.reshape(shape)
