"""Device physics: every formula of analog-model.md sections 2-3, checked numerically."""

from __future__ import annotations

import math
import random

import pytest
import torch

from aimc_engine.devices import (
    FAMILIES,
    MAX_INTERLEAVED_STEPS,
    Device,
    raw_response,
    replay,
    symmetric_parts,
)
from aimc_spec.devices import DEVICE_MODELS
from aimc_spec.spec import parse_device
from tests.conftest import expected_after, family_fields, make_device, pulsed_after

W = torch.linspace(-0.9, 0.9, 7)
LO, HI = torch.tensor(-1.0), torch.tensor(1.0)


def ref_response(model: str, w: float, w_min: float, w_max: float, gamma: float) -> tuple:
    """The table of analog-model.md section 2, written out in plain floats."""
    span = w_max - w_min
    if model in ("ideal", "constant_step"):
        return 1.0, 1.0
    if model == "linear":
        return 1 - gamma * w / w_max, 1 - gamma * w / w_min
    if model == "softbounds":
        return 1 - w / w_max, 1 - w / w_min
    if model == "power":
        return ((w_max - w) / span) ** gamma, ((w - w_min) / span) ** gamma
    if model == "exp":
        up = (math.exp(gamma * (1 - w / w_max)) - 1) / (math.exp(gamma) - 1)
        down = (math.exp(gamma * (1 - w / w_min)) - 1) / (math.exp(gamma) - 1)
        return up, down
    a, b = 0.244, 0.2425
    z = 2 * a * w / span + b
    up = max(1 - 0.00081 * math.exp(12.44625 * z), 0.0)
    down = max(1 - 0.36833 * math.exp(-12.78785 * z), 0.0)
    return up, down


@pytest.mark.parametrize(
    "model", ["ideal", "constant_step", "linear", "softbounds", "power", "exp", "exp_step"]
)
@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (-0.75, 1.25)])
def test_response_functions_match_the_table(model: str, bounds: tuple[float, float]) -> None:
    spec = parse_device(family_fields(model, w_min=bounds[0], w_max=bounds[1], gamma=0.7))
    w = torch.linspace(bounds[0] * 0.95, bounds[1] * 0.95, 9, dtype=torch.float64)
    up, down = raw_response(spec, w, torch.tensor(bounds[0]), torch.tensor(bounds[1]))
    for i, wi in enumerate(w.tolist()):
        ref_up, ref_down = ref_response(model, wi, *bounds, 0.7)
        assert up[i].item() == pytest.approx(ref_up, rel=1e-9, abs=1e-12)
        assert down[i].item() == pytest.approx(ref_down, rel=1e-9, abs=1e-12)


def test_F_and_G_from_q_plus_and_q_minus() -> None:
    """For soft bounds with +-tau: F = 1 and G = w / tau (section 3)."""
    tau = 0.8
    spec = parse_device(model="softbounds", w_min=-tau, w_max=tau)
    w = torch.linspace(-0.7, 0.7, 11, dtype=torch.float64)
    up, down = raw_response(spec, w, torch.tensor(-tau), torch.tensor(tau))
    f, g = symmetric_parts(up, down)
    torch.testing.assert_close(f, torch.ones_like(w))
    torch.testing.assert_close(g, w / tau)
    torch.testing.assert_close(f, (down + up) / 2)
    torch.testing.assert_close(g, (down - up) / 2)


@pytest.mark.parametrize("model", ["softbounds", "linear", "power", "exp", "exp_step"])
def test_expected_update_equals_the_F_G_rule(model: str, gen: torch.Generator) -> None:
    dev = make_device((5, 6), **family_fields(model, gamma=0.6, up_down=0.1))
    w = torch.rand(5, 6, generator=gen) * 1.6 - 0.8
    delta = (torch.rand(5, 6, generator=gen) - 0.5) * 0.2
    q_up, q_down = dev.response(w)
    f, g = symmetric_parts(q_up, q_down)
    reference = (w + delta * f - delta.abs() * g).clamp(-1, 1)
    torch.testing.assert_close(expected_after(dev, w, delta, gen), reference)


