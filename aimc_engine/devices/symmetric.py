"""Where a device's weights balance: the symmetric point (q_+ = q_-) and the point
alternating up/down pulses settle at (how a reference array is programmed).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from aimc_engine.devices.device import Device


def alternating_pulse_point(dev: Device, *, iterations: int = 50) -> Tensor:
    """Where each element settles under noise-free alternating up/down pulses.

    That is how a reference array is programmed to a device's symmetric point
    (aihwkit estimates it so for PowStepReference, with up to 10^4 noise-free
    pairs). One pair moves an element by f(w) = down(up(w)) - w, about
    -2 dw_min G(w): the pairs converge to the stable zero of f, within a step of
    the point where q_+ = q_-. Instead of iterating ~10^4 pairs (seconds per
    tile), that zero is found by bisection on f, with the same clipped pulses;
    an element with no zero walks to a bound and stays there (checked against
    the iteration in tests/engine/test_devices.py). Devices with constant steps (no
    slopes) have no symmetric point: 0, where a fresh array starts.
    """
    lo, hi, s_up, s_down = (torch.as_tensor(v, dtype=torch.float32) for v in dev.params())
    lo, hi = lo.expand(dev.w_min.shape).clone(), hi.expand(dev.w_max.shape).clone()
    if not dev.family.clips or (dev.family.closed_form and not any(dev.spec.slopes())):
        return torch.zeros_like(lo)

    def pair(w: Tensor) -> Tensor:  # f(w): one up then one down pulse, unclipped
        up = w + dev.dw_min * s_up * dev.raw(w)[0]
        return up - dev.dw_min * s_down * dev.raw(up)[1] - w

    bottom, top = lo.clone(), hi.clone()
    walks_down, walks_up = pair(bottom) < 0, pair(top) > 0
    for _ in range(iterations):
        mid = (bottom + top) / 2
        rising = pair(mid) > 0
        bottom = torch.where(rising, mid, bottom)
        top = torch.where(rising, top, mid)
    point = (bottom + top) / 2
    return torch.where(walks_down, lo, torch.where(walks_up, hi, point))


def symmetric_point(dev: Device, *, iterations: int = 60) -> Tensor:
    """Each element's w where G(w) = 0 (q_+ = q_-), by bisection on [w_min, w_max].

    G grows with w for every family here, so bisection is safe. Elements with
    no sign change (e.g. constant steps with up_down != 0) get NaN; where G
    vanishes everywhere (ideal, constant_step) the answer is 0.
    """
    lo, hi = dev.w_min.clone(), dev.w_max.clone()

    def g(w: Tensor) -> Tensor:
        q_up, q_down = dev.response(w)
        return q_down - q_up

    g_lo, g_hi = g(lo), g(hi)
    flat = (g_lo == 0) & (g_hi == 0)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        negative = g(mid) < 0
        lo = torch.where(negative, mid, lo)
        hi = torch.where(negative, hi, mid)
    point = (lo + hi) / 2
    point = torch.where((g_lo > 0) | (g_hi < 0), torch.full_like(point, math.nan), point)
    return torch.where(flat, torch.zeros_like(point), point)
