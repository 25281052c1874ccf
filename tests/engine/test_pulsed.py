"""The whole pulsed update of a tile (pulsed.py, pulsed_curve.py): the C kernels equal
the torch ops, and both keep the physics of the step-by-step path (devices/)."""

from __future__ import annotations

import random

import pytest
import torch

from aimc_engine import fused, native, pulsed, pulsed_curve
from aimc_engine.devices import FAMILIES, LINEAR_FAMILY, Device
from aimc_engine.pulses import pulse_train_counts
from aimc_engine.rng import normal_at, normal_pair_at
from aimc_spec.presets import PRESETS
from aimc_spec.spec import parse_device
from tests.conftest import family_fields, make_device

SHAPE = (64, 96)
# the presets of the linear family, the one-call pulsed update's (aimc_engine/pulsed.py)
LINEAR_PRESETS = [name for name, fields in PRESETS.items() if fields["model"] in LINEAR_FAMILY]
# the presets of the curved families (pulsed_curve.py), and the families no preset has
CURVED_PRESETS = [name for name, fields in PRESETS.items() if fields["model"] not in LINEAR_FAMILY]
CURVED_ONLY = ("power", "exp")


def preset_device(name: str, seed: int = 0) -> Device:
    return Device(parse_device(PRESETS[name]), SHAPE, generator=torch.Generator().manual_seed(seed))