def test_linear_device_F_G_rule_pulls_towards_the_symmetric_point() -> None:
    """W - lr*g - (lr/tau)*|g|*W for the soft-bounds device with +-tau (section 3)."""
    tau, lr = 1.0, 0.1
    dev = make_device((1, 3), model="softbounds", w_min=-tau, w_max=tau)
    w = torch.tensor([[0.5, -0.5, 0.0]])
    grad = torch.tensor([[0.3, -0.2, 0.4]])
    expected = w - lr * grad - (lr / tau) * grad.abs() * w
    torch.testing.assert_close(expected_after(dev, w, -lr * grad, torch.Generator()), expected)


def test_ideal_device_expected_update_is_exact_sgd(gen: torch.Generator) -> None:
    dev = make_device((3, 3), model="ideal")
    w = torch.randn(3, 3, generator=gen) * 2  # even outside the nominal range: no bounds
    delta = torch.randn(3, 3, generator=gen)
    torch.testing.assert_close(expected_after(dev, w, delta, gen), w + delta)


@pytest.mark.parametrize("model", ["linear", "softbounds"])
def test_n_pulses_closed_form_equals_one_pulse_at_a_time(model: str) -> None:
    dev = make_device((1, 4), **family_fields(model, gamma=0.4, gamma_down=0.9, states=50))
    w0 = torch.tensor([[-0.6, -0.1, 0.2, 0.7]], dtype=torch.float64)
    n = torch.tensor([[0.0, 3.0, 7.0, 12.0]], dtype=torch.float64)
    zero = torch.zeros_like(n)
    g = torch.Generator()
    for up in (True, False):
        w_loop = w0.clone()
        for k in range(int(n.max())):
            one = (n > k).double()
            w_loop = (
                pulsed_after(dev, w_loop, one, zero, g)
                if up
                else pulsed_after(dev, w_loop, zero, one, g)
            )
        w_closed = pulsed_after(dev, w0, n, zero, g) if up else pulsed_after(dev, w0, zero, n, g)
        torch.testing.assert_close(w_closed, w_loop)


def test_softbounds_closed_form_of_n_up_pulses() -> None:
    """w_n = w_max - (w_max - w)(1 - dw_min/w_max)^n (section 4)."""
    dev = make_device((1, 1), model="softbounds", w_min=-1, w_max=1, states=100)
    dw = 0.02
    w = torch.tensor([[0.3]], dtype=torch.float64)
    for n in (1, 5, 40):
        out = pulsed_after(dev, w, torch.full_like(w, n), torch.zeros_like(w), torch.Generator())
        assert out.item() == pytest.approx(1 - (1 - 0.3) * (1 - dw / 1) ** n, rel=1e-6)


@pytest.mark.parametrize("model", ["power", "exp", "exp_step"])
def test_pulses_one_at_a_time_are_exact_up_to_the_step_limit(model: str) -> None:
    dev = make_device((1, 3), **family_fields(model, gamma=2.0, states=40))
    w0 = torch.tensor([[-0.5, 0.0, 0.6]], dtype=torch.float64)
    n = torch.tensor([[2.0, MAX_INTERLEAVED_STEPS, 9.0]], dtype=torch.float64)
    zero = torch.zeros_like(n)
    w_loop = w0.clone()
    for k in range(MAX_INTERLEAVED_STEPS):
        w_loop = pulsed_after(dev, w_loop, (n > k).double(), zero, torch.Generator())
    torch.testing.assert_close(pulsed_after(dev, w0, n, zero, torch.Generator()), w_loop)


