"""The analog part of the job spec: the device (its response family, bounds, steps,
noise and device-to-device spread, or a published preset), the IO model of the MVMs
and how updates reach the device (analog-model.md)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from aimc_spec.presets import PRESET_FIELDS, PRESETS
from aimc_spec.spec_base import _fail, _same, _Strict

DeviceModel = Literal["ideal", "constant_step", "linear", "softbounds", "power", "exp", "exp_step"]
PresetName = Literal[
    "reram_es", "reram_sb", "capacitor", "ecram", "ecram_mo", "idealized", "gokmen_vlasov"
]


class ExpStepSpec(_Strict):
    """Parameters of aihwkit's ExpStep response; defaults are the class's, not reram_es's."""

    A_up: float = Field(
        0.00081, description="q_+ = max(1 - A_up exp(gamma_up z), 0); negative: q_+ > 1."
    )
    A_down: float = Field(
        0.36833, description="q_- = max(1 - A_down exp(-gamma_down z), 0); negative: q_- > 1."
    )
    gamma_up: float = Field(12.44625, ge=0, description="Growth of the up saturation.")
    gamma_down: float = Field(12.78785, ge=0, description="Growth of the down saturation.")
    a: float = Field(0.244, description="z = 2a w / (w_max - w_min) + b.")
    b: float = Field(0.2425, description="Offset of z.")


# A relative d2d spread above this flips the sign of more than 2% of the elements' steps or
# bounds (aihwkit then reflects them with abs): no longer a spread around the nominal device.
MAX_D2D = 0.5


def _d2d(description: str, default: float | None = 0.0) -> Any:
    return Field(default, ge=0, le=MAX_D2D, description=description)


class DeviceSpec(_Strict):
    model: DeviceModel = Field("softbounds", description="Response-function family.")
    preset: PresetName | None = Field(None, description="A published device; sets the fields.")
    w_min: float = Field(-1.0, lt=0, description="Lower weight bound (negative).")
    w_max: float = Field(1.0, gt=0, description="Upper weight bound (positive).")
    states: float = Field(
        1200, gt=0, le=1e9, description="(w_max - w_min) / dw_min: pulses from bound to bound."
    )
    dw_min: float | None = Field(
        None, gt=0, description="Step of one pulse; alternative to `states`, derived if unset."
    )
    gamma: float = Field(
        0.5, ge=0, description="linear: slope (of the up response); power/exp: exponent."
    )
    gamma_down: float | None = Field(
        None, ge=0, description="linear: slope of the down response (default: gamma)."
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
    d2d_gamma: float = Field(
        0.0,
        ge=0,
        le=1,
        description="linear: absolute spread of each element's slopes, |gamma + d2d_gamma*xi| "
        "(aihwkit's gamma_up_dtod/gamma_down_dtod).",
    )
    write_noise_std: float = Field(
        0.0,
        ge=0,
        le=1e4,
        description="Write noise in units of dw_min (aihwkit's write_noise_std): updates act on a "
        "hidden weight; the MVMs read it plus N(0, (write_noise_std*dw_min)^2), drawn anew for an "
        "element whenever it is updated.",
    )
    exp_step: ExpStepSpec = Field(default_factory=ExpStepSpec)  # type: ignore[arg-type]

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        preset = PRESETS.get(data["preset"]) if isinstance(data["preset"], str) else None
        if preset is None:
            return data  # the Literal check reports the bad name or type
        data = dict(data)
        values = {"gamma_down": None, "d2d_gamma": 0.0, **preset}
        for key in sorted(PRESET_FIELDS & data.keys()):
            if key not in values and key != "states":
                continue  # e.g. gamma next to a softbounds preset: not the preset's to set
            given = data[key]
            expect = values.get(key)
            if key == "states":
                expect = (values["w_max"] - values["w_min"]) / values["dw_min"]
            if not _same(given, expect):
                raise _fail(
                    key,
                    f"set by preset {data['preset']!r} to {expect!r}; drop the preset or the field",
                )
        data.update(values)
        data.pop("states", None)
        return data

    @model_validator(mode="after")
    def _derive(self) -> DeviceSpec:
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

    def slopes(self) -> tuple[float, float]:
        """Nominal (gamma_up, gamma_down) of q = 1 - gamma w / bound: the linear family's
        slopes (0 for ideal and constant_step, 1 for softbounds)."""
        if self.model in ("ideal", "constant_step"):
            return 0.0, 0.0
        if self.model == "softbounds":
            return 1.0, 1.0
        return self.gamma, self.gamma if self.gamma_down is None else self.gamma_down

    def _check_response(self, step_field: str) -> None:
        """Refuse responses no device has: a step past its own fixed point, or no motion."""
        if self.model in ("linear", "softbounds"):
            g_up, g_down = self.slopes()
            for g, bound, side in ((g_up, self.w_max, "w_max"), (g_down, -self.w_min, "w_min")):
                if g * self.dw_min >= bound:  # type: ignore[operator]
                    raise _fail(
                        step_field,
                        f"one pulse (dw_min {self.dw_min:g} x slope {g:g}) reaches past {side} "
                        f"= {bound:g}: the response would change sign; use more states or a "
                        "smaller slope",
                    )
        if self.model == "exp_step":
            p, span = self.exp_step, self.w_max - self.w_min
            grid = [self.w_min + span * k / 40 for k in range(41)]
            z = [2 * p.a * w / span + p.b for w in grid]
            if all(1 - p.A_up * math.exp(min(p.gamma_up * v, 700)) <= 0 for v in z):
                raise _fail("exp_step.A_up", "q_+ is 0 over the whole range: no up pulse moves")
            if all(1 - p.A_down * math.exp(min(-p.gamma_down * v, 700)) <= 0 for v in z):
                raise _fail("exp_step.A_down", "q_- is 0 over the whole range: no down pulse moves")


class IOSpec(_Strict):
    perfect: bool = Field(True, description="true: exact MVMs (no DAC/ADC, noise or bounds).")
    dac_bits: int = Field(7, ge=2, le=24, description="Input DAC resolution.")
    adc_bits: int = Field(9, ge=2, le=24, description="Output ADC resolution.")
    out_noise: float = Field(0.06, ge=0, description="Std of Gaussian output noise per MVM.")
    in_bound: float = Field(1.0, gt=0, description="Inputs are clipped to +-in_bound.")
    out_bound: float = Field(12.0, gt=0, description="Outputs are clipped to +-out_bound.")
    noise_management: bool = Field(True, description="Scale inputs by max|x| before the DAC.")
    bound_management: bool = Field(True, description="Halve inputs and redo when outputs clip.")


class AnalogSpec(_Strict):
    enabled: bool = Field(True, description="false: floating-point weights everywhere.")
    layers: Literal["all", "last"] | list[int] = Field(
        "all", description="Which weight layers are analog: all, last, or indices."
    )
    device: DeviceSpec = Field(default_factory=DeviceSpec)  # type: ignore[arg-type]
    update: Literal["expected", "pulsed", "rounded"] = Field(
        "expected",
        description="expected: the F/G rule; pulsed: stochastic pulse trains; "
        "rounded: stochastic rounding to whole pulses.",
    )
    bit_length: int = Field(31, ge=1, le=255, description="Pulse-train length BL (pulsed).")
    update_management: bool = Field(
        True, description="pulsed: balance the two sides' probabilities and cap BL as aihwkit does."
    )
    io: IOSpec = Field(default_factory=IOSpec)  # type: ignore[arg-type]
