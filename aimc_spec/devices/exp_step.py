"""aihwkit's ExpStep family: z = 2a w / (w_max - w_min) + b, q_+ = max(1 - A_up
e^{gamma_up z}, 0), q_- = max(1 - A_down e^{-gamma_down z}, 0) (the reram_es preset)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from aimc_spec.devices.base import DeviceSpecBase
from aimc_spec.devices.pulsed import PulsedOptions
from aimc_spec.spec_base import _fail, _Strict


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


class ExpStepDeviceSpec(DeviceSpecBase):
    """aihwkit's ExpStepDevice; its noise is multiplicative there (c2c_mode)."""

    model: Literal["exp_step"] = Field(description="exp_step: aihwkit's ExpStep response.")
    exp_step: ExpStepSpec = Field(default_factory=ExpStepSpec)  # type: ignore[arg-type]

    def _check_response(self, step_field: str) -> None:
        """Refuse a response that is 0 over the whole range in one direction."""
        p, span = self.exp_step, self.w_max - self.w_min
        grid = [self.w_min + span * k / 40 for k in range(41)]
        z = [2 * p.a * w / span + p.b for w in grid]
        if all(1 - p.A_up * math.exp(min(p.gamma_up * v, 700)) <= 0 for v in z):
            raise _fail("exp_step.A_up", "q_+ is 0 over the whole range: no up pulse moves")
        if all(1 - p.A_down * math.exp(min(-p.gamma_down * v, 700)) <= 0 for v in z):
            raise _fail("exp_step.A_down", "q_- is 0 over the whole range: no down pulse moves")


class ExpStepNoiseDeviceSpec(PulsedOptions, ExpStepDeviceSpec):
    """aihwkit's ExpStepDevice with every field (the pcm preset): ExpStep's response, its
    complex cycle-to-cycle noise and the rest of PulsedDevice (pulsed.py). w_min may be 0:
    a one-sided device such as PCM only ever grows its conductance."""

    model: Literal["exp_step_noise"] = Field(  # type: ignore[assignment]
        description="exp_step_noise: aihwkit's ExpStep with its complex noise and every field."
    )
    w_min: float = Field(-1.0, le=0, description="Lower weight bound (0 or negative).")
    c2c_add: float = Field(
        0.0,
        ge=0,
        description="Complex noise (aihwkit's dw_min_std_add): a pulse's std is c2c_noise * "
        "(|dw| + c2c_add + c2c_slope |w|), dw its step, all in weight units.",
    )
    c2c_slope: float = Field(
        0.0, ge=0, description="Complex noise growing with |w| (aihwkit's dw_min_std_slope)."
    )

    def _check_family(self, step_field: str) -> None:
        """ExpStep's checks; complex noise terms only scale c2c_noise (0: no noise)."""
        ExpStepDeviceSpec._check_response(self, step_field)
        if (self.c2c_add or self.c2c_slope) and not self.c2c_noise:
            name = "c2c_add" if self.c2c_add else "c2c_slope"
            raise _fail(name, "scales c2c_noise, which is 0: set c2c_noise or drop it")

    def complex_noise(self) -> tuple[float, float] | None:
        """(c2c_add, c2c_slope) when the complex noise is on (aihwkit's hasComplexNoise:
        dw_min_std > 0 and either term non-zero), else None: ExpStep's plain noise."""
        if self.c2c_noise > 0 and (self.c2c_add or self.c2c_slope):
            return self.c2c_add, self.c2c_slope
        return None
