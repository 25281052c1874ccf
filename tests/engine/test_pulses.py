"""Pulsed and rounded updates (analog-model.md section 4)."""

from __future__ import annotations

import pytest
import torch

from aimc_engine.pulses import LazyRows, pulse_train_counts, rounded_counts
from aimc_engine.tiles import AnalogTile, TileConfig
from aimc_spec.spec import AnalogSpec
from tests.conftest import expected_after

X = torch.tensor([[0.9, -0.4, 0.1], [0.2, 0.5, -0.7]])  # (N=2, in=3)
D = torch.tensor([[0.05, -0.02, 0.01, 0.0], [-0.03, 0.04, 0.02, -0.01]])  # (N=2, out=4)


@pytest.mark.parametrize("management", [True, False])
def test_mean_pulse_count_gives_minus_lr_d_x(management: bool) -> None:
    """E[(n_up - n_down) * dw_min] = -lr * d^T x, within 5 standard errors."""
    # lr small enough that no firing probability is clipped at 1 without management
    lr, dw_min, trials = (0.5 if management else 0.01), 0.001, 3000
    gen = torch.Generator().manual_seed(0)
    nets = (
        torch.stack(
            [
                torch.sub(
                    *pulse_train_counts(
                        X,
                        D,
                        lr=lr,
                        dw_min=dw_min,
                        bit_length=31,
                        update_management=management,
                        generator=gen,
                    )
                )
                for _ in range(trials)
            ]
        )
        * dw_min
    )
    target = -lr * D.T @ X
    err = (nets.mean(0) - target).abs()
    stderr = nets.std(0) / trials**0.5
    assert (err <= 5 * stderr + 1e-9).all(), (err, stderr)


def test_pulse_counts_are_whole_and_bounded_by_bit_length() -> None:
    gen = torch.Generator().manual_seed(0)
    n_up, n_down = pulse_train_counts(
        X * 10, D * 10, lr=1.0, dw_min=1e-4, bit_length=7, update_management=False, generator=gen
    )
    for n in (n_up, n_down):
        assert torch.equal(n, n.round()) and (n >= 0).all()
    assert ((n_up + n_down) <= 7 * len(X)).all()  # at most BL coincidences per sample


def test_zero_signal_gives_no_pulses() -> None:
    gen = torch.Generator()
    n_up, n_down = pulse_train_counts(
        torch.zeros(2, 3),
        D,
        lr=0.1,
        dw_min=0.01,
        bit_length=31,
        update_management=True,
        generator=gen,
    )
    assert n_up.sum() == 0 and n_down.sum() == 0


def test_rounded_counts_are_unbiased() -> None:
    delta = torch.tensor([[0.0123, -0.0371, 0.0004]]).repeat(20000, 1)
    n_up, n_down = rounded_counts(
        delta.clone(), dw_min=0.01, generator=torch.Generator().manual_seed(0)
    )
    mean = (n_up - n_down).mean(0) * 0.01
    torch.testing.assert_close(mean, delta[0], atol=3e-4, rtol=0)
    assert set(torch.unique(n_up[:, 0]).tolist()) == {1.0, 2.0}  # floor or ceil of 1.23


def _pulsed_vs_expected(states: float, trials: int = 400) -> tuple[float, float]:
    """(gap of the mean, RMS gap of one update) between pulsed updates and the F/G rule,
    relative to the size of the change, for one sample on a soft-bounds tile."""
    analog = AnalogSpec(
        device={"model": "softbounds", "states": states}, update="pulsed", bit_length=31
    )
    gen = torch.Generator().manual_seed(0)
    tile = AnalogTile(4, 3, TileConfig(analog, gen, gen))
    w0 = torch.tensor([[0.8, -0.6, 0.1]] * 4)
    x, d, lr = X[:1], D[:1], 0.2
    expected = expected_after(tile.device_model, w0, -lr * d.T @ x, gen)
    size = (expected - w0).abs().sum()
    outcomes = []
    for _ in range(trials):
        tile.weight = w0.clone()
        tile.update(x, d, lr)
        outcomes.append(tile.weight)
    runs = torch.stack(outcomes)
    mean_gap = (runs.mean(0) - expected).abs().sum() / size
    rms_gap = (runs - expected).square().sum((1, 2)).mean().sqrt() / size * 12**0.5
    return float(mean_gap), float(rms_gap)


def test_pulsed_update_approaches_the_expected_rule_as_dw_min_shrinks() -> None:
    """In the mean the pulse train follows the F/G rule at any step size; one update's
    deviation from it shrinks like sqrt(dw_min) (30 -> 3000 states: about 10x)."""
    _, coarse_rms = _pulsed_vs_expected(30)
    fine_mean, fine_rms = _pulsed_vs_expected(3000)
    assert fine_mean < 0.03
    assert fine_rms < coarse_rms / 5


