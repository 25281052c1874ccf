"""The families with every field of their aihwkit 1.2 class (exp_step_noise for pcm,
softbounds_reference for the ReRAM arrays): their device-to-device draws, ExpStep's
complex cycle-to-cycle noise, and a short training run of each new preset.

References are aihwkit 1.2.0's C++: PulsedRPUDevice::populate (rpu_pulsed_device.cpp)
for the d2d draws, SoftBoundsReferenceRPUDevice::populate
(rpu_softbounds_reference_device.cpp) for slopes and reference, and
update_once_complex_noise (rpu_expstep_device.cpp) for the noise:
dw_std = dw_min_std (|dw| + dw_min_std_add + dw_min_std_slope |w|).
"""

from __future__ import annotations

import math

import pytest
import torch

from aimc_engine.runner import Callbacks, run
from aimc_spec.spec import parse_spec
from tests.conftest import expected_after, make_device, pulsed_after

SHAPE = (400, 250)  # 10^5 elements: spreads within a few percent


def test_log_normal_gain_and_bounds_follow_populate() -> None:
    """gain = exp(dw_min_dtod xi) (dw_min_dtod_log_normal), r ~ N(0, up_down_dtod^2):
    scale_up = gain + r, scale_down = gain - r; bounds w (1 + w_dtod xi), reflected."""
    dev = make_device(
        SHAPE,
        model="softbounds_reference",
        d2d_variation=0.7829,
        d2d_log_normal=True,
        d2d_up_down=0.01,
        d2d_w_min=0.2,
        d2d_w_max=0.1,
    )
    gain = (dev.step_up + dev.step_down) / 2
    assert gain.log().mean().item() == pytest.approx(0.0, abs=0.01)
    assert gain.log().std().item() == pytest.approx(0.7829, rel=0.02)
    r = (dev.step_up - dev.step_down) / 2
    assert r.std().item() == pytest.approx(0.01, rel=0.02)
    assert dev.w_max.std().item() == pytest.approx(0.1, rel=0.02)
    assert dev.w_min.mean().item() == pytest.approx(-1.0, abs=0.005)
    assert dev.w_min.std().item() == pytest.approx(0.2, rel=0.02)
    assert torch.equal(dev.reference, torch.zeros(SHAPE))  # no reference asked for


def test_enforce_consistency_swaps_crossed_bounds_then_reflects() -> None:
    """With spreads of 1 a bound often crosses 0 or the other bound: aihwkit swaps crossed
    bounds, then takes w_max = |.|, w_min = -|.|; without it both become the midpoint.
    The raw draws are redrawn here from the same seed (populate.py: w_max's, then w_min's)."""
    kwargs = {"model": "softbounds_reference", "d2d_w_min": 1.0, "d2d_w_max": 1.0}
    on = make_device(SHAPE, **kwargs)
    off = make_device(SHAPE, enforce_consistency=False, **kwargs)
    g = torch.Generator().manual_seed(0)
    hi = 1.0 * (1 + torch.randn(SHAPE, generator=g))
    lo = -1.0 * (1 + torch.randn(SHAPE, generator=g))
    crossed = lo > hi
    # -1 - xi1 > 1 + xi2 when xi1 + xi2 < -2: P(N(0, 2) < -2) = 0.0786
    assert crossed.float().mean().item() == pytest.approx(0.0786, abs=0.004)
    torch.testing.assert_close(on.w_max, torch.where(crossed, lo, hi).abs())
    torch.testing.assert_close(on.w_min, -torch.where(crossed, hi, lo).abs())
    mid = hi + (lo - hi) / 2
    torch.testing.assert_close(off.w_max, torch.where(crossed, mid, hi))
    torch.testing.assert_close(off.w_min, torch.where(crossed, mid, lo))
    assert (off.w_max < 0).any() and (off.w_min > 0).any()  # not reflected


def test_corrupt_devices_are_stuck_inside_their_range() -> None:
    """A share corrupt_devices_prob of elements: both bounds one uniform value in
    [max(min bound, -range), min(max bound, range)], steps 0; nothing moves them."""
    dev = make_device(
        SHAPE, model="exp_step_noise", corrupt_devices_prob=0.1348, corrupt_devices_range=0.01
    )
    stuck = dev.w_min == dev.w_max
    assert stuck.float().mean().item() == pytest.approx(0.1348, abs=0.004)
    value = dev.w_max[stuck]
    assert value.abs().max().item() <= 0.01
    assert value.mean().item() == pytest.approx(0.0, abs=0.0005)
    assert value.std().item() == pytest.approx(0.02 / math.sqrt(12), rel=0.03)  # uniform
    assert (dev.step_up[stuck] == 0).all() and (dev.step_down[stuck] == 0).all()
    w = torch.where(stuck, dev.w_max, torch.zeros(SHAPE))
    n = torch.full(SHAPE, 3.0)
    after = pulsed_after(dev, w, n, n, torch.Generator().manual_seed(1))
    assert torch.equal(after[stuck], w[stuck]) and after.isfinite().all()


