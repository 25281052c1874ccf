"""aihwkit's SoftBoundsReferenceDevice with every field (the reram_array presets): soft
bounds on a device whose weight is read against a reference, w = g - r. The device
moves g by dw_min (1 - g / b_max) up and dw_min (1 - g / b_min) down (rpu_softbounds_
reference_device.cpp, update_once_add and update_once_mult) and clips g to its bounds,
so the weight lives in [b_min - r, b_max - r]; r is reference_mean + reference_std xi,
plus each element's symmetry point with subtract_symmetry_point, so w = 0 sits where
up and down steps balance."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.devices.pulsed import PulsedOptions


class SoftBoundsReferenceDeviceSpec(PulsedOptions):
    """Soft bounds read against a per-element reference; the slopes' own spreads scale
    each element's bounds (populate in aihwkit's source)."""

    model: Literal["softbounds_reference"] = Field(
        description="softbounds_reference: soft bounds read as g - r (aihwkit's "
        "SoftBoundsReferenceDevice, every field)."
    )
    d2d_slope_up: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Relative spread of each element's up slope (aihwkit's slope_up_dtod): "
        "its upper bound becomes b_max / |1 + d2d xi| (only where b_min < 0 < b_max).",
    )
    d2d_slope_down: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Relative spread of each element's down slope (slope_down_dtod): "
        "b_min / |1 + d2d xi|.",
    )
    reference_mean: float = Field(0.0, description="Added to every element's reference r.")
    reference_std: float = Field(
        0.0, ge=0, le=10, description="Absolute spread of each element's reference r."
    )
    subtract_symmetry_point: bool = Field(
        False,
        description="Add each element's symmetry point (s_up - s_down) / (s_up / b_max - "
        "s_down / b_min) to its reference and reset value: w = 0 where steps balance.",
    )
