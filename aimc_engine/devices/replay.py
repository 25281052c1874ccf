"""Pulses one at a time, in a random order: the update of devices without a closed form,
and of linear-family elements whose pulses of both signs may reach a bound (where
clipping makes their order matter).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from aimc_engine.devices import exp_step

if TYPE_CHECKING:
    from aimc_engine.devices.device import Device

# Pulses applied one at a time (devices without a closed form, and elements near a
# bound with pulses of both signs) take at most this many steps per update: exact up
# to this many pulses per element, several of one sign per step beyond.
MAX_INTERLEAVED_STEPS = 64


def _take(v: Tensor | float, idx: Tensor | None) -> Tensor | float:
    """The value at flat element indices idx (all of it when idx is None or v is shared)."""
    return v if idx is None or not isinstance(v, Tensor) else v.reshape(-1)[idx]


def replay_(
    dev: Device,
    w: Tensor,
    start: Tensor,
    n_up: Tensor,
    n_down: Tensor,
    idx: Tensor,
    generator: torch.Generator,
) -> None:
    """Set the flat elements idx of w to their pulses applied one at a time in random
    order from `start`."""
    flat_up, flat_down = n_up.reshape(-1)[idx], n_down.reshape(-1)[idx]
    w.reshape(-1)[idx] = interleaved(dev, start, flat_up, flat_down, idx, generator)


def order_matters(dev: Device, w: Tensor, n_up: Tensor, n_down: Tensor) -> Tensor | None:
    """Flat indices of elements with pulses of both signs that could reach a bound.

    An element's n pulses of one sign travel at most n*step, plus 4 sigma of the noise
    of all its pulses, sqrt(n_up + n_down)*noise. First a test on the counts' maxima
    and the weights' range: if no element could travel from the weight nearest a
    bound to that bound, nothing is near (the usual case); else the test per element.
    """
    if not dev.clips:
        return None
    lo, hi, _, _ = dev.params()
    if dev._step_bound is None:
        dev._step_bound = _max_step(dev)
    step, noise = dev._step_bound

    # noise of either sign's pulses can push an element either way
    top_up, top_down = float(n_up.max()), float(n_down.max())
    most = max(top_up, top_down) * step + math.sqrt(top_up + top_down) * noise
    if dev.uniform:
        w_lo, w_hi = (float(v) for v in torch.aminmax(w))  # one pass for both
        if w_hi + most < hi and w_lo - most > lo:
            return None
    spread = (n_up + n_down).sqrt_().mul_(noise) if noise else 0.0
    near = (w + n_up * step + spread >= hi) | (w - n_down * step - spread <= lo)
    near &= (n_up > 0) & (n_down > 0)
    risky = torch.nonzero(near.reshape(-1)).squeeze(1)
    return risky if len(risky) else None


def _max_step(dev: Device) -> tuple[float, float]:
    """(the most one pulse moves any element on average, 4 sigma of its noise):
    dw_min x step scale x response (responses are monotone: maxima at the bounds)."""
    lo, hi, s_up, s_down = dev.params()
    ends = [torch.as_tensor(v, dtype=torch.float32) for v in (lo, hi)]
    q_max = max(float(q.abs().max()) for end in ends for q in dev.raw(end))
    s_max = max(float(torch.as_tensor(s).max()) for s in (s_up, s_down))
    sigma = 4 * dev.spec.c2c_noise
    noise = sigma if dev.spec.c2c_mode == "additive" else sigma * q_max
    return dev.dw_min * s_max * q_max, dev.dw_min * s_max * noise


def interleaved(
    dev: Device,
    w: Tensor,
    n_up: Tensor,
    n_down: Tensor,
    idx: Tensor | None,
    generator: torch.Generator,
) -> Tensor:
    """Pulses one at a time in a uniformly random order, elementwise.

    idx: the flat indices of the elements w holds (None: w is the whole tile). Each
    step draws the next pulse's sign with probability (up pulses left) / (pulses
    left), so every interleaving is equally likely, and re-reads the response.
    Elements with more than MAX_INTERLEAVED_STEPS pulses take several of one sign
    per step (the response then read once for them).
    """
    lo, hi, s_up, s_down = (_take(v, idx) for v in dev.params())
    most = int((n_up + n_down).max().item()) if w.numel() else 0
    per_step = max(1, math.ceil(most / MAX_INTERLEAVED_STEPS))
    # a step of one sign with fewer than per_step pulses left spends them all, so an
    # element needs ceil(n_up/p) + ceil(n_down/p) steps (at most MAX + 1)
    steps = int(
        (torch.ceil(n_up / per_step) + torch.ceil(n_down / per_step)).max().item()
        if w.numel()
        else 0
    )
    left_up, left_down = n_up.clone(), n_down.clone()
    sigma, additive = dev.spec.c2c_noise, dev.spec.c2c_mode == "additive"
    for _ in range(steps):
        left = left_up + left_down
        u = torch.rand(w.shape, generator=generator, device=w.device)
        go_up = u * left < left_up  # P(up) = left_up / left; never with no up left
        count = left.clamp(max=per_step)
        count_up = torch.where(go_up, count.minimum(left_up), 0.0)
        count_down = torch.where(go_up, 0.0, count.minimum(left_down))
        left_up -= count_up
        left_down -= count_down
        q_up, q_down = dev.raw(w, idx)
        step = count_up * s_up * q_up - count_down * s_down * q_down
        if sigma:  # the summed noise of the step's pulses, one sign per element
            scale = torch.where(go_up, s_up, s_down)
            if dev.complex_noise is not None:  # ExpStep's complex noise (exp_step.py)
                q_step = scale * torch.where(go_up, q_up, q_down)
                scale = exp_step.complex_noise_scale(dev.complex_noise, dev.dw_min, w, q_step)
            elif not additive:
                scale = scale * torch.where(go_up, q_up, q_down)
            xi = torch.randn(w.shape, generator=generator, device=w.device)
            step += (count_up + count_down).sqrt_().mul_(xi).mul_(scale).mul_(sigma)
        w = w + dev.dw_min * step
        if dev.clips:
            w = torch.clamp(w, lo, hi)  # type: ignore[arg-type]  # float or per element
    return w