def test_reset_values_are_drawn_per_element() -> None:
    """w_reset_bias = reset + reset_dtod xi (additive); pcm: 0.01 + 0.02 xi."""
    dev = make_device(SHAPE, model="exp_step_noise", reset=0.01, d2d_reset=0.02)
    assert dev.reset_bias.mean().item() == pytest.approx(0.01, abs=0.0002)
    assert dev.reset_bias.std().item() == pytest.approx(0.02, rel=0.02)


def test_reference_and_slope_spreads_follow_softbounds_reference_populate() -> None:
    """b_max / |1 + slope_up_dtod xi|, b_min / |1 + slope_down_dtod xi|, and r =
    reference_mean + reference_std xi; the weight's bounds are b - r."""
    dev = make_device(
        SHAPE,
        model="softbounds_reference",
        d2d_slope_up=0.1,
        d2d_slope_down=0.2,
        reference_mean=0.1,
        reference_std=0.05,
    )
    r = dev.reference
    assert r.mean().item() == pytest.approx(0.1, abs=0.001)
    assert r.std().item() == pytest.approx(0.05, rel=0.02)
    assert (1 / (dev.w_max + r)).std().item() == pytest.approx(0.1, rel=0.02)
    assert (-1 / (dev.w_min + r)).std().item() == pytest.approx(0.2, rel=0.02)


@pytest.mark.parametrize("name", ["reram_array_om", "reram_array_hfo2"])
def test_subtracting_the_symmetry_point_puts_it_at_zero(name: str) -> None:
    """r includes each element's symmetry point (s_up - s_down) / (s_up / b_max - s_down /
    b_min), so at w = 0 its up and down steps balance, within the reference's spread."""
    spec = parse_spec({"analog": {"device": {"preset": name}}}).analog.device
    exact = spec.model_copy(update={"reference_std": 0.0})
    dev = make_device(SHAPE, **exact.model_dump(exclude={"preset"}))
    q_up, q_down = dev.response(torch.zeros(SHAPE))
    torch.testing.assert_close(q_up, q_down, rtol=1e-4, atol=1e-5)
    noisy = make_device(SHAPE, **spec.model_dump(exclude={"preset"}))
    shift = noisy.reference - dev.reference  # the same draws, plus N(0, 0.05^2)
    assert shift.std().item() == pytest.approx(0.05, rel=0.02)


@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_one_pulse_on_a_referenced_device(mode: str) -> None:
    """update_once_add / update_once_mult: the state g = w + r moves by dw_min (1 - g /
    b_max + sigma xi) or dw_min (1 - g / b_max)(1 + sigma xi); here r = 0.3, b_max = 1."""
    dev = make_device(
        SHAPE,
        model="softbounds_reference",
        dw_min=0.01,
        reference_mean=0.3,
        c2c_noise=0.4158,
        c2c_mode=mode,
        d2d_variation=0.0,
        d2d_up_down=0.0,
    )
    w = torch.full(SHAPE, 0.2, dtype=torch.float64)
    change = pulsed_after(dev, w, torch.ones(SHAPE), torch.zeros(SHAPE), torch.Generator()) - w
    q = 1 - (0.2 + 0.3) / 1.0
    assert change.mean().item() == pytest.approx(0.01 * q, rel=0.02)
    std = 0.4158 * 0.01 * (1.0 if mode == "additive" else q)
    assert change.std().item() == pytest.approx(std, rel=0.02)
    assert dev.w_max.max().item() == pytest.approx(1.0 - 0.3)  # the weight's bound is b - r


# pcm's values in aihwkit 1.2 (PCMPresetDevice): dw_min_std, dw_min_std_add, dw_min_std_slope
PCM_NOISE = {"c2c_noise": 0.6, "c2c_add": 0.042, "c2c_slope": 0.108, "c2c_mode": "multiplicative"}
PCM_SHAPE = {"A_up": -27.235, "A_down": -2.235, "gamma_up": 2.5, "gamma_down": 2.5, "a": -1.0}
PCM = {"model": "exp_step_noise", "w_min": 0.0, "w_max": 2.0, "dw_min": 0.01, "d2d_variation": 0}
PCM |= {"exp_step": PCM_SHAPE | {"b": 0.0}, **PCM_NOISE}


def pcm_q(w: float) -> tuple[float, float]:
    """ExpStep's y_up, y_down for pcm: z = 2 a w / (w_max - w_min) + b = -w."""
    z = -w
    return 1 + 27.235 * math.exp(2.5 * z), 1 + 2.235 * math.exp(-2.5 * z)


