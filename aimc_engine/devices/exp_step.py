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


def stuck_safe(
    spec: ExpStepDeviceSpec, w: Tensor, w_min: Tensor | float, w_max: Tensor | float
) -> tuple[Tensor, Tensor]:
    """The response where an element's bounds are apart, 0 where they meet (a corrupt
    element: aihwkit's update_once does nothing unless b_max - b_min > 0)."""
    span = torch.as_tensor(w_max - w_min, dtype=w.dtype)
    apart = span > 0
    up, down = response(spec, w, w_min, torch.where(apart, w_max, torch.as_tensor(w_min) + 1))
    return torch.where(apart, up, 0.0), torch.where(apart, down, 0.0)


def granularity(spec: ExpStepDeviceSpec, dw_min: float, step_down: float) -> float:
    """The step pulse-train update management sizes BL and probabilities by (aihwkit's
    weight_granularity): ExpStep's step at w = 0 without d2d, which aihwkit's source
    computes as (dw_down + dw_down)/2, i.e. the down step (1.99e-3 for reram_es against
    its dw_min 1.35e-3): kept, for the same pulses."""
    p = spec.exp_step
    q_down = max(1 - p.A_down * math.exp(-p.gamma_down * p.b), 0.0)
    return dw_min * step_down * q_down


def complex_noise_scale(
    noise: tuple[float, float], dw_min: float, w: Tensor, q_step: Tensor
) -> Tensor:
    """The std of one pulse under ExpStep's complex noise, in units of dw_min and of
    c2c_noise: |s q| + (c2c_add + c2c_slope |w|) / dw_min, from aihwkit's c2c_noise
    (|dw| + dw_min_std_add + dw_min_std_slope |w|) with dw = dw_min s q, at the weight
    before the pulse (update_once_complex_noise in rpu_expstep_device.cpp; its CUDA
    kernel skips the noise where q = 0, the CPU code, followed here, does not)."""
    add, slope = noise
    return q_step.abs() + (w.abs() * slope + add) / dw_min
