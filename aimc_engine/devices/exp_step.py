"""aihwkit's ExpStep family: z = 2a w / (w_max - w_min) + b from each element's own
bounds, q_+ = max(1 - A_up exp(gamma_up z), 0), q_- = max(1 - A_down exp(-gamma_down z), 0)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aimc_spec.devices import ExpStepDeviceSpec


def response(
    spec: ExpStepDeviceSpec, w: Tensor, w_min: Tensor | float, w_max: Tensor | float
) -> tuple[Tensor, Tensor]:
    p = spec.exp_step
    z = 2 * p.a * w / (w_max - w_min) + p.b
    up = (1 - p.A_up * torch.exp(p.gamma_up * z)).clamp_min(0)
    down = (1 - p.A_down * torch.exp(-p.gamma_down * z)).clamp_min(0)
    return up, down


def granularity(spec: ExpStepDeviceSpec, dw_min: float, step_down: float) -> float:
    """The step pulse-train update management sizes BL and probabilities by (aihwkit's
    weight_granularity): ExpStep's step at w = 0 without d2d, which aihwkit's source
    computes as (dw_down + dw_down)/2, i.e. the down step (1.99e-3 for reram_es against
    its dw_min 1.35e-3): kept, for the same pulses."""
    p = spec.exp_step
    q_down = max(1 - p.A_down * math.exp(-p.gamma_down * p.b), 0.0)
    return dw_min * step_down * q_down