@pytest.mark.parametrize("model", ["constant_step", "softbounds", "linear", "power", "exp"])
def test_saturation_at_the_bounds(model: str) -> None:
    dev = make_device((1, 2), **family_fields(model, gamma=0.5, states=20, w_min=-0.75, w_max=1.25))
    w = torch.tensor([[0.0, 1.0]])
    many = torch.full_like(w, 10_000)
    up = pulsed_after(dev, w, many, torch.zeros_like(w), torch.Generator())
    down = pulsed_after(dev, w, torch.zeros_like(w), many, torch.Generator())
    assert (up <= 1.25 + 1e-6).all() and (down >= -0.75 - 1e-6).all()
    if model in ("constant_step", "linear"):  # these reach the bound exactly
        torch.testing.assert_close(up, torch.full_like(w, 1.25))
        torch.testing.assert_close(down, torch.full_like(w, -0.75))
    else:  # soft devices approach it: the step vanishes there
        assert (up > 1.2).all() and (down < -0.7).all()


def test_ideal_device_has_no_bounds() -> None:
    dev = make_device((1, 1), model="ideal", states=10)
    w = torch.tensor([[0.9]])
    out = pulsed_after(dev, w, torch.full_like(w, 5), torch.zeros_like(w), torch.Generator())
    assert out.item() == pytest.approx(0.9 + 5 * 0.2)


@pytest.mark.parametrize(("up_down", "up_step", "down_step"), [(0.3, 1.0, 0.7), (-0.3, 0.7, 1.0)])
def test_up_down_asymmetry(up_down: float, up_step: float, down_step: float) -> None:
    """up_down > 0: down step dw(1 - up_down); up_down < 0: up step dw(1 + up_down)."""
    dev = make_device((1, 1), model="constant_step", states=100, up_down=up_down)
    w = torch.zeros(1, 1, dtype=torch.float64)
    one, zero = torch.ones_like(w), torch.zeros_like(w)
    g = torch.Generator()
    assert pulsed_after(dev, w, one, zero, g).item() == pytest.approx(0.02 * up_step)
    assert pulsed_after(dev, w, zero, one, g).item() == pytest.approx(-0.02 * down_step)


def test_d2d_variation_is_drawn_once_with_the_stated_spread() -> None:
    d2d = 0.2
    dev = make_device((200, 200), model="softbounds", d2d_variation=d2d, w_min=-0.8, w_max=1.2)
    assert dev.step_up.std().item() == pytest.approx(d2d, rel=0.05)
    assert dev.step_up.mean().item() == pytest.approx(1.0, abs=0.01)
    assert (dev.w_max.std() / 1.2).item() == pytest.approx(d2d, rel=0.05)
    assert (dev.w_min.std() / 0.8).item() == pytest.approx(d2d, rel=0.05)
    assert not torch.equal(dev.w_max / 1.2, dev.w_min / -0.8)  # independent draws
    again = make_device((200, 200), model="softbounds", d2d_variation=d2d, w_min=-0.8, w_max=1.2)
    torch.testing.assert_close(dev.step_up, again.step_up)  # a seeded, one-time draw
    torch.testing.assert_close(dev.step_up, dev.step_down)  # up_down = 0: same step


def test_d2d_distribution_follows_aihwkit() -> None:
    """Steps dw_min*|1 + d2d xi +- r| (one gain for both directions, r ~ N(0, d2d_up_down^2)
    antisymmetric), bounds with their own spreads, linear slopes |gamma + d2d_gamma xi|."""
    dev = make_device(
        (300, 300),
        model="linear",
        gamma=0.3,
        gamma_down=0.6,
        up_down=0.1,
        d2d_variation=0.1,
        d2d_w_min=0.3,
        d2d_w_max=0.05,
        d2d_up_down=0.04,
        d2d_gamma=0.02,
    )
    gain = (dev.step_up + dev.step_down) / 2  # = 1 + d2d xi - up_down/2
    r = (dev.step_up - dev.step_down) / 2  # = r + up_down/2
    assert gain.mean().item() == pytest.approx(0.95, abs=0.002)
    assert gain.std().item() == pytest.approx(0.1, rel=0.03)
    assert r.mean().item() == pytest.approx(0.05, abs=0.001)
    assert r.std().item() == pytest.approx(0.04, rel=0.03)
    assert (dev.w_max.mean().item(), dev.w_min.mean().item()) == pytest.approx(
        (1.0, -1.0), abs=0.01
    )
    assert dev.w_max.std().item() == pytest.approx(0.05, rel=0.03)
    assert dev.w_min.std().item() == pytest.approx(0.3, rel=0.03)
    assert dev.slope_up.mean().item() == pytest.approx(0.3, abs=0.001)
    assert dev.slope_down.std().item() == pytest.approx(0.02, rel=0.03)
    # negative draws are reflected (aihwkit's enforce_consistency): bounds keep their sign
    wide = make_device((300, 300), model="softbounds", d2d_w_min=0.5, d2d_w_max=0.5)
    assert (wide.w_max > 0).all() and (wide.w_min < 0).all()