def test_update_management_is_per_sample() -> None:
    """aihwkit's per-vector rule: one sample's large |x| or |d| does not clip another's
    probabilities. With batch maxima this case delivered 0.72 of the target."""
    x = torch.tensor([[1.0], [0.05]])
    d = torch.tensor([[0.01], [0.5]])
    lr, dw_min, copies = 0.2, 1 / 600, 10_000
    gen = torch.Generator().manual_seed(0)
    # 10^4 copies of the pair in one batch, 4 times: 4 * 10^4 independent draws of each sample
    total = 0.0
    for _ in range(4):
        n_up, n_down = pulse_train_counts(
            x.repeat(copies, 1),
            d.repeat(copies, 1),
            lr=lr,
            dw_min=dw_min,
            bit_length=31,
            update_management=True,
            generator=gen,
        )
        total += float(n_up - n_down)
    mean = total / (4 * copies) * dw_min
    target = float(-lr * d.T @ x)
    assert abs(mean / target - 1) < 0.01, mean / target


def test_update_management_caps_each_samples_bit_length() -> None:
    """BL_n = ceil(lr max|x_n| max|d_n| / dw_min): a sample needing 2 slots makes at most 2
    coincidences per element, whatever the other samples need."""
    x = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    d = torch.tensor([[0.01], [0.5]])
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        n_up, n_down = pulse_train_counts(
            x, d, lr=0.2, dw_min=1 / 600, bit_length=31, update_management=True, generator=gen
        )
        assert float((n_up + n_down).max()) <= 2


def test_saturated_update_management_clips_the_error_side() -> None:
    """A sample needing k > BL slots: aihwkit keeps max|x| at probability 1 and clips d.
    Here k = 4 BL: the element with a quarter of max|d| gets its full target, the largest
    one a quarter of it."""
    x, d = torch.tensor([[1.0]]), torch.tensor([[0.5, 0.125]])
    dw_min, bl = 0.001, 31
    lr = 4 * bl * dw_min / 0.5  # k = lr * 1 * 0.5 / dw_min = 4 BL
    n_up, n_down = pulse_train_counts(
        x.repeat(4000, 1),
        d.repeat(4000, 1),
        lr=lr,
        dw_min=dw_min,
        bit_length=bl,
        update_management=True,
        generator=torch.Generator().manual_seed(0),
    )
    got = (n_down - n_up).flatten() / 4000 * dw_min  # all pulses go down: x, d > 0
    target = lr * d.flatten()
    torch.testing.assert_close(got / target, torch.tensor([0.25, 1.0]), atol=0.01, rtol=0)


def test_exp_step_pulse_trains_use_aihwkits_granularity() -> None:
    """reram_es: update management counts pulses in units of the down step at w = 0
    (aihwkit's weight granularity, 1.99e-3, not dw_min 1.35e-3), so a down update from
    w = 0 moves the weights by -lr d x in the mean (with dw_min: 1.47 times that)."""
    analog = AnalogSpec(device={"preset": "reram_es"}, update="pulsed")
    gen = torch.Generator().manual_seed(0)
    tile = AnalogTile(100, 100, TileConfig(analog, gen, gen))
    assert tile.device_model.granularity == pytest.approx(1.991e-3, rel=1e-3)
    # 200 samples with dW = -0.1 * 0.05 / 200 each: -0.005 in all, from independent trains;
    # 2 10^5 element updates: the c2c noise (5 steps per pulse) leaves 0.7% on the mean
    x, d = torch.ones(200, 100), torch.full((200, 100), 0.05 / 200)
    moves = []
    for _ in range(20):
        tile.set_weights(torch.zeros(100, 100))
        tile.update(x, d, 0.1)
        moves.append(float(tile.state.mean()))
    assert sum(moves) / len(moves) == pytest.approx(-0.005, rel=0.03)


@pytest.mark.parametrize("management", [True, False])
def test_lazy_rows_give_the_counts_of_the_rows(management: bool) -> None:
    """Rows handed over as LazyRows (cut only where pulses fire) give the same counts as
    the rows themselves, draw for draw, also with samples that make no pulse."""
    g = torch.Generator().manual_seed(0)
    x, d = torch.randn(40, 6, generator=g), torch.randn(40, 5, generator=g) * 0.05
    x[3], d[7] = 0.0, 0.0  # inactive samples
    taken: list[int] = []

    def take(rows: torch.Tensor) -> torch.Tensor:
        taken.append(len(rows))
        return x[rows]

    lazy = LazyRows(x.abs().amax(1), take, 6)
    kw = {"lr": 0.5, "dw_min": 0.01, "bit_length": 5, "update_management": management}
    ours = pulse_train_counts(lazy, d, generator=torch.Generator().manual_seed(1), **kw)
    theirs = pulse_train_counts(x, d, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert ours[0].sum() + ours[1].sum() > 0 and len(taken) == 1


def test_no_error_pulse_fired_gives_no_pulses() -> None:
    """When no slot fires an error pulse no input row is cut at all."""
    x, d = torch.rand(30, 6), torch.full((30, 5), 1e-9)

    def take(rows: torch.Tensor) -> torch.Tensor:
        raise AssertionError("no row should be cut")

    n_up, n_down = pulse_train_counts(
        LazyRows(x.amax(1), take, 6),
        d,
        lr=0.01,
        dw_min=0.01,
        bit_length=31,
        update_management=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(n_up, torch.zeros(5, 6)) and torch.equal(n_down, torch.zeros(5, 6))