def rows(seed: int = 0, samples: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(samples, SHAPE[1], generator=g) * 2 - 1
    x[0] = 0.0  # a sample with nothing to fire
    return x, torch.randn(samples, SHAPE[0], generator=g) * 0.05


def run(
    dev: Device, path: str, managed: bool, monkeypatch: pytest.MonkeyPatch, write: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(state after, read weights after or None, state before) of one pulsed update."""
    monkeypatch.setenv(fused.ENV, "1" if path == "c" else "0")
    g = torch.Generator().manual_seed(3)
    start = dev.clip_(torch.rand(SHAPE, generator=g) * 1.6 - 0.8)  # some near a bound
    state = start.clone()
    weight = state + 0.01 if write else None
    x, d = rows()
    how = pulsed.PulsedUpdate(0.1, 31, managed, weight, write)
    pulsed.pulsed_update_(dev, state, x, d, how, torch.Generator().manual_seed(4))
    return state, weight, start


@pytest.mark.parametrize("managed", [True, False])
@pytest.mark.parametrize("name", LINEAR_PRESETS)
def test_c_kernel_equals_the_torch_ops(
    name: str, managed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same numbers up to the last bit of log, cos, expm1 (a few float32 ulps), write
    noise included; most elements move."""
    if native.library() is None:
        pytest.skip("no C compiler: the C kernels cannot be built here")
    write = 0.05
    ours, our_w, start = run(preset_device(name), "c", managed, monkeypatch, write)
    theirs, their_w, _ = run(preset_device(name), "torch", managed, monkeypatch, write)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=3e-7)
    assert our_w is not None and their_w is not None
    torch.testing.assert_close(our_w, their_w, rtol=0, atol=3e-7)
    assert (ours != start).float().mean() > 0.2


def curved_device(case: str) -> Device:
    """A curved preset's device, or a family's with noise, d2d and asymmetry on."""
    if case in PRESETS:
        return preset_device(case)
    fields = family_fields(case, c2c_noise=0.2, d2d_variation=0.1, up_down=0.05, gamma=2.0)
    return Device(parse_device(fields), SHAPE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("managed", [True, False])
@pytest.mark.parametrize("case", [*CURVED_PRESETS, *CURVED_ONLY])
def test_curved_c_kernel_equals_the_torch_ops(
    case: str, managed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A curved family's update (pulsed_curve.py): the same numbers up to the last bit of
    exp, pow, log, cos, write noise included; elements move."""
    if native.library() is None:
        pytest.skip("no C compiler: the C kernels cannot be built here")
    ours, our_w, start = run(curved_device(case), "c", managed, monkeypatch, 0.05)
    theirs, their_w, _ = run(curved_device(case), "torch", managed, monkeypatch, 0.05)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=3e-7)
    assert our_w is not None and their_w is not None
    torch.testing.assert_close(our_w, their_w, rtol=0, atol=3e-7)
    assert (ours != start).float().mean() > 0.03


def test_every_family_has_a_whole_tile_update() -> None:
    """A family is either the linear family's closed form or a curved one of
    pulsed_curve.py: a new family cannot fall through to no update."""
    closed = {name for name, f in FAMILIES.items() if f.closed_form}
    assert closed | set(pulsed_curve.FAMILY_IDS) == set(FAMILIES)
    assert not closed & set(pulsed_curve.FAMILY_IDS)


@pytest.mark.parametrize("path", ["c", "torch"])
@pytest.mark.parametrize("case", [*CURVED_PRESETS, *CURVED_ONLY])
def test_pulses_of_one_sign_follow_the_response_pulse_by_pulse(
    case: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without noise and with pulses of one sign only, the order cannot matter: each
    element ends where its response, read again before every pulse, takes it (a plain
    loop in float64 here)."""
    if path == "c" and native.library() is None:
        pytest.skip("no C compiler: the C kernels cannot be built here")
    monkeypatch.setenv(fused.ENV, "1" if path == "c" else "0")
    fields = dict(PRESETS[case]) if case in PRESETS else family_fields(case, gamma=2.0)
    fields = {k: v for k, v in fields.items() if k not in ("c2c_add", "c2c_slope")}
    fields |= {"c2c_noise": 0.0}  # (pcm's complex noise scales c2c_noise: gone with it)
    dev = Device(parse_device(fields), SHAPE, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(6)
    start = dev.clip_(torch.rand(SHAPE, generator=g) * 1.6 - 0.8)
    n = torch.randint(0, 30, SHAPE, generator=g).float()
    for up in (True, False):
        n_up, n_down = (n, torch.zeros(SHAPE)) if up else (torch.zeros(SHAPE), n)
        state = start.clone()
        keys = torch.randint(0, 2**32, (6,), generator=g)
        how = pulsed.PulsedUpdate(0.1, 31, True, None, 0.0)
        pulsed.apply_counts_(dev, state, n_up, n_down, how, keys)
        w = start.double()
        for k in range(int(n.max())):
            q_up, q_down = (q.double() for q in dev.response(w.float()))
            step = dev.dw_min * (q_up if up else -q_down)
            w = torch.where(n > k, w + step, w).clamp(dev.w_min.double(), dev.w_max.double())
        torch.testing.assert_close(state.double(), w, rtol=0, atol=2e-5)
        assert (state != start).float().mean() > 0.3


def test_lazy_rows_and_rows_give_the_same_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """A convolution's lazy rows take the counts' kernels, then the same apply: the rows
    as a tensor give the very same weights."""
    from aimc_engine.pulses import LazyRows

    x, d = rows()
    lazy = LazyRows(x.abs().amax(1), x.__getitem__, SHAPE[1])
    out = []
    for given in (x, lazy):
        dev = preset_device("capacitor")
        state = torch.zeros(SHAPE)
        how = pulsed.PulsedUpdate(0.1, 31, True, None, 0.0)
        pulsed.pulsed_update_(dev, state, given, d, how, torch.Generator().manual_seed(4))
        out.append(state)
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=3e-7)


def test_counts_are_those_of_the_pulse_trains(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an ideal device without noise the change is dw_min (n_up - n_down) with the
    counts pulses.pulse_train_counts gives for the same two keys."""
    dev = make_device(SHAPE, model="ideal", dw_min=0.001)
    x, d = rows()
    for path in ("c", "torch"):
        monkeypatch.setenv(fused.ENV, "1" if path == "c" else "0")
        state = torch.zeros(SHAPE)
        g = torch.Generator().manual_seed(4)
        pulsed.pulsed_update_(dev, state, x, d, pulsed.PulsedUpdate(0.1, 31, True, None, 0.0), g)
        keys = torch.randint(0, 2**32, (6,), generator=torch.Generator().manual_seed(4))
        n_up, n_down = pulse_train_counts(
            x,
            d,
            lr=0.1,
            dw_min=0.001,
            bit_length=31,
            update_management=True,
            generator=None,
            keys=(keys[pulsed.K_D], keys[pulsed.K_X]),
        )
        assert n_up.sum() > 100 and n_down.sum() > 100
        torch.testing.assert_close(state, 0.001 * (n_up - n_down), rtol=1e-5, atol=1e-9)


def test_counter_normals_are_standard_normal() -> None:
    key = torch.tensor(12345)
    index = torch.arange(200_000)
    a, b = normal_pair_at(index, key)
    torch.testing.assert_close(a, normal_at(index, key))
    for z in (a, b):
        assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01
        assert abs(float((z > 1.96).float().mean()) - 0.025) < 0.002
    assert abs(float((a * b).mean())) < 0.01  # the pair is uncorrelated


@pytest.mark.parametrize("path", ["c", "torch"])
def test_mixed_pulses_at_a_bound_follow_a_random_order(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Elements at a bound with pulses of both signs are replayed one pulse at a time in
    a random order: the mean drift matches a shuffled reference within 0.1 dw_min."""
    if path == "c" and native.library() is None:
        pytest.skip("no C compiler: the C kernels cannot be built here")
    monkeypatch.setenv(fused.ENV, "1" if path == "c" else "0")
    shape, dw = (100, 100), 0.01
    dev = make_device(shape, model="constant_step", states=200)
    g = torch.Generator().manual_seed(5)
    n_up = torch.randint(0, 5, shape, generator=g).float()
    n_down = torch.randint(0, 5, shape, generator=g).float()
    state = torch.full(shape, 1.0)
    keys = torch.randint(0, 2**32, (6,), generator=g)
    pulsed.apply_counts_(
        dev, state, n_up, n_down, pulsed.PulsedUpdate(0.1, 31, True, None, 0.0), keys
    )
    drift = float((state - 1.0).mean()) / dw
    rng, ref = random.Random(0), []
    for u, d in zip(n_up.flatten().tolist(), n_down.flatten().tolist(), strict=True):
        signs = [1] * int(u) + [-1] * int(d)
        rng.shuffle(signs)
        w = 1.0
        for s in signs:
            w = min(max(w + s * dw, -1.0), 1.0)
        ref.append(w - 1.0)
    assert abs(drift - sum(ref) / len(ref) / dw) < 0.1


def test_the_c_kernel_gives_the_same_numbers_on_any_number_of_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tile large enough to be split among threads: 1 and 2 threads agree exactly."""
    if native.library() is None:
        pytest.skip("no C compiler: the C kernels cannot be built here")
    monkeypatch.setenv(fused.ENV, "1")
    shape = (256, 160)
    g = torch.Generator().manual_seed(0)
    x, d = torch.rand(16, shape[1], generator=g), torch.randn(16, shape[0], generator=g) * 0.05
    out, threads = [], torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            dev = Device(
                parse_device(PRESETS["reram_sb"]), shape, generator=torch.Generator().manual_seed(1)
            )
            state = dev.clip_(torch.rand(shape, generator=torch.Generator().manual_seed(2)) - 0.5)
            weight = state.clone()
            how = pulsed.PulsedUpdate(0.1, 31, True, weight, 0.1)
            pulsed.pulsed_update_(dev, state, x, d, how, torch.Generator().manual_seed(3))
            out.append((state, weight))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


@pytest.mark.parametrize("path", ["c", "torch"])
@pytest.mark.parametrize("case", ["reram_sb", "capacitor", "reram_es", "pcm"])
def test_the_update_returns_how_far_it_moved_the_state(
    case: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the tile's pulse counter reads (tiles.py): sum |change| of the state, summed by
    the kernels as they go, equals the sum over a copy taken before."""
    if path == "c" and native.library() is None:
        pytest.skip("no C compiler: the C kernels cannot be built here")
    monkeypatch.setenv(fused.ENV, "1" if path == "c" else "0")
    dev = preset_device(case)
    state = dev.clip_(torch.rand(SHAPE, generator=torch.Generator().manual_seed(3)) - 0.5)
    before = state.clone()
    x, d = rows()
    how = pulsed.PulsedUpdate(0.1, 31, True, state + 0.01, 0.05)
    moved = pulsed.pulsed_update_(dev, state, x, d, how, torch.Generator().manual_seed(4))
    expected = float((state - before).abs().sum(dtype=torch.float64))
    assert expected > 0.01
    assert float(moved) == pytest.approx(expected, rel=1e-9)
