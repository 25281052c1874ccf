"""The whole pulsed update of a curved-family tile in one call (docs/benchmarks.md).

The families without the linear family's closed form (power, exp, exp_step,
exp_step_noise, softbounds_reference: the reram_es, pcm and reram_array presets) move
each element pulse by pulse, the response read again before every pulse. As torch ops
that is a dozen full-tile operations per pulse step, some forty steps per update: on the
digits MLP a reram_es training step cost 29 digital ones. Here it is one C call
(update_kernels.c: pulsed_curve) that counts the pulses as pulsed_linear does and then
replays the pulsed elements of each block of 64 side by side, step by step (each
element's steps in its own order, so its numbers are those of a loop of its own).

The numbers are counter-based, from the same 6 keys as the linear family's update
(pulsed.py): the pulse trains' two sides, the order of every element's pulses and their
noise (step s of element e: uniform s * numel + e, and a normal of Box-Muller pair
s // 2 * numel + e), and the write noise. `apply` is the same update as torch ops:
the fallback, and what the tests hold the C kernel to. Against the step-by-step path
(Device.apply_pulses_, still used by the rounded mode, unit cells and transfers) the
law of every number is the same, its draws are not: pulsed runs on these devices give
other numbers than aimc 0.6 did, equal in distribution.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from aimc_engine.devices import MAX_INTERLEAVED_STEPS, Device, exp_step
from aimc_engine.pulses import K_NOISE, K_ORDER, K_WRITE
from aimc_engine.rng import normal_at, normal_pair_at, uniform_at
from aimc_spec.devices import ExpDeviceSpec, ExpStepDeviceSpec, PowerDeviceSpec

if TYPE_CHECKING:
    from aimc_engine.pulsed import PulsedUpdate

# update_kernels.c: F_POWER ... F_SOFTBOUNDS_REFERENCE
FAMILY_IDS = {"power": 0, "exp": 1, "exp_step": 2, "exp_step_noise": 3, "softbounds_reference": 4}


def c_arrays(dev: Device) -> tuple[int | None, ...]:
    """A curved-family device's per-element arrays (update_kernels.c: B_LO ...
    B_REFERENCE, NULL without a reference)."""
    reference = dev.reference.data_ptr() if dev.family.reference else None
    arrays = [dev.w_min, dev.w_max, dev.step_up, dev.step_down]
    return (*(a.data_ptr() for a in arrays), reference)


def c_scalars(dev: Device, how: PulsedUpdate) -> list[float]:
    """A curved-family device's own scalars (C_WRITE ... C_CURVE and the family's
    constants), after those every family shares (pulsed._kernel)."""
    noise = dev.complex_noise or (0.0, 0.0)
    complex_noise = dev.complex_noise is not None
    return [
        how.write_noise,
        FAMILY_IDS[dev.family.name],
        *noise,
        complex_noise,
        *_curve_constants(dev),
    ]


def _curve_constants(dev: Device) -> list[float]:
    """The family's constants as curve_q reads them (c[0], c[1], ...)."""
    spec = dev.spec
    if isinstance(spec, PowerDeviceSpec):
        return [spec.gamma]
    if isinstance(spec, ExpDeviceSpec):
        return [spec.gamma, math.expm1(spec.gamma)]
    if isinstance(spec, ExpStepDeviceSpec):
        p = spec.exp_step
        return [p.a, p.b, p.A_up, p.A_down, p.gamma_up, p.gamma_down]
    return []  # softbounds_reference: its reference array is all it needs


def apply(
    dev: Device, state: Tensor, n_up: Tensor, n_down: Tensor, how: PulsedUpdate, keys: Tensor
) -> Tensor:
    """The pulses applied as torch ops, number for number what the C kernel computes:
    every touched element replayed, then its fresh read noise under write noise.
    Returns sum |change| of the state (float64)."""
    touched = torch.nonzero((n_up + n_down).reshape(-1)).squeeze(1)
    flat = state.reshape(-1)
    before = flat[touched]
    flat[touched] = after = replay(dev, before, n_up, n_down, touched, keys)
    if how.weight is not None:
        read = after + how.write_noise * normal_at(touched, keys[K_WRITE])
        how.weight.reshape(-1)[touched] = read
    return (after - before).abs().sum(dtype=torch.float64)


def replay(
    dev: Device, w: Tensor, n_up: Tensor, n_down: Tensor, idx: Tensor, keys: Tensor
) -> Tensor:
    """The flat elements idx's pulses one at a time in a uniformly random order from w
    (step s of element e draws uniform s * numel + e and a normal of pair
    s // 2 * numel + e), the response read again before every step; more than
    MAX_INTERLEAVED_STEPS pulses take several of one sign per step. Any family: the
    linear family's elements near a bound are replayed by this too (pulsed.py)."""
    numel = n_up.numel()
    nu, nd = n_up.reshape(-1)[idx], n_down.reshape(-1)[idx]
    lo, hi, s_up, s_down = (
        v.reshape(-1)[idx] for v in (dev.w_min, dev.w_max, dev.step_up, dev.step_down)
    )
    sigma, multiplicative = dev.spec.c2c_noise, dev.spec.c2c_mode == "multiplicative"
    per = torch.ceil((nu + nd) / MAX_INTERLEAVED_STEPS).clamp(min=1)
    steps = int((torch.ceil(nu / per) + torch.ceil(nd / per)).max())
    for s in range(steps):
        left = nu + nd
        up = uniform_at(s * numel + idx, keys[K_ORDER]) * left < nu
        count = torch.minimum(left, per)
        cu = torch.where(up, torch.minimum(count, nu), 0.0)
        cd = torch.where(up, 0.0, torch.minimum(count, nd))
        nu, nd = nu - cu, nd - cd
        q_up, q_down = dev.raw(w, idx)
        step = cu * s_up * q_up - cd * s_down * q_down
        if sigma:
            scale = torch.where(up, s_up, s_down)
            if dev.complex_noise is not None:  # ExpStep's complex noise (exp_step.py)
                q_step = scale * torch.where(up, q_up, q_down)
                scale = exp_step.complex_noise_scale(dev.complex_noise, dev.dw_min, w, q_step)
            elif multiplicative:
                scale = scale * torch.where(up, q_up, q_down)
            if s % 2 == 0:  # steps 2m and 2m + 1 take the two normals of pair m
                xi, next_xi = normal_pair_at(s // 2 * numel + idx, keys[K_NOISE])
            else:
                xi = next_xi
            step = step + (cu + cd).sqrt() * xi * scale * sigma
        w = torch.clamp(w + dev.dw_min * step, lo, hi)
    return w
