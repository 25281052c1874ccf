"""The power family: q_+ = ((w_max - w)/R)^gamma, q_- = ((w - w_min)/R)^gamma with R =
w_max - w_min (the theory papers' shape; aihwkit's PowStepDevice up to scale)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.devices.base import DeviceSpecBase


class PowerDeviceSpec(DeviceSpecBase):
    """A response that is a power of the distance to the bound it moves towards."""

    model: Literal["power"] = Field(description="power: q = (distance to the bound / R)^gamma.")
    gamma: float = Field(0.5, ge=0, description="Exponent of both responses (0: constant step).")
