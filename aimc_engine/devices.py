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

from aimc_engine import fused
from aimc_engine.rng import draw_key
from aimc_spec.spec import DeviceSpec

# Families of the form q_+ = 1 - g_up*w/w_max, q_- = 1 - g_down*w/w_min.
LINEAR_FAMILY = ("ideal", "constant_step", "linear", "softbounds")

# Pulses applied one at a time (devices without a closed form, and elements near a
# bound with pulses of both signs) take at most this many steps per update: exact up
# to this many pulses per element, several of one sign per step beyond.
MAX_INTERLEAVED_STEPS = 64


def raw_response(
    spec: DeviceSpec, w: Tensor, w_min: Tensor | float, w_max: Tensor | float
) -> tuple[Tensor, Tensor]:
    """q_+(w), q_-(w) of the device family (table in analog-model.md section 2)."""
    m = spec.model
    if m in LINEAR_FAMILY:
        g_up, g_down = spec.slopes()
        return 1 - g_up * w / w_max, 1 - g_down * w / w_min
    return _curved_response(spec, w, w_min, w_max)


def _curved_response(
    spec: DeviceSpec, w: Tensor, w_min: Tensor | float, w_max: Tensor | float
) -> tuple[Tensor, Tensor]:
    """q_+, q_- of the families without a closed form for n pulses (power, exp, exp_step)."""
    m = spec.model
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
    p = spec.exp_step  # exp_step, aihwkit's ExpStep: z from each element's own bounds
    z = 2 * p.a * w / (w_max - w_min) + p.b
    up = (1 - p.A_up * torch.exp(p.gamma_up * z)).clamp_min(0)
    down = (1 - p.A_down * torch.exp(-p.gamma_down * z)).clamp_min(0)
    return up, down


def symmetric_parts(q_plus: Tensor, q_minus: Tensor) -> tuple[Tensor, Tensor]:
    """F = (q_- + q_+)/2 (symmetric part) and G = (q_- - q_+)/2 (asymmetric part)."""
    return (q_minus + q_plus) / 2, (q_minus - q_plus) / 2


Param = Tensor | float  # a float when every element of the tile shares the value


def _take(v: Param, idx: Tensor | None) -> Param:
    """The value at flat element indices idx (all of it when idx is None or v is shared)."""
    return v if idx is None or not isinstance(v, Tensor) else v.reshape(-1)[idx]


def _affine_map(g: Param, ref: Param, dw: Param) -> tuple[Param, Param]:
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


