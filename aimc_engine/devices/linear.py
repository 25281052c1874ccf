"""The linear family (ideal, constant_step, linear, softbounds): q_+ = 1 - g_up w / w_max,
q_- = 1 - g_down w / w_min. One pulse is an affine map of w, so n pulses have a closed
form and the expected update a five-pass rule; the fused kernels (fused.py) run both
for uniform tiles.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from aimc_engine import fused

if TYPE_CHECKING:
    from aimc_engine.devices.device import Device

Param = Tensor | float  # a float when every element of the tile shares the value


def response(
    g_up: Param, g_down: Param, ref_hi: Param, ref_lo: Param, w: Tensor
) -> tuple[Tensor, Tensor]:
    """q_+ = 1 - g_up w / ref_hi, q_- = 1 - g_down w / ref_lo."""
    return 1 - g_up * w / ref_hi, 1 - g_down * w / ref_lo  # type: ignore[return-value]


def affine_map(g: Param, ref: Param, dw: Param) -> tuple[Param, Param]:
    """(log a, w*) of one pulse w -> w + dw (1 - g w / ref) = a w + (1 - a) w* on a linear
    device: a = 1 - x with x = dw g / ref > 0 (dw and ref share their sign), w* = ref / g.

    x < 1 for every valid spec; the clamp keeps extreme d2d draws finite (one pulse then
    lands on the fixed point) and keeps g -> 0 (w* -> inf) from dividing by zero.
    """
    if isinstance(g, Tensor) or isinstance(ref, Tensor) or isinstance(dw, Tensor):
        x = (dw * g / ref).clamp(1e-12, 1 - 1e-7)  # type: ignore[union-attr, operator]
        return torch.log1p(-x), dw / x  # w* = ref/g = dw/x
    x = min(max(dw * g / ref, 1e-12), 1 - 1e-7)
    return math.log1p(-x), dw / x


def expected_(dev: Device, w: Tensor, delta: Tensor) -> None:
    """The F/G rule for a uniform linear-family tile in five passes over memory.

    With dW_+- = (dW +- |dW|)/2, a = g_up/w_max, b = g_down/w_min and step
    scales s_up, s_down, the change s_up dW_+ (1 - a w) + s_down dW_- (1 - b w)
    is k1 dW + k2 |dW| - w (c1 dW + c2 |dW|), constants below.
    """
    lo, hi, s_up, s_down = dev._scalars
    g_up, g_down = dev.spec.slopes()
    a, b = g_up / hi, g_down / lo
    k1, k2 = (s_up + s_down) / 2, (s_up - s_down) / 2
    c1, c2 = (a * s_up + b * s_down) / 2, (a * s_up - b * s_down) / 2
    size = delta.abs()
    if c1 or c2:
        slope = size * c2
        if c1:
            slope.add_(delta, alpha=c1)
        w.addcmul_(w, slope, value=-1)
    w.add_(delta, alpha=k1)
    if k2:
        w.add_(size, alpha=k2)


def _noise(dev: Device, change: Tensor, n: Tensor, dw: Param, generator: torch.Generator) -> Tensor:
    """Summed cycle-to-cycle noise of n pulses of step dw whose mean effect is `change`."""
    sigma = dev.spec.c2c_noise
    if sigma == 0:
        return change
    xi = torch.randn(change.shape, generator=generator, device=change.device)
    if dev.spec.c2c_mode == "additive":
        return change.add_(sigma * dw * n.sqrt() * xi)
    return change.mul_(1 + sigma * xi / n.clamp_min(1).sqrt())


def pulses_(
    dev: Device, w: Tensor, n_up: Tensor, n_down: Tensor, generator: torch.Generator
) -> None:
    """n pulses on q = 1 - g*w/bound: an affine map w -> a w + dw iterated n times.

    Its fixed point is w* = bound/g and a = 1 - dw*g/bound, so the change is
    (a^n - 1)(w - w*) = expm1(n log a)(w - w*); for soft bounds w_n = w_max -
    (w_max - w)(1 - dw/w_max)^n. Clipping once at the end is exact because the
    iterates move monotonically towards the fixed point.
    """
    if dev._fused is not None:  # one pass over the tile (fused.py)
        xi_up = xi_down = None
        if dev.spec.c2c_noise:
            xi_up = torch.randn(w.shape, generator=generator, device=w.device)
            xi_down = torch.randn(w.shape, generator=generator, device=w.device)
        fused.pulses_linear(w, n_up, n_down, xi_up, xi_down, dev._fused)
        return
    _, _, s_up, s_down = dev.params()
    g_up, g_down, ref_hi, ref_lo = dev._linear_params()
    directions: tuple[tuple[Tensor, Param, Param, Param], ...] = (
        (n_up, g_up, ref_hi, dev.dw_min * s_up),
        (n_down, g_down, ref_lo, -dev.dw_min * s_down),
    )
    shrink: list[Param] = []  # log a of each direction
    for n, g, ref, dw in directions:
        if isinstance(g, float) and g == 0:
            change = n * dw
            shrink.append(0.0)
        else:
            log_a, fixed = affine_map(g, ref, dw)
            change = torch.expm1(n * log_a).mul_(w - fixed)
            shrink.append(log_a)
        w.add_(_noise(dev, change, n, dw, generator))  # noise is symmetric: sign of dw moot
        dev.clip_(w)
    # Up pulses first is one of the C(n+m, n) orders: each (up, down) pair in that order
    # ends lower by dw_u dw_d (g_u/|ref_hi| + g_d/|ref_lo|) than the swapped pair (the
    # two affine maps do not commute), damped by the a's of the pulses after it (on
    # average a_u^(n/2) a_d^(m/2)); a random order swaps half of the n*m pairs on
    # average. Adding that back gives a random order's mean (tested within 0.1 dw_min
    # up to 100 + 100 pulses).
    order = dev.dw_min**2 * s_up * s_down * (g_up / ref_hi - g_down / ref_lo) / 2
    if isinstance(order, Tensor) or order:
        half_up, half_down = (v / 2 for v in shrink)
        term = n_up * half_up  # log of the damping, then the term itself
        term = (
            term.add_(n_down, alpha=half_down)
            if isinstance(half_down, float)
            else (term.addcmul_(n_down, half_down))
        )
        term.exp_().mul_(n_up).mul_(n_down)
        if isinstance(order, Tensor):
            w.addcmul_(term, order)
        else:
            w.add_(term, alpha=order)
        dev.clip_(w)
