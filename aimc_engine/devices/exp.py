"""The exponential family: q_+ = expm1(g (1 - w/w_max)) / expm1(g), q_- alike towards
w_min; gamma -> 0 is the soft-bounds device."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aimc_spec.devices import ExpDeviceSpec


def response(
    spec: ExpDeviceSpec, w: Tensor, w_min: Tensor | float, w_max: Tensor | float
) -> tuple[Tensor, Tensor]:
    g = spec.gamma
    if g == 0:  # the limit gamma -> 0 is the soft-bounds device
        return 1 - w / w_max, 1 - w / w_min
    norm = math.expm1(g)
    return torch.expm1(g * (1 - w / w_max)) / norm, torch.expm1(g * (1 - w / w_min)) / norm
