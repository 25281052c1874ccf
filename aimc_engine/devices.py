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
    spec: DeviceSpec, w: Tensor, w_min: Tensor | float, w_max: Tensor | float
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


def _log(a: Tensor | float) -> Tensor | float:
    return torch.log(a) if isinstance(a, Tensor) else math.log(a)


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
        # Without d2d every element shares its parameters: plain floats then save a
        # full-tile multiply or read per use on the hot path of every update.
        self.uniform = spec.d2d_variation == 0
        self._scalars = (spec.w_min, spec.w_max, up, down)

    def params(self) -> tuple[Tensor | float, Tensor | float, Tensor | float, Tensor | float]:
        """(w_min, w_max, step_up, step_down): floats for uniform tiles, else per element."""
        if self.uniform:
            return self._scalars
        return self.w_min, self.w_max, self.step_up, self.step_down

    def response(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Effective q_+, q_-: the family's response times each element's step scale."""
        lo, hi, s_up, s_down = self.params()
        q_up, q_down = raw_response(self.spec, w, lo, hi)
        return s_up * q_up, s_down * q_down

    def clip_(self, w: Tensor) -> Tensor:
        """Keep weights inside each element's bounds, in place (the ideal device has none)."""
        if not self.clips:
            return w
        if self.uniform:
            return w.clamp_(self.spec.w_min, self.spec.w_max)
        return torch.clamp(w, self.w_min, self.w_max, out=w)

    def expected_update_(self, w: Tensor, delta: Tensor, generator: torch.Generator) -> None:
        """W <- W + dW (.) F(W) - |dW| (.) G(W), clipped, in place (analog-model.md sec. 3).

        Equivalently dW*q_+ where dW > 0 and dW*q_- elsewhere. With cycle-to-cycle
        noise it adds the noise of the n = |dW|/dw_min pulses the mean-field step
        stands for (n may be fractional: the mean pulse count), each pulse of step
        dw_min*s (s: the element's step scale in that direction, from up_down and
        d2d): variance n (sigma dw_min s)^2 additive, n (sigma dw_min s q)^2
        multiplicative, so its variance equals the pulsed modes'. `delta` is consumed.
        """
        sigma, mode = self.spec.c2c_noise, self.spec.c2c_mode
        multiplicative = bool(sigma) and mode == "multiplicative"
        if self.uniform and self.spec.model in LINEAR_FAMILY and not multiplicative:
            self._linear_expected_(w, delta)
            if sigma:  # additive: std sigma * s * sqrt(|dW| dw_min)
                _, _, s_up, s_down = self._scalars
                std = delta.abs().mul_(self.dw_min).sqrt_().mul_(sigma)
                if s_up != s_down:
                    std.mul_(torch.where(delta > 0, s_up, s_down))
                elif s_up != 1:
                    std.mul_(s_up)
                w.addcmul_(std, torch.randn(w.shape, generator=generator, device=w.device))
        else:
            q_up, q_down = self.response(w)  # s * q, per direction
            if sigma:
                _, _, s_up, s_down = self.params()
                scale = (q_up, q_down) if multiplicative else (s_up, s_down)
                std = torch.where(delta > 0, scale[0], scale[1])
                std = std * delta.abs().mul(self.dw_min).sqrt_().mul_(sigma)
                w.addcmul_(std, torch.randn(w.shape, generator=generator, device=w.device))
            w.add_(torch.where(delta > 0, delta * q_up, delta * q_down))
        self.clip_(w)

    def _linear_expected_(self, w: Tensor, delta: Tensor) -> None:
        """The F/G rule for a uniform linear-family tile in five passes over memory.

        With dW_+- = (dW +- |dW|)/2, a = g_up/w_max, b = g_down/w_min and step
        scales s_up, s_down, the change s_up dW_+ (1 - a w) + s_down dW_- (1 - b w)
        is k1 dW + k2 |dW| - w (c1 dW + c2 |dW|), constants below.
        """
        lo, hi, s_up, s_down = self._scalars
        g_up, g_down = linear_slopes(self.spec)
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

    def apply_pulses_(
        self, w: Tensor, n_up: Tensor, n_down: Tensor, generator: torch.Generator
    ) -> None:
        """Apply n_up up pulses, then n_down down pulses, to each element, in place."""
        if self.spec.model in LINEAR_FAMILY:
            self._pulses_closed_form_(w, n_up, n_down, generator)
        else:
            self._pulses_in_rounds_(w, n_up, n_down, generator)

    def _noise(
        self, change: Tensor, n: Tensor, dw: Tensor | float, generator: torch.Generator
    ) -> Tensor:
        """Summed cycle-to-cycle noise of n pulses of step dw whose mean effect is `change`."""
        sigma = self.spec.c2c_noise
        if sigma == 0:
            return change
        xi = torch.randn(change.shape, generator=generator, device=change.device)
        if self.spec.c2c_mode == "additive":
            return change.add_(sigma * dw * n.sqrt() * xi)
        return change.mul_(1 + sigma * xi / n.clamp_min(1).sqrt())

    def _pulses_closed_form_(
        self, w: Tensor, n_up: Tensor, n_down: Tensor, generator: torch.Generator
    ) -> None:
        """n pulses on q = 1 - g*w/bound: an affine map iterated n times.

        Up: w_n = w* - (w* - w) a^n with w* = w_max/g, a = 1 - dw*g/w_max (for
        soft bounds, w_n = w_max - (w_max - w)(1 - dw/w_max)^n). Clipping once at
        the end is exact because the iterates move monotonically towards w*.
        """
        g_up, g_down = linear_slopes(self.spec)
        lo, hi, s_up, s_down = self.params()
        # one loop for both directions: a = 1 - dw*g/bound with dw signed
        directions: tuple[tuple[Tensor, float, Tensor | float, Tensor | float], ...] = (
            (n_up, g_up, hi, self.dw_min * s_up),
            (n_down, g_down, lo, -self.dw_min * s_down),
        )
        for n, g, bound, dw in directions:
            if g == 0:
                change = n * dw
            else:  # 1 - a^n as 1 - exp(n log a): torch.pow with tensor exponents is slow
                reached = (n * _log(1 - dw * g / bound)).exp_().neg_().add_(1)
                change = reached.mul_(bound / g - w)
            w.add_(self._noise(change, n, dw, generator))  # noise is symmetric: sign of dw moot
            self.clip_(w)

    def _pulses_in_rounds_(
        self, w: Tensor, n_up: Tensor, n_down: Tensor, generator: torch.Generator
    ) -> None:
        """Apply the pulses in up to MAX_PULSE_ROUNDS rounds, response re-read each round."""
        most = int(torch.maximum(n_up.max(), n_down.max()).item())
        rounds = min(most, MAX_PULSE_ROUNDS)
        lo, hi, s_up, s_down = self.params()
        dw_up, dw_down = self.dw_min * s_up, self.dw_min * s_down
        done_up = torch.zeros_like(n_up)
        done_down = torch.zeros_like(n_down)
        for r in range(1, rounds + 1):
            m_up = torch.floor(n_up * r / rounds) - done_up
            m_down = torch.floor(n_down * r / rounds) - done_down
            done_up += m_up
            done_down += m_down
            q_up, _ = raw_response(self.spec, w, lo, hi)
            w.add_(self._noise(m_up * dw_up * q_up, m_up, dw_up, generator))
            self.clip_(w)
            _, q_down = raw_response(self.spec, w, lo, hi)
            w.sub_(self._noise(m_down * dw_down * q_down, m_down, dw_down, generator))
            self.clip_(w)

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
