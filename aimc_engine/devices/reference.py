"""aihwkit's SoftBoundsReference family: soft bounds on the device state g = w + r,
q_+ = 1 - g / b_max, q_- = 1 - g / b_min, each 1 where its bound sits on the wrong side
of 0 (a corrupt element's; update_once_add in rpu_softbounds_reference_device.cpp).
Device.raw passes g and the bounds b (the weight's bounds plus r)."""

from __future__ import annotations

import torch
from torch import Tensor

from aimc_spec.devices import SoftBoundsReferenceDeviceSpec


def response(
    spec: SoftBoundsReferenceDeviceSpec, g: Tensor, b_min: Tensor | float, b_max: Tensor | float
) -> tuple[Tensor, Tensor]:
    b_min, b_max = torch.as_tensor(b_min, dtype=g.dtype), torch.as_tensor(b_max, dtype=g.dtype)
    up = torch.where(b_max > 0, 1 - g / b_max, 1.0)
    down = torch.where(b_min < 0, 1 - g / b_min, 1.0)
    return up, down