@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_cycle_to_cycle_noise_per_pulse(mode: str) -> None:
    """One pulse: std of the change is sigma*dw_min (additive) or sigma*dw_min*q (mult.)."""
    sigma = 0.5
    dev = make_device((300, 300), model="softbounds", states=200, c2c_noise=sigma, c2c_mode=mode)
    w = torch.full((300, 300), 0.5, dtype=torch.float64)
    out = pulsed_after(dev, w, torch.ones_like(w), torch.zeros_like(w), torch.Generator())
    change = out - w
    dw, q = 0.01, 0.5
    assert change.mean().item() == pytest.approx(dw * q, rel=0.02)
    expected_std = sigma * dw if mode == "additive" else sigma * dw * q
    assert change.std().item() == pytest.approx(expected_std, rel=0.02)


def test_symmetric_points() -> None:
    # soft bounds with up_down u: (1 - w/w_max) = (1 - u)(1 - w/w_min)
    u, lo, hi = 0.2, -0.75, 1.25
    dev = make_device((1, 1), model="softbounds", w_min=lo, w_max=hi, up_down=u)
    expected = u / (1 / hi - (1 - u) / lo)
    assert dev.symmetric_point().item() == pytest.approx(expected, abs=1e-6)
    # power device: equal distances to both bounds
    dev = make_device((1, 1), model="power", w_min=lo, w_max=hi, gamma=2.0)
    assert dev.symmetric_point().item() == pytest.approx((lo + hi) / 2, abs=1e-6)
    # linear and exp with symmetric bounds: 0
    for model in ("linear", "exp"):
        assert make_device((1, 1), model=model).symmetric_point().item() == pytest.approx(
            0.0, abs=1e-6
        )
    # exp_step: G vanishes at the point found
    dev = make_device((1, 1), model="exp_step")
    p = dev.symmetric_point()
    q_up, q_down = dev.response(p)
    assert (q_down - q_up).abs().item() < 1e-5
    # constant steps: G = 0 everywhere (point 0); with asymmetry there is none (NaN)
    assert make_device((1, 1), model="constant_step").symmetric_point().item() == 0.0
    assert math.isnan(make_device((1, 1), model="constant_step", up_down=0.1).symmetric_point())


NOISE_CASES = [  # (device fields, |dW| in units of dw_min, sign of dW)
    ({"model": "softbounds"}, 0.3, 1.0),
    ({"model": "softbounds"}, 2.5, -1.0),
    ({"model": "softbounds", "up_down": 0.5}, 0.7, -1.0),  # down step halved
    ({"model": "linear", "gamma": 0.3, "up_down": -0.4}, 1.6, 1.0),  # up step 0.6
    ({"model": "softbounds", "d2d_variation": 0.3}, 1.3, -1.0),  # per-element steps
    ({"model": "power", "gamma": 2.0}, 0.4, 1.0),
]


