"""The whole pulsed update of a linear-family tile in one call (docs/benchmarks.md).

A pulsed update of a small tile used to be some hundred torch ops: pulse trains, their
coincidences, the closed form per direction, full-tile noise draws, the per-element
test for elements near a bound, their replay one pulse at a time (a dozen ops per pulse
step) and the write noise of the touched elements. On a 64x128 tile every op costs more
in overhead than in arithmetic. Here the update of a tile whose device has the linear
family's closed form (ideal, constant_step, linear, softbounds) is one C call
(update_kernels.c: pulsed_linear) that visits only the elements that get a pulse; a
tile of a curved family is one call too (pulsed_curve.py), and `pulsed_update_` takes
both.

Its random numbers are all counter-based (rng.py), from 6 keys drawn in one call of the
tile's noise generator: the pulse trains' two sides (as pulses.pulse_train_counts), the
cycle-to-cycle noise of both directions (one Box-Muller pair per element), the write
noise, and the order and noise of pulses replayed one at a time. Element e's numbers
depend only on e and the keys, so the C loop computes just those it needs, for the
elements that get a pulse. `_apply` is the same update as torch ops: the fallback
(AIMC_FUSE=0, no C compiler, devices other than the CPU) and what the tests hold the C
kernel to (equal within a few float32 ulps: the kernel has its own vectorised log and
sincos for the normals, libm's expm1 and exp).

Against the step-by-step path (Device.apply_pulses_, still used by the rounded mode, unit
cells and transfers) the law of every number is the same; the draws are
not (that path draws full-tile normals from the generator), so pulsed runs on these
devices give other numbers than aimc 0.4 did, equal in distribution.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from aimc_engine import native, pulsed_curve
from aimc_engine.devices import Device
from aimc_engine.fused import fusion_enabled
from aimc_engine.pulses import K_D, K_NOISE_PAIR, K_WRITE, K_X, LazyRows, pulse_train_counts
from aimc_engine.rng import normal_at, normal_pair_at

# the attribute of a Device that keeps its C arguments (_kernel)
_KEPT = "_pulsed_c_arguments"


@dataclass(frozen=True)
class PulsedUpdate:
    """What one pulsed update of a tile needs besides its rows: the rate and the
    pulse-train settings, and the read weights and write-noise std under write noise."""

    lr: float
    bit_length: int
    managed: bool
    weight: Tensor | None  # the read weights W = state + write noise, or None
    write_noise: float


def pulsed_update_(
    dev: Device,
    state: Tensor,
    x: Tensor | LazyRows,
    d: Tensor,
    how: PulsedUpdate,
    generator: torch.Generator,
) -> Tensor | float:
    """W <- W - lr d^T x as stochastic pulse trains on the tile, in place (state, and the
    read weights under write noise): one C call for rows given as a tensor, the counts
    first for a convolution's lazy rows (their C kernels), then one C call for the rest.
    Returns sum |change| of the state (float64), what the tile's pulse counter reads."""
    keys = torch.randint(0, 2**32, (6,), generator=generator, device=generator.device)
    lib = native.library() if fusion_enabled() and _c_can_run(state, d, how) else None
    if lib is not None and isinstance(x, Tensor):
        kernel, arrays, scalars = _kernel(lib, "pulsed", dev, how)
        x, d = x.to(torch.float32).contiguous(), d.to(torch.float32).contiguous()
        moved = ctypes.c_double()
        done = kernel(
            state.data_ptr(),
            _pointer(how.weight),
            x.data_ptr(),
            d.data_ptr(),
            d.shape[0],
            x.shape[1],
            d.shape[1],
            arrays,
            scalars.data_ptr(),
            keys.data_ptr(),
            ctypes.byref(moved),
        )
        if done == 0:  # else out of memory, nothing written: the steps below
            return moved.value
    n_up, n_down = pulse_train_counts(
        x,
        d,
        lr=how.lr,
        dw_min=dev.granularity,
        bit_length=how.bit_length,
        update_management=how.managed,
        generator=None,
        keys=(keys[K_D], keys[K_X]),
    )
    return apply_counts_(dev, state, n_up, n_down, how, keys)