@pytest.mark.parametrize(
    ("w0", "up"), [(0.6, True), (1.0, True), (1.4, True), (0.2, False), (0.4, False), (0.6, False)]
)
def test_complex_noise_of_one_pulse(w0: float, up: bool) -> None:
    """One pulse at w: mean dw = +-0.01 y, std 0.6 (0.01 y + 0.042 + 0.108 |w|); w0 at
    least 4.5 std from the bound the pulse moves to (pcm's down step grows as e^{2.5 w})."""
    dev = make_device(SHAPE, **PCM)
    w = torch.full(SHAPE, w0, dtype=torch.float64)
    one, none = torch.ones(SHAPE), torch.zeros(SHAPE)
    n_up, n_down = (one, none) if up else (none, one)
    change = pulsed_after(dev, w, n_up, n_down, torch.Generator().manual_seed(2)) - w
    y = pcm_q(w0)[0 if up else 1]
    dw = 0.01 * y
    assert change.mean().item() == pytest.approx(dw if up else -dw, abs=0.01 * dw + 0.0006)
    assert change.std().item() == pytest.approx(0.6 * (dw + 0.042 + 0.108 * w0), rel=0.02)


def test_complex_noise_of_the_expected_update() -> None:
    """The mean-field step for n = |dW| / dw_min pulses carries n times one pulse's
    variance: std sqrt(n) 0.6 (0.01 y + 0.042 + 0.108 |w|)."""
    dev = make_device(SHAPE, **PCM)
    clean = make_device(SHAPE, **(PCM | {"c2c_noise": 0.0, "c2c_add": 0.0, "c2c_slope": 0.0}))
    w = torch.full(SHAPE, 1.0)
    n = 4
    delta = torch.full(SHAPE, n * 0.01)
    g = torch.Generator().manual_seed(4)
    noise = expected_after(dev, w, delta, g) - expected_after(clean, w, delta, g)
    per_pulse = 0.6 * (0.01 * pcm_q(1.0)[0] + 0.042 + 0.108)
    assert noise.std().item() == pytest.approx(math.sqrt(n) * per_pulse, rel=0.02)
    assert noise.mean().item() == pytest.approx(0.0, abs=0.003)


def test_without_complex_terms_the_noise_is_expsteps_multiplicative() -> None:
    """hasComplexNoise is off with dw_min_std_add = dw_min_std_slope = 0: update_once's
    y (1 + dw_min_std xi) dw_min."""
    plain = PCM | {"c2c_add": 0.0, "c2c_slope": 0.0}
    dev = make_device(SHAPE, **plain)
    assert dev.complex_noise is None
    w = torch.full(SHAPE, 1.0, dtype=torch.float64)
    change = pulsed_after(dev, w, torch.ones(SHAPE), torch.zeros(SHAPE), torch.Generator()) - w
    assert change.std().item() == pytest.approx(0.6 * 0.01 * pcm_q(1.0)[0], rel=0.02)


@pytest.mark.parametrize("model", ["exp_step_noise", "softbounds_reference"])
def test_the_fused_linear_kernels_are_not_used(model: str) -> None:
    """Curved families go through replay.py: no fused constants, the rounded mode counts."""
    dev = make_device((4, 3), model=model)
    assert dev._fused is None
    grad = torch.ones(4, 3)
    assert dev.rounded_update_(torch.zeros(4, 3), grad, 0.1, torch.Generator()) is None


SMALL = {"device": "cpu", "dataset": {"name": "digits"}, "model": {"hidden": [16]}}
SHORT = {"steps": 6, "micro_batch_size": 8, "eval_every": 3}


@pytest.mark.parametrize("name", ["pcm", "reram_array_om", "reram_array_hfo2"])
@pytest.mark.parametrize("update", ["pulsed", "expected"])
def test_a_short_run_of_each_new_preset_is_reproducible(name: str, update: str) -> None:
    data = {**SMALL, "analog": {"device": {"preset": name}, "update": update}, "training": SHORT}
    first = run(parse_spec(data)).metrics
    again = run(parse_spec(data)).metrics
    drop = {"wall_s"}
    strip = [{k: v for k, v in m.items() if k not in drop} for m in first]
    assert strip == [{k: v for k, v in m.items() if k not in drop} for m in again]
    assert len(first) == 3 and all(math.isfinite(m["train_loss"]) for m in first)
    assert first[-1]["samples"] == 48


@pytest.mark.parametrize("name", ["pcm", "reram_array_om"])
def test_a_run_resumed_from_its_checkpoint_ends_as_the_full_run(name: str) -> None:
    """A run of a new preset (its reference and reset buffers with the tiles) resumes to
    the same metrics."""
    data = {**SMALL, "analog": {"device": {"preset": name}, "update": "pulsed"}, "training": SHORT}
    blobs: list[bytes] = []
    full = run(parse_spec(data), Callbacks(on_checkpoint=blobs.append, checkpoint_every=3))
    resumed = run(parse_spec(data), resume=blobs[0])
    drop = {"wall_s"}
    strip = [{k: v for k, v in m.items() if k not in drop} for m in full.metrics]
    assert strip == [{k: v for k, v in m.items() if k not in drop} for m in resumed.metrics]
