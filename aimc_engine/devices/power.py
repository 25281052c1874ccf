"""The power family: q_+ = ((w_max - w)/span)^gamma, q_- = ((w - w_min)/span)^gamma."""

from __future__ import annotations

from torch import Tensor

from aimc_spec.devices import PowerDeviceSpec


def response(
    spec: PowerDeviceSpec, w: Tensor, w_min: Tensor | float, w_max: Tensor | float
) -> tuple[Tensor, Tensor]:
    span = w_max - w_min
    up = ((w_max - w) / span).clamp_min(0) ** spec.gamma
    down = ((w - w_min) / span).clamp_min(0) ** spec.gamma
    return up, down