def apply_counts_(
    dev: Device, state: Tensor, n_up: Tensor, n_down: Tensor, how: PulsedUpdate, keys: Tensor
) -> Tensor | float:
    """n_up up and n_down down pulses on each element, in place, with the keys' noise: one
    C call where it can run, else the same as torch ops (_apply). Returns sum |change|
    of the state (float64)."""
    lib = native.library() if fusion_enabled() and _c_can_run(state, n_up, how) else None
    if lib is not None:
        kernel, arrays, scalars = _kernel(lib, "apply", dev, how)
        counts = (n_up.to(torch.float32).contiguous(), n_down.to(torch.float32).contiguous())
        moved = ctypes.c_double()
        failed = kernel(
            state.data_ptr(),
            _pointer(how.weight),
            *(c.data_ptr() for c in counts),
            state.numel(),
            arrays,
            scalars.data_ptr(),
            keys.data_ptr(),
            ctypes.byref(moved),
        )
        if not failed:  # else out of memory, nothing written: the torch ops
            return moved.value
    apply = _apply if dev.family.closed_form else pulsed_curve.apply
    return apply(dev, state, n_up, n_down, how, keys)


def _refs(dev: Device) -> tuple[Tensor | float, Tensor | float]:
    """The bounds the response is relative to: per element, or shared (device.py)."""
    if dev.uniform or dev.family.mean_bound_reference:
        return dev.spec.w_max, dev.spec.w_min
    return dev.w_max, dev.w_min


def _c_can_run(state: Tensor, d: Tensor, how: PulsedUpdate) -> bool:
    """Whether the C kernel can write these tensors: contiguous float32 on the CPU."""
    written = (state,) if how.weight is None else (state, how.weight)
    if d.device.type != "cpu" or any(
        t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous() for t in written
    ):
        return False
    return native.library() is not None


