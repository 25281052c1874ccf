"""Device-to-device variation drawn as aihwkit 1.2 draws it, for the families with every
field of their aihwkit class (exp_step_noise, softbounds_reference): PulsedDevice's
populate (rpu_pulsed_device.cpp) with its log-normal gain, enforce_consistency (crossed
bounds swapped, then reflected), corrupt devices and reset values, and
SoftBoundsReference's (rpu_softbounds_reference_device.cpp): slope spreads and the
reference r with the symmetry point. The older families keep device.py's draw, so
their numbers stay as they were.

Each parameter is drawn for the whole tile at once, in the order of the fields below,
and only when its spread is non-zero (aihwkit draws element by element, so the draws
are alike in distribution, not in value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from aimc_spec.devices import ExpStepNoiseDeviceSpec, SoftBoundsReferenceDeviceSpec

FullSpec = ExpStepNoiseDeviceSpec | SoftBoundsReferenceDeviceSpec


@dataclass
class Drawn:
    """One tile's per-element parameters. lo, hi: the bounds the device state g is
    clipped to (b_min, b_max); up, down: step scales in units of dw_min; reference: r
    (the weight is g - r; 0 but for softbounds_reference); reset: the value a reset
    sets the weight to, before its cycle-to-cycle spread."""

    lo: Tensor
    hi: Tensor
    up: Tensor
    down: Tensor
    reference: Tensor
    reset: Tensor


def draw(spec: FullSpec, shape: tuple[int, ...], generator: torch.Generator) -> Drawn:
    """PulsedDevice's populate, then SoftBoundsReference's when the spec is one."""
    drawn = _pulsed(spec, shape, generator)
    if isinstance(spec, SoftBoundsReferenceDeviceSpec):
        _reference(spec, drawn, generator)
    return drawn


def _normal(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).cpu()


def _uniform(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).cpu()


def _spread(
    value: float, spread: float, shape: tuple[int, ...], generator: torch.Generator
) -> Tensor:
    """value (1 + spread xi), drawn only when spread is non-zero."""
    if not spread:
        return torch.full(shape, value)
    return value * (1 + spread * _normal(shape, generator))


def _pulsed(spec: FullSpec, shape: tuple[int, ...], generator: torch.Generator) -> Drawn:
    """Bounds w (1 + d2d xi), gain 1 + d2d xi or exp(d2d xi), asymmetry +-r, then
    consistency, corrupt devices and the reset value (aihwkit's order within an element)."""
    hi = _spread(spec.w_max, spec.d2d_w_max or 0.0, shape, generator)
    lo = _spread(spec.w_min, spec.d2d_w_min or 0.0, shape, generator)
    gain = torch.ones(shape)
    if spec.d2d_variation:
        xi = spec.d2d_variation * _normal(shape, generator)
        gain = xi.exp() if spec.d2d_log_normal else 1 + xi
    r = spec.d2d_up_down * _normal(shape, generator) if spec.d2d_up_down else torch.zeros(shape)
    up = gain + min(spec.up_down, 0.0) + r  # up_down < 0 shrinks the up step
    down = gain - max(spec.up_down, 0.0) - r  # up_down > 0 shrinks the down step
    crossed = lo > hi
    if spec.enforce_consistency:
        up, down = up.abs(), down.abs()
        lo, hi = torch.where(crossed, hi, lo), torch.where(crossed, lo, hi)
        lo, hi = -lo.abs(), hi.abs()
    else:  # a crossed element is stuck at its bounds' midpoint
        mid = hi + (lo - hi) / 2
        lo, hi = torch.where(crossed, mid, lo), torch.where(crossed, mid, hi)
    if spec.corrupt_devices_prob:
        corrupt = _uniform(shape, generator) < spec.corrupt_devices_prob
        span = abs(spec.corrupt_devices_range)
        low = torch.minimum(lo, hi).clamp_min(-span)
        high = torch.maximum(lo, hi).clamp_max(span)
        value = low + (high - low) * _uniform(shape, generator)
        lo, hi = torch.where(corrupt, value, lo), torch.where(corrupt, value, hi)
        up, down = torch.where(corrupt, 0.0, up), torch.where(corrupt, 0.0, down)
    reset = torch.full(shape, spec.reset)
    if spec.d2d_reset:  # additive, in weight units
        reset = reset + spec.d2d_reset * _normal(shape, generator)
    return Drawn(lo, hi, up, down, torch.zeros(shape), reset)


def _reference(
    spec: SoftBoundsReferenceDeviceSpec, drawn: Drawn, generator: torch.Generator
) -> None:
    """The slopes' spreads (bounds b / |1 + d2d xi| where b_min < 0 < b_max), the
    reference r = reference_mean + reference_std xi, and with subtract_symmetry_point
    each element's symmetry point added to r and to its reset value."""
    shape = tuple(drawn.lo.shape)
    inside = (drawn.hi > 0) & (drawn.lo < 0)
    for name, spread in (("lo", spec.d2d_slope_down), ("hi", spec.d2d_slope_up)):
        if spread:
            factor = (1 + spread * _normal(shape, generator)).abs()
            bound = getattr(drawn, name)
            setattr(drawn, name, torch.where(inside, bound / factor, bound))
    drawn.reference = torch.full(shape, spec.reference_mean)
    if spec.reference_std:
        drawn.reference = drawn.reference + spec.reference_std * _normal(shape, generator)
    if spec.subtract_symmetry_point:
        up, down, lo, hi = drawn.up, drawn.down, drawn.lo, drawn.hi
        slope_gap = up / hi - down / lo  # > 0 where inside and the steps are not both 0
        point = (up - down) / torch.where(inside & (slope_gap != 0), slope_gap, 1.0)
        point = torch.where(inside, point, 0.0)
        drawn.reference = drawn.reference + point
        drawn.reset = drawn.reset + point
