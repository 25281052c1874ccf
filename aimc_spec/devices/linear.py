"""The families whose response is linear in w: q_+ = 1 - gamma_up w / w_max, q_- = 1 -
gamma_down w / w_min; `softbounds` has both slopes 1, `linear` its own slopes and their
device-to-device spread (aihwkit's SoftBoundsDevice and LinearStepDevice)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.devices.base import DeviceSpecBase
from aimc_spec.spec_base import _fail


class _SlopedSpec(DeviceSpecBase):
    def _check_response(self, step_field: str) -> None:
        """Refuse a step past the response's own fixed point: q would change sign."""
        g_up, g_down = self.slopes()
        dw_min = float(self.dw_min or 0.0)  # derived before this check
        for g, bound, side in ((g_up, self.w_max, "w_max"), (g_down, -self.w_min, "w_min")):
            if g * dw_min >= bound:
                raise _fail(
                    step_field,
                    f"one pulse (dw_min {dw_min:g} x slope {g:g}) reaches past {side} "
                    f"= {bound:g}: the response would change sign; use more states or a "
                    "smaller slope",
                )


class SoftBoundsDeviceSpec(_SlopedSpec):
    """q_+ = 1 - w / w_max, q_- = 1 - w / w_min: the step shrinks to 0 at each bound.
    The default family: a device given without `model` is this one."""

    model: Literal["softbounds"] = Field(
        "softbounds", description="softbounds (the default): q = 1 - w / bound."
    )

    def slopes(self) -> tuple[float, float]:
        return 1.0, 1.0


class LinearDeviceSpec(_SlopedSpec):
    """q_+ = 1 - gamma w / w_max, q_- = 1 - gamma_down w / w_min, read at the nominal
    bounds while each element clips at its own (aihwkit's mean_bound_reference)."""

    model: Literal["linear"] = Field(description="linear: q = 1 - gamma w / bound.")
    gamma: float = Field(0.5, ge=0, description="Slope of the up response (gamma_up).")
    gamma_down: float | None = Field(
        None, ge=0, description="Slope of the down response (default: gamma)."
    )
    d2d_gamma: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Absolute spread of each element's slopes, |gamma + d2d_gamma*xi| "
        "(aihwkit's gamma_up_dtod/gamma_down_dtod).",
    )

    def slopes(self) -> tuple[float, float]:
        return self.gamma, self.gamma if self.gamma_down is None else self.gamma_down

    def slope_spread(self) -> float:
        return self.d2d_gamma
