"""The device of one tile: its per-element parameters and how updates move its weights.

A weight w lives in [w_min, w_max]; one pulse of sign s moves it by
dw_min * (q_s(w) + sigma_c * xi) (analog-model.md section 2). A `Device` holds the
per-element parameters of one tile (device-to-device variation is drawn once, at
creation) and applies updates element-wise over the whole tile; the response family
(family.py) decides which rule: the linear family's closed forms (linear.py), pulses one
at a time for the others (replay.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aimc_engine import fused
from aimc_engine.devices import exp_step, linear, populate, replay, symmetric
from aimc_engine.devices.family import Param, family_of
from aimc_engine.devices.populate import FullSpec
from aimc_engine.devices.replay import _take
from aimc_engine.rng import draw_key
from aimc_spec.devices import DeviceSpec, ExpStepDeviceSpec, ExpStepNoiseDeviceSpec


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
    The families with every field of their aihwkit class (exp_step_noise,
    softbounds_reference) draw as aihwkit 1.2 does instead (populate.py) and add the
    buffers `reference` (r: the weight is the device state less r) and `reset_bias`.
    """

    w_min: Tensor
    w_max: Tensor
    step_up: Tensor
    step_down: Tensor
    slope_up: Tensor
    slope_down: Tensor
    reference: Tensor  # exp_step_noise and softbounds_reference only
    reset_bias: Tensor  # exp_step_noise and softbounds_reference only

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
        self.family = family = family_of(spec)
        self.dw_min = float(spec.dw_min)  # type: ignore[arg-type]  # derived by the spec
        self.clips = family.clips
        up = 1 + min(spec.up_down, 0.0)  # up_down < 0 shrinks the up step
        down = 1 - max(spec.up_down, 0.0)  # up_down > 0 shrinks the down step
        self.complex_noise = (
            spec.complex_noise() if isinstance(spec, ExpStepNoiseDeviceSpec) else None
        )
        if family.every_field:
            self._draw_every_field(spec, shape, generator, device)  # type: ignore[arg-type]
        else:
            self._draw(spec, shape, generator, device, (up, down))
        self._scalars = (spec.w_min, spec.w_max, up, down)
        self._step_bound: tuple[float, float] | None = None  # _max_step(), once
        self.granularity = self._granularity()
        self._fused = self._fused_constants(device)

    def _draw(
        self,
        spec: DeviceSpec,
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device | str,
        steps: tuple[float, float],
    ) -> None:
        """Device-to-device variation of the families with the shared fields only;
        steps: the nominal (up, down) step scales."""
        up, down = steps
        g_up, g_down = spec.slopes()
        d2d_lo, d2d_hi = spec.d2d_w_min or 0.0, spec.d2d_w_max or 0.0
        spreads = (spec.d2d_variation, d2d_lo, d2d_hi, spec.d2d_up_down)
        d2d_gamma = spec.slope_spread()  # only a family with slopes has one
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
        steps_drawn = ((gain - 1 + up + r).abs(), (gain - 1 + down - r).abs())
        self._keep(device, (-lo.abs(), hi.abs()), steps_drawn, (slope_up, slope_down))
        self._slopes = (g_up, g_down)

    def _keep(
        self,
        device: torch.device | str,
        bounds: tuple[Tensor, Tensor],
        steps: tuple[Tensor, Tensor],
        slopes: tuple[Tensor, Tensor],
    ) -> None:
        """The per-element parameters as buffers, saved with the weights, on `device`."""
        names = ("w_min", "w_max", "step_up", "step_down", "slope_up", "slope_down")
        for name, value in zip(names, (*bounds, *steps, *slopes), strict=True):
            self.register_buffer(name, value.to(device))

    def _draw_every_field(
        self,
        spec: FullSpec,
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device | str,
    ) -> None:
        """aihwkit's draw (populate.py). The bounds are kept as the weight's, b - r (the
        weight is the state less the reference), and raw() adds r back; `reference` and
        `reset_bias` are buffers of these families only (the others' are unchanged)."""
        drawn = populate.draw(spec, shape, generator)
        self.uniform = False
        bounds = (drawn.lo - drawn.reference, drawn.hi - drawn.reference)
        self._keep(device, bounds, (drawn.up, drawn.down), (torch.zeros(shape),) * 2)
        self.register_buffer("reference", drawn.reference.to(device))
        self.register_buffer("reset_bias", drawn.reset.to(device))
        self._slopes = (0.0, 0.0)

    def _granularity(self) -> float:
        """The step pulse-train update management sizes BL and probabilities by
        (aihwkit's weight_granularity): dw_min, except ExpStep's step at w = 0 without
        d2d, which aihwkit's source computes as (dw_down + dw_down)/2, i.e. the down step
        (1.99e-3 for reram_es against its dw_min 1.35e-3): kept, for the same pulses."""
        if not isinstance(self.spec, ExpStepDeviceSpec):
            return self.dw_min
        return exp_step.granularity(self.spec, self.dw_min, self._scalars[3])

    def _fused_constants(self, device: torch.device | str) -> Tensor | None:
        """The constants of the fused closed form (fused.py: bounds, log a, w* and noise
        per direction), for a uniform linear-family device whose responses both have a
        slope and whose noise is additive or absent; None for every other device."""
        g_up, g_down = self._slopes
        sigma = self.spec.c2c_noise
        if not (self.uniform and self.family.closed_form and g_up and g_down):
            return None
        if sigma and self.spec.c2c_mode != "additive":
            return None
        lo, hi, s_up, s_down = self._scalars
        dw_up, dw_down = self.dw_min * s_up, -self.dw_min * s_down
        log_up, fix_up = linear.affine_map(g_up, hi, dw_up)
        log_down, fix_down = linear.affine_map(g_down, lo, dw_down)
        order = self.dw_min**2 * s_up * s_down * (g_up / hi - g_down / lo) / 2  # see below
        values = (lo, hi, log_up, fix_up, log_down, fix_down, sigma * dw_up, sigma * dw_down, order)
        return torch.tensor(values, dtype=torch.float32, device=device)

    @property
    def fused_rounding(self) -> bool:
        """Whether rounded_update_ runs here (a uniform linear-family device, additive or
        no noise: its fused closed form)."""
        return self._fused is not None

    def rounded_update_(
        self, w: Tensor, grad: Tensor, lr: float, generator: torch.Generator
    ) -> Tensor | None:
        """The rounded mode for dW = -lr * grad as one fused chain, in place: n =
        stochastic_round(|dW|/dw_min) pulses of sign(dW), closed form, noise, clip
        (fused.rounded_linear). Returns sum |change| (0-d, float64); None, and w
        untouched, on a device without that closed form (not fused_rounding): the
        caller counts the pulses."""
        if self._fused is None:
            return None
        key = draw_key(generator)  # the stochastic rounding's counter-based uniforms
        xi = None
        if self.spec.c2c_noise:
            xi = torch.randn(w.shape, generator=generator, device=w.device)
        scale = torch.tensor(-lr / self.dw_min, device=w.device)
        moved = torch.zeros((), dtype=torch.float64, device=w.device)
        fused.rounded_linear(w, grad, scale, key, xi, self._fused, moved)
        return moved

    def params(self) -> tuple[Param, Param, Param, Param]:
        """(w_min, w_max, step_up, step_down): floats for uniform tiles, else per element."""
        if self.uniform:
            return self._scalars
        return self.w_min, self.w_max, self.step_up, self.step_down

    def _linear_params(self) -> tuple[Param, Param, Param, Param]:
        """(g_up, g_down, up reference bound, down reference bound) of a linear-family device."""
        if self.uniform:
            return (*self._slopes, self.spec.w_max, self.spec.w_min)
        if self.family.mean_bound_reference:
            return self.slope_up, self.slope_down, self.spec.w_max, self.spec.w_min
        return self.slope_up, self.slope_down, self.w_max, self.w_min

    def raw(self, w: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q_+, q_- of each element (without its step scale); idx: flat element indices of w."""
        if self.family.curve is None:
            g_up, g_down, ref_hi, ref_lo = (_take(v, idx) for v in self._linear_params())
            return linear.response(g_up, g_down, ref_hi, ref_lo, w)
        lo, hi, _, _ = self.params()
        if self.family.reference:  # the response reads the state g = w + r (reference.py)
            r = _take(self.reference, idx)
            return self.family.curve(self.spec, w + r, _take(lo, idx) + r, _take(hi, idx) + r)
        return self.family.curve(self.spec, w, _take(lo, idx), _take(hi, idx))

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
        if self.uniform and self.family.closed_form and not multiplicative:
            linear.expected_(self, w, delta)
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
                if self.complex_noise is not None:  # ExpStep's (exp_step.py)
                    q = torch.where(delta > 0, q_up, q_down)
                    std = exp_step.complex_noise_scale(self.complex_noise, self.dw_min, w, q)
                std = std * delta.abs().mul(self.dw_min).sqrt_().mul_(sigma)
                w.addcmul_(std, torch.randn(w.shape, generator=generator, device=w.device))
            w.add_(torch.where(delta > 0, delta * q_up, delta * q_down))
        self.clip_(w)

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
        if not self.family.closed_form:
            active = torch.nonzero((n_up + n_down).reshape(-1)).squeeze(1)
            if 2 * len(active) > w.numel():
                w.copy_(replay.interleaved(self, w, n_up, n_down, None, generator))
            elif len(active):  # few elements pulsed (a transfer's column): only those
                replay.replay_(self, w, w.reshape(-1)[active], n_up, n_down, active, generator)
            return
        risky = replay.order_matters(self, w, n_up, n_down)
        start = w.reshape(-1)[risky] if risky is not None else None
        linear.pulses_(self, w, n_up, n_down, generator)
        if risky is not None and start is not None:
            replay.replay_(self, w, start, n_up, n_down, risky, generator)

    def alternating_pulse_point(self, *, iterations: int = 50) -> Tensor:
        """Where each element settles under noise-free alternating pulses (symmetric.py)."""
        return symmetric.alternating_pulse_point(self, iterations=iterations)

    def symmetric_point(self, *, iterations: int = 60) -> Tensor:
        """Each element's w where q_+ = q_- (symmetric.py)."""
        return symmetric.symmetric_point(self, iterations=iterations)
