"""aihwkit's PulsedDevice fields beyond the shared ones (base.py): how device-to-device
variation is drawn (log-normal step gain, enforce_consistency), corrupt devices, and the
reset value with its spread. The families that carry every field of an aihwkit 1.2
class (exp_step_noise, softbounds_reference) take them from `PulsedOptions`; the older
families keep the shared fields only, so their specs read as before (analog-model.md
section 9, aihwkit.md)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from aimc_spec.devices.base import MAX_D2D, DeviceSpecBase
from aimc_spec.spec_base import _fail

# aihwkit draws the bounds as w_max |1 + d2d xi| (with enforce_consistency): a spread
# of 1 or more puts a third of the elements' bound at the other side of 0 or further.
MAX_BOUND_D2D = 1.0
# exp(d2d xi): beyond this, one element in a hundred has a step 10^4 times the nominal
MAX_LOG_NORMAL_D2D = 4.0


def _bound_d2d(description: str) -> Any:
    return Field(None, ge=0, le=MAX_BOUND_D2D, description=description)


class PulsedOptions(DeviceSpecBase):
    """The rest of aihwkit's PulsedDevice (rpu_pulsed_device.cpp, populate and
    resetCols): each element's step gain exp(d2d xi) or 1 + d2d xi, the consistency
    of its bounds and steps, corrupt devices, and the reset value each element gets."""

    d2d_variation: float = Field(
        0.0,
        ge=0,
        le=MAX_LOG_NORMAL_D2D,
        description="Device-to-device spread of each element's step (aihwkit's dw_min_dtod): "
        "gain 1 + d2d xi, or exp(d2d xi) with d2d_log_normal; also the bounds' spread "
        "unless d2d_w_min/d2d_w_max say otherwise. Above 0.5 only log-normal.",
    )
    d2d_w_min: float | None = _bound_d2d(
        "Relative spread of each element's lower bound, w_min (1 + d2d xi) (aihwkit's "
        "w_min_dtod; default: d2d_variation)."
    )
    d2d_w_max: float | None = _bound_d2d(
        "Relative spread of each element's upper bound, w_max (1 + d2d xi) (aihwkit's "
        "w_max_dtod; default: d2d_variation)."
    )
    d2d_log_normal: bool = Field(
        False, description="Step gain exp(d2d_variation xi) (aihwkit's dw_min_dtod_log_normal)."
    )
    enforce_consistency: bool = Field(
        True,
        description="Reflect drawn steps to positive and bounds to w_min <= 0 <= w_max, "
        "swapping crossed bounds first (aihwkit's enforce_consistency); off: a crossed "
        "element's bounds both become their midpoint (the element is stuck).",
    )
    corrupt_devices_prob: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of corrupt elements, drawn once: both bounds set to one uniform "
        "value inside its range and +-corrupt_devices_range, steps 0 (aihwkit's name).",
    )
    corrupt_devices_range: float = Field(
        0.1, ge=0, description="Range around 0 a corrupt element's value is drawn in."
    )
    reset: float = Field(
        0.0,
        description="Value an element is reset to (aihwkit's reset; with the reference "
        "family's subtract_symmetry_point, plus the symmetry point); a one-sided unit "
        "cell's refresh resets to it (analog.unit_cell).",
    )
    d2d_reset: float = Field(
        0.0, ge=0, description="Absolute spread of each element's reset value (reset_dtod)."
    )
    reset_std: float = Field(
        0.01, ge=0, description="Cycle-to-cycle spread of each reset (aihwkit's reset_std)."
    )

    def _check_response(self, step_field: str) -> None:
        """A normal step spread past MAX_D2D flips many elements' steps (only log-normal
        draws may go that far); then the family's own checks."""
        if self.d2d_variation > MAX_D2D and not self.d2d_log_normal:
            raise _fail(
                "d2d_variation",
                f"{self.d2d_variation:g} above {MAX_D2D} flips the sign of more than 2% of "
                "the steps; set d2d_log_normal: true for a wider spread",
            )
        for name in ("d2d_w_min", "d2d_w_max"):  # defaulted from d2d_variation
            if (getattr(self, name) or 0.0) > MAX_BOUND_D2D:
                raise _fail(name, f"a bound's spread is at most {MAX_BOUND_D2D}; give {name}")
        self._check_family(step_field)

    def _check_family(self, step_field: str) -> None:
        """The family's own checks (none by default)."""