def _pointer(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _kernel(
    lib: ctypes.CDLL, name: str, dev: Device, how: PulsedUpdate
) -> tuple[Callable[..., int], ctypes.Array, Tensor]:
    """The C kernel `name` ("pulsed": from the rows, "apply": from the counts) of the
    device's family (update_kernels.c: NAME_linear, NAME_curve) and its arguments: the
    device's per-element arrays and the scalars, first those every family shares
    (P_PER_PULSE ... P_MULT), then the family's own. The scalars are kept on the device
    for the next update with the same settings and buffers (making them costs more than
    a small tile's update)."""
    closed = dev.family.closed_form
    pointers = _linear_arrays(dev) if closed else pulsed_curve.c_arrays(dev)
    key = (how.lr, how.bit_length, how.managed, how.write_noise, pointers)
    kept = dev.__dict__.get(_KEPT)
    if kept is None or kept[0] != key:
        per_pulse = how.lr / dev.granularity
        values = [per_pulse, how.bit_length, how.managed, math.sqrt(per_pulse / how.bit_length)]
        values += [dev.dw_min, dev.spec.c2c_noise, dev.spec.c2c_mode == "multiplicative"]
        values += _linear_scalars(dev, how) if closed else pulsed_curve.c_scalars(dev, how)
        kept = (key, torch.tensor(values, dtype=torch.float32))
        dev.__dict__[_KEPT] = kept  # a plain attribute: not a buffer, not saved
    kernel = getattr(lib, f"{name}_linear" if closed else f"{name}_curve")
    return kernel, (ctypes.c_void_p * len(pointers))(*pointers), kept[1]


def _linear_arrays(dev: Device) -> tuple[int | None, ...]:
    """A linear-family device's per-element arrays (update_kernels.c: A_LO ... A_REF_LO;
    NULL for shared reference bounds)."""
    arrays = [dev.w_min, dev.w_max, dev.step_up, dev.step_down, dev.slope_up, dev.slope_down]
    refs = tuple(r.data_ptr() if isinstance(r, Tensor) else None for r in _refs(dev))
    return tuple(a.data_ptr() for a in arrays) + refs


def _linear_scalars(dev: Device, how: PulsedUpdate) -> list[float]:
    """A linear-family device's own scalars (P_SPREAD ... P_REF_LO)."""
    values = [4 * dev.spec.c2c_noise, how.write_noise, dev.clips]
    return values + [0.0 if isinstance(r, Tensor) else r for r in _refs(dev)]


def _apply(
    dev: Device, state: Tensor, n_up: Tensor, n_down: Tensor, how: PulsedUpdate, keys: Tensor
) -> Tensor:
    """The pulses applied as torch ops, number for number what the C kernel computes;
    returns sum |change| of the state."""
    index = torch.arange(state.numel(), device=state.device).reshape(state.shape)
    new = _closed_form(dev, state, n_up, n_down, index, keys)
    risky = torch.nonzero(_risky(dev, state, n_up, n_down).reshape(-1)).squeeze(1)
    if dev.clips and len(risky):
        flat = new.reshape(-1)
        flat[risky] = pulsed_curve.replay(dev, state.reshape(-1)[risky], n_up, n_down, risky, keys)
    touched = (n_up + n_down) > 0
    new = torch.where(touched, new, state)
    moved = (new - state).abs().sum(dtype=torch.float64)
    state.copy_(new)
    if how.weight is not None:
        read = state + how.write_noise * normal_at(index, keys[K_WRITE])
        how.weight.copy_(torch.where(touched, read, how.weight))
    return moved


def _risky(dev: Device, w: Tensor, n_up: Tensor, n_down: Tensor) -> Tensor:
    """Which elements' pulses of both signs may reach a bound, where their order matters
    (replay.order_matters, element by element): an element's n pulses of one sign travel
    at most n times its largest step (its larger step scale times the largest response
    at its own bounds), plus 4 sigma of the noise of all its pulses."""
    ref_hi, ref_lo = _refs(dev)
    lo, hi = dev.w_min, dev.w_max
    g_up, g_down = dev.slope_up, dev.slope_down
    q = torch.maximum(
        torch.maximum((1 - g_up * lo / ref_hi).abs(), (1 - g_up * hi / ref_hi).abs()),
        torch.maximum((1 - g_down * lo / ref_lo).abs(), (1 - g_down * hi / ref_lo).abs()),
    )
    reach = dev.dw_min * torch.maximum(dev.step_up, dev.step_down)
    sigma4 = 4 * dev.spec.c2c_noise
    step = reach * q
    noise = reach * (sigma4 * q if dev.spec.c2c_mode == "multiplicative" else sigma4)
    spread = torch.where(noise != 0, (n_up + n_down).sqrt() * noise, 0.0)
    near = (w + n_up * step + spread >= hi) | (w - n_down * step - spread <= lo)
    return near & (n_up > 0) & (n_down > 0)


def _closed_form(
    dev: Device, w: Tensor, n_up: Tensor, n_down: Tensor, index: Tensor, keys: Tensor
) -> Tensor:
    """Every element's pulses in closed form, up first, then the order term that gives
    up-then-down the mean of a random order (devices/linear.py: pulses_)."""
    sigma = dev.spec.c2c_noise
    ref_hi, ref_lo = _refs(dev)
    xi_up, xi_down = normal_pair_at(index, keys[K_NOISE_PAIR]) if sigma else (None, None)
    g_up, g_down, s_up, s_down = dev.slope_up, dev.slope_down, dev.step_up, dev.step_down
    w, log_up = _direction(dev, w, n_up, s_up, g_up, ref_hi, 1.0, xi_up)
    w, log_down = _direction(dev, w, n_down, s_down, g_down, ref_lo, -1.0, xi_down)
    dw = torch.tensor(dev.dw_min, dtype=torch.float32, device=w.device)
    order = dw * dw * s_up * s_down * (g_up / ref_hi - g_down / ref_lo) / 2
    damping = torch.exp(n_up * (log_up / 2) + n_down * (log_down / 2))
    w = w + damping * n_up * n_down * order
    return torch.clamp(w, dev.w_min, dev.w_max) if dev.clips else w


def _direction(
    dev: Device,
    w: Tensor,
    k: Tensor,
    s: Tensor,
    g: Tensor,
    ref: Tensor | float,
    sign: float,
    xi: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """(w after k pulses of one direction in closed form, log a of one pulse: 0 without
    a slope): a constant step k dw without a slope, else (a^k - 1) (w - w*) with log a
    and w* from linear.affine_map, a^k - 1 = expm1(k log a) (-x for one pulse: no
    transcendental function for the most common count); plus the pulses' noise;
    clipped."""
    dw = (sign * torch.tensor(dev.dw_min, dtype=torch.float32, device=w.device)) * s
    flat = g == 0
    x = (dw * g / ref).clamp(1e-12, 1 - 1e-7)
    log_a = torch.where(flat, 0.0, torch.log1p(-x))
    grown = torch.where(k == 1, -x, torch.expm1(k * log_a))  # a^k - 1: -x for one pulse
    change = torch.where(flat, k * dw, grown * (w - dw / x))
    sigma = dev.spec.c2c_noise
    if xi is not None and dev.spec.c2c_mode == "multiplicative":
        change = change * (1 + sigma * xi / k.clamp(min=1).sqrt())
    elif xi is not None:
        change = change + sigma * dw * k.sqrt() * xi
    w = w + change
    return (torch.clamp(w, dev.w_min, dev.w_max) if dev.clips else w), log_a