@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
@pytest.mark.parametrize(("fields", "size", "sign"), NOISE_CASES)
def test_expected_noise_has_the_variance_of_its_pulses(
    mode: str, fields: dict, size: float, sign: float
) -> None:
    """The expected rule's c2c noise variance equals that of the pulses it stands for.

    Reference: n = stochastic_round(|dW|/dw_min) pulses applied one by one through the
    pulse path, their noise isolated by applying the same counts without c2c noise.
    Mean square over 10^5 elements, within 5%.
    """
    shape, sigma = (400, 250), 0.8
    noisy = make_device(shape, states=200, c2c_noise=sigma, c2c_mode=mode, **fields)
    clean = make_device(shape, states=200, **fields)  # same seed: same d2d draws
    g = torch.Generator().manual_seed(3)
    w = torch.empty(shape).uniform_(-0.5, 0.5, generator=g)
    delta = torch.full(shape, sign * size * noisy.dw_min)
    expected_noise = expected_after(noisy, w, delta, g) - expected_after(clean, w, delta, g)
    n = torch.floor(size + torch.rand(shape, generator=g))  # stochastic rounding of |dW|/dw_min
    up, down = (n, torch.zeros_like(n)) if sign > 0 else (torch.zeros_like(n), n)
    pulse_noise = pulsed_after(noisy, w, up, down, g) - pulsed_after(clean, w, up, down, g)
    ratio = expected_noise.square().mean() / pulse_noise.square().mean()
    assert ratio.item() == pytest.approx(1.0, abs=0.05)


def _random_order_reference(
    w: float, n_up: int, n_down: int, lo: float, hi: float, dw: float, rng: random.Random
) -> float:
    """Constant steps applied one pulse at a time in a uniformly random order, clipped."""
    signs = [1] * n_up + [-1] * n_down
    rng.shuffle(signs)
    for s in signs:
        w = min(max(w + s * dw, lo), hi)
    return w


@pytest.mark.parametrize("start", ["w_max", "w_min"])
def test_mixed_pulses_at_a_bound_follow_a_random_order(start: str) -> None:
    """Up and down pulses of one update arrive interleaved, not all up pulses first: at a
    bound the mean drift per update matches a random-order reference within 0.1 dw_min
    (all-up-first drifted by about -1.5 dw_min per update at w_max)."""
    shape, dw = (100, 100), 0.01
    dev = make_device(shape, model="constant_step", states=200)
    g = torch.Generator().manual_seed(5)
    bound = 1.0 if start == "w_max" else -1.0
    w = torch.full(shape, bound, dtype=torch.float64)
    n_up = torch.randint(0, 5, shape, generator=g).double()
    n_down = torch.randint(0, 5, shape, generator=g).double()
    drift = float((pulsed_after(dev, w, n_up, n_down, g) - w).mean()) / dw
    rng = random.Random(0)
    ref = [
        _random_order_reference(bound, int(u), int(d), -1.0, 1.0, dw, rng) - bound
        for u, d in zip(n_up.flatten().tolist(), n_down.flatten().tolist(), strict=True)
    ]
    ref_drift = sum(ref) / len(ref) / dw
    assert abs(drift - ref_drift) < 0.1, (drift, ref_drift)


@pytest.mark.parametrize("model", ["softbounds", "linear", "exp_step", "power"])
def test_extreme_d2d_draws_keep_weights_finite(model: str) -> None:
    """Elements whose drawn bound lies within one step of 0 still give finite weights."""
    dev = make_device(
        (200, 200),
        **family_fields(
            model, states=8, gamma=1.0, d2d_variation=0.5, d2d_w_min=0.5, d2d_w_max=0.5
        ),
    )
    g = torch.Generator().manual_seed(0)
    w = torch.empty(200, 200).uniform_(-0.5, 0.5, generator=g)
    n = torch.randint(0, 40, (2, 200, 200), generator=g).float()
    out = pulsed_after(dev, w, n[0], n[1], g)
    assert torch.isfinite(out).all()
    assert (out <= dev.w_max + 1e-6).all() and (out >= dev.w_min - 1e-6).all()
    assert torch.isfinite(expected_after(dev, w, (n[0] - n[1]) * dev.dw_min, g)).all()


