"""The constant-step families: every pulse moves a weight by the same step (the response
is 1), with no bounds (`ideal`) or clipped at them (`constant_step`). Only the shared
device fields (base.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.devices.base import DeviceSpecBase


class IdealDeviceSpec(DeviceSpecBase):
    """q_+ = q_- = 1 and no bounds: a floating-point weight moved in steps of dw_min
    (w_min and w_max only set dw_min through states)."""

    model: Literal["ideal"] = Field(description="ideal: q = 1, no bounds.")


class ConstantStepDeviceSpec(DeviceSpecBase):
    """q_+ = q_- = 1, weights clipped at the bounds (aihwkit's ConstantStepDevice)."""

    model: Literal["constant_step"] = Field(description="constant_step: q = 1, clipped.")
