"""What every device family shares: bounds, the step (states or dw_min), asymmetry,
cycle-to-cycle and write noise, and the device-to-device spreads (analog-model.md
sections 1, 2 and 7). Each family's module adds its own response parameters."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from aimc_spec.spec_base import _fail, _same, _Strict

PresetName = Literal[
    "reram_es",
    "reram_sb",
    "capacitor",
    "ecram",
    "ecram_mo",
    "idealized",
    "gokmen_vlasov",
    "pcm",
    "reram_array_om",
    "reram_array_hfo2",
]

# A relative d2d spread above this flips the sign of more than 2% of the elements' steps or
# bounds (aihwkit then reflects them with abs): no longer a spread around the nominal device.
MAX_D2D = 0.5


def _d2d(description: str, default: float | None = 0.0) -> Any:
    return Field(default, ge=0, le=MAX_D2D, description=description)


class DeviceSpecBase(_Strict):
    """The device: the fields every response family takes (bounds, step, asymmetry,
    noise, device-to-device spreads); each family's class names its `model` and adds
    the parameters of its response."""

    model: str = Field(description="Response-function family.")
    preset: PresetName | None = Field(None, description="A published device; sets the fields.")
    w_min: float = Field(-1.0, lt=0, description="Lower weight bound (negative).")
    w_max: float = Field(1.0, gt=0, description="Upper weight bound (positive).")
    states: float = Field(
        1200, gt=0, le=1e9, description="(w_max - w_min) / dw_min: pulses from bound to bound."
    )
    dw_min: float | None = Field(
        None, gt=0, description="Step of one pulse; alternative to `states`, derived if unset."
    )
    up_down: float = Field(
        0.0, gt=-1, lt=1, description="Asymmetry: >0 shrinks the down step, <0 the up step."
    )
    c2c_noise: float = Field(0.0, ge=0, description="Cycle-to-cycle noise per pulse, in steps.")
    c2c_mode: Literal["additive", "multiplicative"] = Field(
        "additive",
        description="additive: dw_min*(q + s*xi); multiplicative (aihwkit): dw_min*q*(1 + s*xi).",
    )
    d2d_variation: float = _d2d(
        "Device-to-device spread of each element's step: dw_min*|1 + d2d*xi|, drawn once "
        "(aihwkit's dw_min_dtod); also the bounds' spread unless d2d_w_min/d2d_w_max say otherwise."
    )
    d2d_w_min: float | None = _d2d(
        "Relative spread of each element's lower bound, w_min*|1 + d2d*xi| (aihwkit's w_min_dtod; "
        "default: d2d_variation).",
        None,
    )
    d2d_w_max: float | None = _d2d(
        "Relative spread of each element's upper bound (aihwkit's w_max_dtod; default: "
        "d2d_variation).",
        None,
    )
    d2d_up_down: float = _d2d(
        "Spread r ~ N(0, d2d_up_down^2) of each element's asymmetry: the up step gets +r, the down "
        "step -r, in units of dw_min (aihwkit's up_down_dtod)."
    )
    write_noise_std: float = Field(
        0.0,
        ge=0,
        le=1e4,
        description="Write noise in units of dw_min (aihwkit's write_noise_std): updates act on a "
        "hidden weight; the MVMs read it plus N(0, (write_noise_std*dw_min)^2), drawn anew for an "
        "element whenever it is updated.",
    )

    @model_validator(mode="after")
    def _derive(self) -> DeviceSpecBase:
        if self.w_min >= self.w_max:
            raise _fail("w_max", "must be larger than w_min")
        span = self.w_max - self.w_min
        # the field the user gave, for errors (assignments below add to model_fields_set)
        step_field = "dw_min" if self.dw_min is not None else "states"
        if self.dw_min is not None:
            states = span / self.dw_min
            if "states" in self.model_fields_set and not _same(self.states, states):
                raise _fail("states", "give states or dw_min, not two values that disagree")
            self.states = states
        else:
            self.dw_min = span / self.states
        if self.states <= 2:
            raise _fail(
                step_field,
                f"{self.states:g} states from bound to bound (dw_min {self.dw_min:g}); a device "
                "needs more than 2",
            )
        if self.d2d_w_min is None:
            self.d2d_w_min = self.d2d_variation
        if self.d2d_w_max is None:
            self.d2d_w_max = self.d2d_variation
        self._check_response(step_field)
        return self

    def _check_response(self, step_field: str) -> None:
        """Refuse a response no device has (a family with parameters that can say so
        overrides this); `step_field` is the step field the user gave, for the error."""

    def slopes(self) -> tuple[float, float]:
        """Nominal (gamma_up, gamma_down) of the linear response q = 1 - gamma w / bound.
        0 for a family without slopes: constant steps, and the curved families, whose
        response is a function of their own (the engine reads it there)."""
        return 0.0, 0.0

    def slope_spread(self) -> float:
        """Device-to-device spread of the slopes; only a family with slopes has one."""
        return 0.0
