"""Analog devices: response functions q_plus/q_minus and how pulses move a weight.

A weight w lives in [w_min, w_max]; one pulse of sign s moves it by
dw_min * (q_s(w) + sigma_c * xi) (analog-model.md section 2). A `Device` holds
the per-element parameters of one tile (device-to-device variation is drawn
once, at creation) and applies updates element-wise over the whole tile.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from aimc_engine.spec import DeviceSpec

# Devices without a closed form for n pulses apply them in at most this many
# rounds, re-evaluating the response each round: exact while no element gets
# more pulses than this in one update, a first-order split beyond.
MAX_PULSE_ROUNDS = 32

# Families of the form q_+ = 1 - g_up*w/w_max, q_- = 1 - g_down*w/w_min.
LINEAR_FAMILY = ("ideal", "constant_step", "linear", "softbounds")


def linear_slopes(spec: DeviceSpec) -> tuple[float, float]:
    """(gamma_up, gamma_down) of a linear-family device."""
    if spec.model in ("ideal", "constant_step"):
        return 0.0, 0.0
    if spec.model == "softbounds":
        return 1.0, 1.0
    down = spec.gamma if spec.gamma_down is None else spec.gamma_down
    return spec.gamma, down


def raw_response(
    spec: DeviceSpec, w: Tensor, w_min: Tensor, w_max: Tensor
) -> tuple[Tensor, Tensor]:
    """q_+(w), q_-(w) of the device family (table in analog-model.md section 2)."""
    m = spec.model
    if m in LINEAR_FAMILY:
        g_up, g_down = linear_slopes(spec)
        return 1 - g_up * w / w_max, 1 - g_down * w / w_min
    if m == "power":
        span = w_max - w_min
        up = ((w_max - w) / span).clamp_min(0) ** spec.gamma
        down = ((w - w_min) / span).clamp_min(0) ** spec.gamma
        return up, down
    if m == "exp":
        g = spec.gamma
        if g == 0:  # the limit gamma -> 0 is the soft-bounds device
            return 1 - w / w_max, 1 - w / w_min
        norm = math.expm1(g)
        return torch.expm1(g * (1 - w / w_max)) / norm, torch.expm1(g * (1 - w / w_min)) / norm
    p = spec.exp_step  # exp_step, aihwkit's ExpStep
    z = 2 * p.a * w / (w_max - w_min) + p.b
    up = (1 - p.A_up * torch.exp(p.gamma_up * z)).clamp_min(0)
    down = (1 - p.A_down * torch.exp(-p.gamma_down * z)).clamp_min(0)
    return up, down


def symmetric_parts(q_plus: Tensor, q_minus: Tensor) -> tuple[Tensor, Tensor]:
    """F = (q_- + q_+)/2 (symmetric part) and G = (q_- - q_+)/2 (asymmetric part)."""
    return (q_minus + q_plus) / 2, (q_minus - q_plus) / 2


class Device(nn.Module):
    """Per-element device parameters of one tile, and the update rules on them.

    Buffers (saved with the weights): `w_min`, `w_max`, and `step_up`/`step_down`,
    each element's pulse step in units of dw_min (up_down asymmetry and d2d).
    """

    w_min: Tensor
    w_max: Tensor
    step_up: Tensor
    step_down: Tensor

    def __init__(
        self,
        spec: DeviceSpec,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.spec = spec
        self.dw_min = float(spec.dw_min)  # type: ignore[arg-type]  # derived by the spec
        self.clips = spec.model != "ideal"
        up = 1 + min(spec.up_down, 0.0)  # up_down < 0 shrinks the up step
        down = 1 - max(spec.up_down, 0.0)  # up_down > 0 shrinks the down step

        def spread(value: float) -> Tensor:
            # d2d: value * (1 + d2d * xi), drawn once; kept positive so no element flips sign.
            xi = torch.randn(shape, generator=generator, device=generator.device)
            factor = (1 + spec.d2d_variation * xi).clamp_min(0.05)
            return (value * factor).to(device)

        if spec.d2d_variation > 0:
            step = spread(1.0)
            w_min, w_max = spread(spec.w_min), spread(spec.w_max)
        else:
            step = torch.ones(shape, device=device)
            w_min = torch.full(shape, spec.w_min, device=device)
            w_max = torch.full(shape, spec.w_max, device=device)
        self.register_buffer("w_min", w_min)
        self.register_buffer("w_max", w_max)
        self.register_buffer("step_up", step * up)
        self.register_buffer("step_down", step * down)

    def response(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Effective q_+, q_-: the family's response times each element's step scale."""
        q_up, q_down = raw_response(self.spec, w, self.w_min, self.w_max)
        return self.step_up * q_up, self.step_down * q_down

    def clip(self, w: Tensor) -> Tensor:
        """Keep weights inside each element's bounds (the ideal device has none)."""
        return torch.clamp(w, self.w_min, self.w_max) if self.clips else w

    def expected_update(self, w: Tensor, delta: Tensor, generator: torch.Generator) -> Tensor:
        """W + dW (.) F(W) - |dW| (.) G(W), clipped (analog-model.md section 3).

        Written as dW*q_+ where dW > 0 and dW*q_- elsewhere, which is the same
        rule with fewer operations. With cycle-to-cycle noise, adds the noise of
        the |dW|/dw_min pulses the mean-field step stands for.
        """
        q_up, q_down = self.response(w)
        change = torch.where(delta > 0, delta * q_up, delta * q_down)
        sigma = self.spec.c2c_noise
        if sigma > 0:
            xi = torch.randn(w.shape, generator=generator, device=w.device)
            if self.spec.c2c_mode == "additive":
                change = change + sigma * torch.sqrt(delta.abs() * self.dw_min) * xi
            else:
                pulses = (delta.abs() / self.dw_min).clamp_min(1)
                change = change * (1 + sigma * xi / pulses.sqrt())
        return self.clip(w + change)

    def apply_pulses(
        self, w: Tensor, n_up: Tensor, n_down: Tensor, generator: torch.Generator
    ) -> Tensor:
        """Apply n_up up pulses, then n_down down pulses, to each element."""
        if self.spec.model in LINEAR_FAMILY:
            return self._pulses_closed_form(w, n_up, n_down, generator)
        return self._pulses_in_rounds(w, n_up, n_down, generator)

    def _noise(self, change: Tensor, n: Tensor, dw: Tensor, generator: torch.Generator) -> Tensor:
        """Summed cycle-to-cycle noise of n pulses of step dw whose mean effect is `change`."""
        sigma = self.spec.c2c_noise
        if sigma == 0:
            return change
        xi = torch.randn(change.shape, generator=generator, device=change.device)
        if self.spec.c2c_mode == "additive":
            return change + sigma * dw * n.sqrt() * xi
        return change * (1 + sigma * xi / n.clamp_min(1).sqrt())

    def _pulses_closed_form(
        self, w: Tensor, n_up: Tensor, n_down: Tensor, generator: torch.Generator
    ) -> Tensor:
        """n pulses on q = 1 - g*w/bound: an affine map iterated n times.

        Up: w_n = w* - (w* - w) a^n with w* = w_max/g, a = 1 - dw*g/w_max (for
        soft bounds, w_n = w_max - (w_max - w)(1 - dw/w_max)^n). Clipping once at
        the end is exact because the iterates move monotonically towards w*.
        """
        g_up, g_down = linear_slopes(self.spec)
        dw_up = self.dw_min * self.step_up
        dw_down = self.dw_min * self.step_down
        if g_up == 0:
            change = dw_up * n_up
        else:
            target = self.w_max / g_up
            change = (target - w) * (1 - torch.pow(1 - dw_up * g_up / self.w_max, n_up))
        w = self.clip(w + self._noise(change, n_up, dw_up, generator))
        if g_down == 0:
            change = -dw_down * n_down
        else:
            target = self.w_min / g_down
            change = (target - w) * (1 - torch.pow(1 + dw_down * g_down / self.w_min, n_down))
        return self.clip(w + self._noise(change, n_down, dw_down, generator))

    def _pulses_in_rounds(
        self, w: Tensor, n_up: Tensor, n_down: Tensor, generator: torch.Generator
    ) -> Tensor:
        """Apply the pulses in up to MAX_PULSE_ROUNDS rounds, response re-read each round."""
        most = int(torch.maximum(n_up.max(), n_down.max()).item())
        rounds = min(most, MAX_PULSE_ROUNDS)
        dw_up = self.dw_min * self.step_up
        dw_down = self.dw_min * self.step_down
        done_up = torch.zeros_like(n_up)
        done_down = torch.zeros_like(n_down)
        for r in range(1, rounds + 1):
            m_up = torch.floor(n_up * r / rounds) - done_up
            m_down = torch.floor(n_down * r / rounds) - done_down
            done_up += m_up
            done_down += m_down
            q_up, _ = raw_response(self.spec, w, self.w_min, self.w_max)
            w = self.clip(w + self._noise(m_up * dw_up * q_up, m_up, dw_up, generator))
            _, q_down = raw_response(self.spec, w, self.w_min, self.w_max)
            w = self.clip(w - self._noise(m_down * dw_down * q_down, m_down, dw_down, generator))
        return w

    def symmetric_point(self, *, iterations: int = 60) -> Tensor:
        """Each element's w where G(w) = 0 (q_+ = q_-), by bisection on [w_min, w_max].

        G grows with w for every family here, so bisection is safe. Elements with
        no sign change (e.g. constant steps with up_down != 0) get NaN; where G
        vanishes everywhere (ideal, constant_step) the answer is 0.
        """
        lo, hi = self.w_min.clone(), self.w_max.clone()

        def g(w: Tensor) -> Tensor:
            q_up, q_down = self.response(w)
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
