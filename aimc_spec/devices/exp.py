"""The exponential family: q_+ = (e^{gamma (1 - w/w_max)} - 1)/(e^gamma - 1), q_- alike
towards w_min; gamma -> 0 is the soft-bounds response."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.devices.base import DeviceSpecBase


class ExpDeviceSpec(DeviceSpecBase):
    """A response that falls exponentially towards the bound it moves to."""

    model: Literal["exp"] = Field(description="exp: q = expm1(gamma (1 - w/bound)) / expm1(gamma).")
    gamma: float = Field(0.5, ge=0, description="Exponent of both responses (0: soft bounds).")