class Device(nn.Module):
    """Per-element device parameters of one tile, and the update rules on them.

    Buffers (saved with the weights): `w_min`, `w_max`, `step_up`/`step_down` (each
    element's pulse step in units of dw_min, from up_down and d2d) and, for the
    linear family, `slope_up`/`slope_down` (gamma with its d2d). Device-to-device
    variation follows aihwkit's PulsedDevice: one gain |1 + d2d xi| shared by both
    directions plus an antisymmetric +-r (d2d_up_down), bounds w_max|1 + d2d_w_max xi|
    and -|w_min (1 + d2d_w_min xi)|, slopes |gamma + d2d_gamma xi|; negative draws are
    reflected (aihwkit's enforce_consistency). The `linear` model's response uses the
    nominal bounds (aihwkit's mean_bound_reference) while every element clips at its own.
    """

    w_min: Tensor
    w_max: Tensor
    step_up: Tensor
    step_down: Tensor
    slope_up: Tensor
    slope_down: Tensor

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
        g_up, g_down = spec.slopes()
        d2d_lo, d2d_hi = spec.d2d_w_min or 0.0, spec.d2d_w_max or 0.0
        spreads = (spec.d2d_variation, d2d_lo, d2d_hi, spec.d2d_up_down)
        # d2d of the slopes only where the model has slopes to spread
        d2d_gamma = spec.d2d_gamma if spec.model == "linear" else 0.0
        # Without d2d every element shares its parameters: plain floats then save a
        # full-tile multiply or read per use on the hot path of every update.
        self.uniform = not any(spreads) and not d2d_gamma

        def normal() -> Tensor:  # one draw per element, once, from the init stream
            return torch.randn(shape, generator=generator, device=generator.device)

        gain = (1 + spec.d2d_variation * normal()) if spec.d2d_variation else torch.ones(shape)
        r = spec.d2d_up_down * normal() if spec.d2d_up_down else torch.zeros(shape)
        hi = spec.w_max * (1 + d2d_hi * normal()) if d2d_hi else torch.full(shape, spec.w_max)
        lo = spec.w_min * (1 + d2d_lo * normal()) if d2d_lo else torch.full(shape, spec.w_min)
        slope_up = (g_up + d2d_gamma * normal()).abs() if d2d_gamma else torch.full(shape, g_up)
        slope_down = (
            (g_down + d2d_gamma * normal()).abs() if d2d_gamma else torch.full(shape, g_down)
        )
        self.register_buffer("w_min", -lo.abs().to(device))
        self.register_buffer("w_max", hi.abs().to(device))
        self.register_buffer("step_up", (gain - 1 + up + r).abs().to(device))
        self.register_buffer("step_down", (gain - 1 + down - r).abs().to(device))
        self.register_buffer("slope_up", slope_up.to(device))
        self.register_buffer("slope_down", slope_down.to(device))
        self._scalars = (spec.w_min, spec.w_max, up, down)
        self._slopes = (g_up, g_down)
        self._step_bound: tuple[float, float] | None = None  # _max_step(), once
        self.granularity = self._granularity()
        self._fused = self._fused_constants(device)

    def _granularity(self) -> float:
        """The step pulse-train update management sizes BL and probabilities by
        (aihwkit's weight_granularity): dw_min, except ExpStep's step at w = 0 without
        d2d, which aihwkit's source computes as (dw_down + dw_down)/2, i.e. the down step
        (1.99e-3 for reram_es against its dw_min 1.35e-3): kept, for the same pulses."""
        if self.spec.model != "exp_step":
            return self.dw_min
        p = self.spec.exp_step
        q_down = max(1 - p.A_down * math.exp(-p.gamma_down * p.b), 0.0)
        return self.dw_min * self._scalars[3] * q_down

    def _fused_constants(self, device: torch.device | str) -> Tensor | None:
        """The constants of the fused closed form (fused.py: bounds, log a, w* and noise
        per direction), for a uniform linear-family device whose responses both have a
        slope and whose noise is additive or absent; None for every other device."""
        g_up, g_down = self._slopes
        sigma = self.spec.c2c_noise
        if not (self.uniform and self.spec.model in LINEAR_FAMILY and g_up and g_down):
            return None
        if sigma and self.spec.c2c_mode != "additive":
            return None
        lo, hi, s_up, s_down = self._scalars
        dw_up, dw_down = self.dw_min * s_up, -self.dw_min * s_down
        log_up, fix_up = _affine_map(g_up, hi, dw_up)
        log_down, fix_down = _affine_map(g_down, lo, dw_down)
        order = self.dw_min**2 * s_up * s_down * (g_up / hi - g_down / lo) / 2  # see below
        values = (lo, hi, log_up, fix_up, log_down, fix_down, sigma * dw_up, sigma * dw_down, order)
        return torch.tensor(values, dtype=torch.float32, device=device)

    def rounded_update_(
        self, w: Tensor, grad: Tensor, lr: float, generator: torch.Generator
    ) -> bool:
        """The rounded mode for dW = -lr * grad as one fused chain, in place: n =
        stochastic_round(|dW|/dw_min) pulses of sign(dW), closed form, noise, clip
        (fused.rounded_linear). False, and w untouched, on a device without that closed
        form: the caller counts the pulses."""
        if self._fused is None:
            return False
        key = draw_key(generator)  # the stochastic rounding's counter-based uniforms
        xi = None
        if self.spec.c2c_noise:
            xi = torch.randn(w.shape, generator=generator, device=w.device)
        scale = torch.tensor(-lr / self.dw_min, device=w.device)
        fused.rounded_linear(w, grad, scale, key, xi, self._fused)
        return True

    def params(self) -> tuple[Param, Param, Param, Param]:
        """(w_min, w_max, step_up, step_down): floats for uniform tiles, else per element."""
        if self.uniform:
            return self._scalars
        return self.w_min, self.w_max, self.step_up, self.step_down

    def _linear_params(self) -> tuple[Param, Param, Param, Param]:
        """(g_up, g_down, up reference bound, down reference bound) of a linear-family device."""
        if self.uniform:
            return (*self._slopes, self.spec.w_max, self.spec.w_min)
        if self.spec.model == "linear":  # aihwkit's mean_bound_reference
            return self.slope_up, self.slope_down, self.spec.w_max, self.spec.w_min
        return self.slope_up, self.slope_down, self.w_max, self.w_min

    def raw(self, w: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q_+, q_- of each element (without its step scale); idx: flat element indices of w."""
        if self.spec.model in LINEAR_FAMILY:
            g_up, g_down, ref_hi, ref_lo = (_take(v, idx) for v in self._linear_params())
            return 1 - g_up * w / ref_hi, 1 - g_down * w / ref_lo
        lo, hi, _, _ = self.params()
        return _curved_response(self.spec, w, _take(lo, idx), _take(hi, idx))

    def response(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Effective q_+, q_-: the family's response times each element's step scale."""
        _, _, s_up, s_down = self.params()
        q_up, q_down = self.raw(w)
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
                _, _, step_up, step_down = self.params()
                scale = (q_up, q_down) if multiplicative else (step_up, step_down)
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
        g_up, g_down = self.spec.slopes()
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
        """Apply n_up up and n_down down pulses to each element, in place.

        Up and down pulses of one update arrive interleaved on hardware (aihwkit
        applies them sample by sample, slot by slot); here they are applied one at a
        time in a uniformly random order. Devices without a closed form do so for
        every element. On linear-family devices the order changes the result only at
        second order in dw_min away from the bounds, so the bulk takes the closed
        form, up pulses first, and only elements with pulses of both signs whose
        excursion may reach a bound (where clipping makes the order matter) are
        replayed one pulse at a time from their starting weights.
        """
        if self.spec.model not in LINEAR_FAMILY:
            active = torch.nonzero((n_up + n_down).reshape(-1)).squeeze(1)
            if 2 * len(active) > w.numel():
                w.copy_(self._interleaved(w, n_up, n_down, None, generator))
            elif len(active):  # few elements pulsed (a transfer's column): only those
                self._replay_(w, w.reshape(-1)[active], n_up, n_down, active, generator)
            return
        risky = self._order_matters(w, n_up, n_down)
        start = w.reshape(-1)[risky] if risky is not None else None
        self._pulses_closed_form_(w, n_up, n_down, generator)
        if risky is not None and start is not None:
            self._replay_(w, start, n_up, n_down, risky, generator)

    def _replay_(
        self,
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
        w.reshape(-1)[idx] = self._interleaved(start, flat_up, flat_down, idx, generator)

    def _order_matters(self, w: Tensor, n_up: Tensor, n_down: Tensor) -> Tensor | None:
        """Flat indices of elements with pulses of both signs that could reach a bound.

        An element's n pulses of one sign travel at most n*step, plus 4 sigma of the noise
        of all its pulses, sqrt(n_up + n_down)*noise. First a test on the counts' maxima
        and the weights' range: if no element could travel from the weight nearest a
        bound to that bound, nothing is near (the usual case); else the test per element.
        """
        if not self.clips:
            return None
        lo, hi, _, _ = self.params()
        if self._step_bound is None:
            self._step_bound = self._max_step()
        step, noise = self._step_bound

        # noise of either sign's pulses can push an element either way
        top_up, top_down = float(n_up.max()), float(n_down.max())
        most = max(top_up, top_down) * step + math.sqrt(top_up + top_down) * noise
        if self.uniform:
            w_lo, w_hi = (float(v) for v in torch.aminmax(w))  # one pass for both
            if w_hi + most < hi and w_lo - most > lo:
                return None
        spread = (n_up + n_down).sqrt_().mul_(noise) if noise else 0.0
        near = (w + n_up * step + spread >= hi) | (w - n_down * step - spread <= lo)
        near &= (n_up > 0) & (n_down > 0)
        risky = torch.nonzero(near.reshape(-1)).squeeze(1)
        return risky if len(risky) else None

    def _max_step(self) -> tuple[float, float]:
        """(the most one pulse moves any element on average, 4 sigma of its noise):
        dw_min x step scale x response (responses are monotone: maxima at the bounds)."""
        lo, hi, s_up, s_down = self.params()
        ends = [torch.as_tensor(v, dtype=torch.float32) for v in (lo, hi)]
        q_max = max(float(q.abs().max()) for end in ends for q in self.raw(end))
        s_max = max(float(torch.as_tensor(s).max()) for s in (s_up, s_down))
        sigma = 4 * self.spec.c2c_noise
        noise = sigma if self.spec.c2c_mode == "additive" else sigma * q_max
        return self.dw_min * s_max * q_max, self.dw_min * s_max * noise

    def _interleaved(
        self,
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
        lo, hi, s_up, s_down = (_take(v, idx) for v in self.params())
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
        sigma, additive = self.spec.c2c_noise, self.spec.c2c_mode == "additive"
        for _ in range(steps):
            left = left_up + left_down
            u = torch.rand(w.shape, generator=generator, device=w.device)
            go_up = u * left < left_up  # P(up) = left_up / left; never with no up left
            count = left.clamp(max=per_step)
            count_up = torch.where(go_up, count.minimum(left_up), 0.0)
            count_down = torch.where(go_up, 0.0, count.minimum(left_down))
            left_up -= count_up
            left_down -= count_down
            q_up, q_down = self.raw(w, idx)
            step = count_up * s_up * q_up - count_down * s_down * q_down
            if sigma:  # the summed noise of the step's pulses, one sign per element
                scale = torch.where(go_up, s_up, s_down)
                if not additive:
                    scale = scale * torch.where(go_up, q_up, q_down)
                xi = torch.randn(w.shape, generator=generator, device=w.device)
                step += (count_up + count_down).sqrt_().mul_(xi).mul_(scale).mul_(sigma)
            w = w + self.dw_min * step
            if self.clips:
                w = torch.clamp(w, lo, hi)  # type: ignore[arg-type]  # float or per element
        return w

    def _noise(self, change: Tensor, n: Tensor, dw: Param, generator: torch.Generator) -> Tensor:
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
        """n pulses on q = 1 - g*w/bound: an affine map w -> a w + dw iterated n times.

        Its fixed point is w* = bound/g and a = 1 - dw*g/bound, so the change is
        (a^n - 1)(w - w*) = expm1(n log a)(w - w*); for soft bounds w_n = w_max -
        (w_max - w)(1 - dw/w_max)^n. Clipping once at the end is exact because the
        iterates move monotonically towards the fixed point.
        """
        if self._fused is not None:  # one pass over the tile (fused.py)
            xi_up = xi_down = None
            if self.spec.c2c_noise:
                xi_up = torch.randn(w.shape, generator=generator, device=w.device)
                xi_down = torch.randn(w.shape, generator=generator, device=w.device)
            fused.pulses_linear(w, n_up, n_down, xi_up, xi_down, self._fused)
            return
        _, _, s_up, s_down = self.params()
        g_up, g_down, ref_hi, ref_lo = self._linear_params()
        directions: tuple[tuple[Tensor, Param, Param, Param], ...] = (
            (n_up, g_up, ref_hi, self.dw_min * s_up),
            (n_down, g_down, ref_lo, -self.dw_min * s_down),
        )
        shrink: list[Param] = []  # log a of each direction
        for n, g, ref, dw in directions:
            if isinstance(g, float) and g == 0:
                change = n * dw
                shrink.append(0.0)
            else:
                log_a, fixed = _affine_map(g, ref, dw)
                change = torch.expm1(n * log_a).mul_(w - fixed)
                shrink.append(log_a)
            w.add_(self._noise(change, n, dw, generator))  # noise is symmetric: sign of dw moot
            self.clip_(w)
        # Up pulses first is one of the C(n+m, n) orders: each (up, down) pair in that order
        # ends lower by dw_u dw_d (g_u/|ref_hi| + g_d/|ref_lo|) than the swapped pair (the
        # two affine maps do not commute), damped by the a's of the pulses after it (on
        # average a_u^(n/2) a_d^(m/2)); a random order swaps half of the n*m pairs on
        # average. Adding that back gives a random order's mean (tested within 0.1 dw_min
        # up to 100 + 100 pulses).
        order = self.dw_min**2 * s_up * s_down * (g_up / ref_hi - g_down / ref_lo) / 2
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
            self.clip_(w)

    def alternating_pulse_point(self, *, iterations: int = 50) -> Tensor:
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
        lo, hi, s_up, s_down = (torch.as_tensor(v, dtype=torch.float32) for v in self.params())
        lo, hi = lo.expand(self.w_min.shape).clone(), hi.expand(self.w_max.shape).clone()
        if self.spec.model == "ideal" or (
            self.spec.model in LINEAR_FAMILY and not any(self.spec.slopes())
        ):
            return torch.zeros_like(lo)

        def pair(w: Tensor) -> Tensor:  # f(w): one up then one down pulse, unclipped
            up = w + self.dw_min * s_up * self.raw(w)[0]
            return up - self.dw_min * s_down * self.raw(up)[1] - w

        bottom, top = lo.clone(), hi.clone()
        walks_down, walks_up = pair(bottom) < 0, pair(top) > 0
        for _ in range(iterations):
            mid = (bottom + top) / 2
            rising = pair(mid) > 0
            bottom = torch.where(rising, mid, bottom)
            top = torch.where(rising, top, mid)
        point = (bottom + top) / 2
        return torch.where(walks_down, lo, torch.where(walks_up, hi, point))

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
