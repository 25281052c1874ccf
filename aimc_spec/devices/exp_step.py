"""aihwkit's ExpStep family: z = 2a w / (w_max - w_min) + b, q_+ = max(1 - A_up
e^{gamma_up z}, 0), q_- = max(1 - A_down e^{-gamma_down z}, 0) (the reram_es preset)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from aimc_spec.devices.base import DeviceSpecBase
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