def _alternating_pulses(dev: Device, w: torch.Tensor, pairs: int) -> torch.Tensor:
    """The hardware procedure written out: one up, one down pulse, noise-free, clipped."""
    _, _, s_up, s_down = dev.params()
    for _ in range(pairs):
        w = dev.clip_(w + dev.dw_min * s_up * dev.raw(w)[0])
        w = dev.clip_(w - dev.dw_min * s_down * dev.raw(w)[1])
    return w


@pytest.mark.parametrize("preset", ["reram_es", "reram_sb", "ecram"])
def test_alternating_pulse_point_is_where_pulse_pairs_settle(preset: str) -> None:
    """The settle point (bisection on one pulse pair's move) equals what 20000
    alternating pulse pairs from 0 reach, within one step, d2d and all."""
    spec = parse_device(preset=preset)
    dev = Device(spec, (4, 5), generator=torch.Generator().manual_seed(0))
    driven = _alternating_pulses(dev, torch.zeros(4, 5), 20_000)
    assert (driven - dev.alternating_pulse_point()).abs().max().item() < dev.dw_min
    # and it is the symmetric point where the element has one (q+ = q- within a step)
    point = dev.symmetric_point()
    has = ~point.isnan()
    assert ((driven - point).abs()[has] < 5 * dev.dw_min).all()


def test_more_pulses_than_steps_are_all_applied() -> None:
    """Past MAX_INTERLEAVED_STEPS pulses a step applies several of one sign; none is lost
    (a device with q = 1 everywhere: the result is w + (n_up - n_down) dw_min)."""
    dev = make_device((1, 5), model="power", gamma=0.0, states=10_000)
    w = torch.zeros(1, 5, dtype=torch.float64)
    n_up = torch.tensor([[1.0, 3.0, 64.0, 200.0, 65.0]], dtype=torch.float64)
    n_down = torch.tensor([[127.0, 125.0, 65.0, 7.0, 0.0]], dtype=torch.float64)
    out = pulsed_after(dev, w, n_up, n_down, torch.Generator())
    torch.testing.assert_close(out, (n_up - n_down) * dev.dw_min)


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "softbounds"},
        {
            "model": "linear",
            "gamma": 0.1153,
            "gamma_down": 0.5085,
            "w_min": -0.8276,
            "w_max": 1.1724,
        },
        {"model": "softbounds", "d2d_variation": 0.2, "d2d_up_down": 0.05},
    ],
    ids=["softbounds", "ecram-shape", "softbounds-d2d"],
)
def test_closed_form_mean_matches_a_random_pulse_order(fields: dict) -> None:
    """Away from the bounds the closed form (ups, then downs, then the order term) has
    the mean of a uniformly random order, pulse by pulse: within 0.05 dw_min for 30 up and
    30 down pulses (up pulses first alone was 1.7 dw_min low on soft bounds)."""
    dev = make_device((100, 100), dw_min=0.002, **fields)
    g = torch.Generator().manual_seed(0)
    w = torch.zeros(100, 100, dtype=torch.float64)
    n = torch.full_like(w, 30.0)
    closed = pulsed_after(dev, w, n, n, g)
    one_by_one = replay.interleaved(dev, w.clone(), n, n, None, g)
    assert abs(float((closed - one_by_one).mean())) < 0.05 * dev.dw_min


def test_a_device_without_slopes_has_its_reference_at_zero() -> None:
    """Pulse pairs do not move a constant-step-like device (gamma 0): P stays at 0."""
    for fields in ({"model": "linear", "gamma": 0.0}, {"model": "constant_step"}):
        point = make_device((2, 2), **fields).alternating_pulse_point()
        assert torch.equal(point, torch.zeros(2, 2))


def test_every_family_of_the_spec_has_a_response_in_the_engine() -> None:
    """A family is a spec model (aimc_spec/devices/) and an engine entry (FAMILIES): one
    without the other would pass validation and fail at run time, or never be reachable."""
    assert set(FAMILIES) == set(DEVICE_MODELS)
    for model in DEVICE_MODELS:
        assert make_device((2, 2), model=model).family.name == model
