"""Fused update chains: C kernels, torch ops and torch.compile give the same numbers;
the fallbacks (AIMC_FUSE=0, no compiler, a failed build) run the torch ops."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aimc_engine import fused, native
from aimc_engine.pulses import (
    count_coincidences,
    draw_pulse_trains,
    manage_updates,
    rounded_counts,
)
from aimc_engine.rng import draw_key
from tests.conftest import family_fields, make_device

SHAPE = (256, 160)
PATHS = ["c", "torch"]  # the C kernels, and the torch ops every machine can run


@pytest.fixture
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the chains through the C kernels ("c") or as torch ops ("torch")."""
    if request.param == "c" and native.library() is None:
        pytest.skip("no C compiler: the C kernels cannot be built here")
    monkeypatch.setenv(fused.ENV, "1" if request.param == "c" else "0")
    return str(request.param)


@pytest.fixture
def fresh_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """native.library() forgets its cached build and builds under tmp_path."""
    monkeypatch.setenv("AIMC_CACHE_DIR", str(tmp_path))
    native.library.cache_clear()
    yield
    native.library.cache_clear()


def start_and_grad(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(SHAPE, generator=g) * 1.8 - 0.9  # some weights near the bounds
    return w, torch.randn(SHAPE, generator=g)


@pytest.mark.parametrize("path", PATHS, indirect=True)
@pytest.mark.parametrize("model", ["softbounds", "linear"])
def test_fused_rounded_update_equals_counting_pulses(model: str, path: str) -> None:
    """rounded_update_ (one chain) = stochastic rounding to counts, then the closed form
    direction by direction (the unfused path), draw for draw."""
    fields = family_fields(model, states=100, gamma=0.4, up_down=0.1)
    dev, ref = make_device(SHAPE, **fields), make_device(SHAPE, **fields)
    ref._fused = None  # the unfused path
    w, grad = start_and_grad()
    lr = 0.3
    ours, theirs = w.clone(), w.clone()
    moved = dev.rounded_update_(ours, grad.clone(), lr, torch.Generator().manual_seed(1))
    assert moved is not None
    assert float(moved) == pytest.approx(float((ours - w).abs().sum(dtype=torch.float64)))
    g = torch.Generator().manual_seed(1)
    n_up, n_down = rounded_counts(-lr * grad, dw_min=ref.dw_min, generator=g)
    assert n_up.max() >= 1 and n_down.max() >= 1  # whole pulses both ways
    ref.apply_pulses_(theirs, n_up, n_down, g)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not torch.equal(ours, w)


@pytest.mark.parametrize("path", PATHS, indirect=True)
def test_fused_pulses_equal_the_closed_form_loop(path: str) -> None:
    """apply_pulses_ through the fused chain = the closed form per direction, noise included
    (the same draws in the same order)."""
    fields = {"model": "softbounds", "states": 100, "c2c_noise": 0.5}
    dev, ref = make_device(SHAPE, **fields), make_device(SHAPE, **fields)
    ref._fused = None
    w, _ = start_and_grad()
    w = w * 0.5  # away from the bounds: no element replayed one pulse at a time
    counts = torch.Generator().manual_seed(2)
    n_up = torch.randint(0, 4, SHAPE, generator=counts).float()
    n_down = torch.randint(0, 4, SHAPE, generator=counts).float()
    ours, theirs = w.clone(), w.clone()
    dev.apply_pulses_(ours, n_up, n_down, torch.Generator().manual_seed(3))
    ref.apply_pulses_(theirs, n_up, n_down, torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_devices_without_the_closed_form_take_the_general_path() -> None:
    assert make_device(SHAPE, model="exp_step")._fused is None
    assert make_device(SHAPE, model="constant_step")._fused is None  # no slope
    assert make_device(SHAPE, model="softbounds", d2d_variation=0.1)._fused is None
    multiplicative = make_device(SHAPE, c2c_noise=0.2, c2c_mode="multiplicative")
    assert multiplicative._fused is None
    w, grad = start_and_grad()
    assert multiplicative.rounded_update_(w, grad, 0.1, torch.Generator()) is None


def constants() -> torch.Tensor:
    dev = make_device(SHAPE, states=100, up_down=0.1, c2c_noise=0.3)  # softbounds
    assert dev._fused is not None
    return dev._fused


def rounded_inputs(noise: bool) -> tuple[torch.Tensor, ...]:
    w, grad = start_and_grad()
    g = torch.Generator().manual_seed(4)
    xi = torch.randn(SHAPE, generator=g) if noise else None
    scale = torch.tensor(-0.3 / 0.02)
    moved = torch.zeros((), dtype=torch.float64)  # the chain's sum |change|
    return w, grad, scale, draw_key(g), xi, constants(), moved  # type: ignore[return-value]


def pulses_inputs(most: int, noise: bool) -> tuple[torch.Tensor | None, ...]:
    """Counts up to `most` (beyond the C kernel's tables of 64 when most > 64), a few
    elements without pulses, weights spread up to the bounds."""
    w, _ = start_and_grad()
    g = torch.Generator().manual_seed(5)
    n_up = torch.randint(0, most, SHAPE, generator=g).float()
    n_down = torch.randint(0, most, SHAPE, generator=g).float()
    n_up[:10] = n_down[:10] = 0.0
    xi_up, xi_down = (torch.randn(SHAPE, generator=g) for _ in range(2))
    return w, n_up, n_down, xi_up if noise else None, xi_down if noise else None, constants()


def both_paths(chain: fused.Fused, inputs: tuple, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """The first argument after the chain ran through C and as torch ops."""
    monkeypatch.setenv(fused.ENV, "1")
    ours = inputs[0].clone()
    chain(ours, *inputs[1:])
    theirs = inputs[0].clone()
    chain.fn(theirs, *inputs[1:])
    return ours, theirs


needs_c = pytest.mark.skipif(native.library() is None, reason="no C compiler here")


@needs_c
@pytest.mark.parametrize("noise", [False, True])
def test_c_rounded_kernel_equals_the_torch_chain(
    noise: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = rounded_inputs(noise)
    ours, theirs = both_paths(fused.rounded_linear, inputs, monkeypatch)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert (ours != inputs[0]).float().mean() > 0.5  # most elements pulsed


@needs_c
@pytest.mark.parametrize(("most", "noise"), [(3, False), (3, True), (200, False)])
def test_c_pulses_kernel_equals_the_torch_chain(
    most: int, noise: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small counts (the tables, vectorised), noise, and counts beyond the tables."""
    inputs = pulses_inputs(most, noise)
    ours, theirs = both_paths(fused.pulses_linear, inputs, monkeypatch)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert torch.equal(ours[:10], inputs[0][:10])  # no pulses: untouched
    assert not torch.equal(ours, inputs[0])


@needs_c
def test_c_pulse_trains_equal_the_torch_chain_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = torch.Generator().manual_seed(6)
    values = torch.randn(40, 300, generator=g)
    values[0, :5] = 0.0  # sign 0: fires never
    row_scale = torch.rand(40, generator=g) * 3
    key = draw_key(g)
    monkeypatch.setenv(fused.ENV, "1")
    fired, fired_ref = torch.empty_like(values), torch.empty_like(values)
    fused.pulse_train(fired, values, row_scale, key)
    fused._pulse_train(fired_ref, values, row_scale, key)
    assert torch.equal(fired, fired_ref)
    assert 0.2 < float(fired.abs().mean()) < 0.9 and not fired[0, :5].any()


@pytest.mark.parametrize("path", PATHS, indirect=True)
def test_pulse_trains_fire_with_their_probability(path: str) -> None:
    """P(fire) = min(scale |v|, 1) per element, signed like v, on either path."""
    n = 20_000
    values = torch.tensor([0.1, -0.25, 0.5, -2.0]).repeat(n, 1)
    fired = draw_pulse_trains(values, torch.ones(n), torch.Generator().manual_seed(7))
    rate = fired.abs().mean(0)
    torch.testing.assert_close(rate, torch.tensor([0.1, 0.25, 0.5, 1.0]), atol=0.01, rtol=0)
    assert torch.equal(fired, fired.abs() * torch.sign(values))


@needs_c
def test_c_update_management_equals_the_torch_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """BL_n, A_n, B_n per sample (A_n and B_n to the last bit of torch's sqrt, which is
    not always correctly rounded); samples with a zero side, and samples that need more
    than BL slots, included."""
    g = torch.Generator().manual_seed(12)
    x_max, d_max = torch.rand(200, generator=g) * 2, torch.rand(200, generator=g) * 0.5
    x_max[:3], d_max[5:8] = 0.0, 0.0
    kw = {"lr": 0.5, "dw_min": 0.01, "bit_length": 31}
    monkeypatch.setenv(fused.ENV, "1")
    ours = manage_updates(x_max, d_max, **kw)
    monkeypatch.setenv(fused.ENV, "0")
    theirs = manage_updates(x_max, d_max, **kw)
    for mine, ref in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, ref, rtol=3e-7, atol=0)
    assert torch.equal(ours[2], theirs[2])
    a, b, slots = ours
    zero = torch.tensor([0, 1, 2, 5, 6, 7])
    assert not a[zero].any() and not b[zero].any()  # a zero side: no pulses
    active = slots[8:]
    assert active.max() == 31 and active.min() >= 1 and (active > 1).any()
    torch.testing.assert_close(a[8:] * b[8:], 50.0 / active)  # A B = lr / (dw_min BL_n)


def signed_firings(rows: int, cols: int, density: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    fire = (torch.rand(rows, cols, generator=g) < density).float()
    return fire * (torch.randint(0, 2, (rows, cols), generator=g).float() * 2 - 1)


@needs_c
@pytest.mark.parametrize("density", [0.0, 0.03, 0.3, 0.9])
def test_c_coincidences_equal_the_matrix_products_exactly(
    density: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pair by pair (sparse firings) or through the products (dense: the C kernel declines),
    the same whole counts; every coincidence is one pulse, down where the signs agree."""
    fired_d, fired_x = signed_firings(50, 70, density, 10), signed_firings(50, 90, density, 11)
    monkeypatch.setenv(fused.ENV, "1")
    ours = count_coincidences(fired_d, fired_x)
    declined = []
    native_call = fused.coincidences.native_call

    def watched(*args: object) -> bool:
        """The C call, noting whether it declined (too dense) and left it to the products."""
        done = native_call(*args)
        declined.append(not done)
        return done

    monkeypatch.setattr(fused.coincidences, "native_call", watched)
    count_coincidences(fired_d, fired_x)
    assert declined == [density > 0.5]
    monkeypatch.setenv(fused.ENV, "0")
    theirs = count_coincidences(fired_d, fired_x)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    brute = torch.zeros(2, 70, 90)
    for r in range(50):
        for i in torch.nonzero(fired_d[r]).flatten():
            for j in torch.nonzero(fired_x[r]).flatten():
                brute[int(fired_d[r, i] == fired_x[r, j]), i, j] += 1
    assert torch.equal(ours[0], brute[0]) and torch.equal(ours[1], brute[1])


@pytest.mark.skipif(not fused.compiler_available(), reason="no C++ compiler: nothing to compile")
def test_compiled_chain_equals_the_plain_chain() -> None:
    """The chain torch.compile runs on GPUs compiles and gives the op-by-op numbers (here
    on the CPU, where inductor also builds it; to float rounding of expm1)."""
    compiled = torch.compile(fused._rounded_linear, dynamic=True)
    w, *rest = rounded_inputs(noise=True)
    ours, theirs = w.clone(), w.clone()
    compiled(ours, *rest)
    fused._rounded_linear(theirs, *rest)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours, w)


def refuse_native(*args: object) -> None:
    raise AssertionError("the C kernel must not run")


@pytest.mark.usefixtures("fresh_library")
@pytest.mark.parametrize("how", ["env", "no_compiler", "failed_build"])
def test_without_c_kernels_the_torch_chain_runs(
    how: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """AIMC_FUSE=0, no C compiler, or a build that fails (logged once): the torch ops run,
    with the same numbers as the chain itself."""
    monkeypatch.setenv(fused.ENV, "0" if how == "env" else "1")
    if how == "no_compiler":
        monkeypatch.setattr(native, "compiler", lambda: None)
    if how == "failed_build":
        monkeypatch.setattr(native, "compiler", lambda: "false")  # exits 1, prints nothing
    chain = fused.Fused(fused._rounded_linear, refuse_native)
    w, *rest = rounded_inputs(noise=False)
    ours, theirs = w.clone(), w.clone()
    with caplog.at_level(logging.WARNING, logger="aimc_engine.native"):
        chain(ours, *rest)
        chain(ours.clone(), *rest)
    fused._rounded_linear(theirs, *rest)
    assert torch.equal(ours, theirs)
    built = list(native.cache_dir().glob("*.so"))
    assert built == []
    warnings = [r for r in caplog.records if "could not build" in r.getMessage()]
    assert len(warnings) == (1 if how == "failed_build" else 0)


@needs_c
@pytest.mark.usefixtures("fresh_library")
def test_the_c_kernels_are_built_once_per_machine_and_source() -> None:
    lib = native.library()
    assert lib is not None
    built = list(native.cache_dir().glob("update_kernels-*.so"))
    assert len(built) == 1 and not list(native.cache_dir().glob("*.tmp"))
    stamp = built[0].stat().st_mtime_ns
    native.library.cache_clear()
    assert native.library() is not None  # loaded from the cache, not built again
    assert built[0].stat().st_mtime_ns == stamp


@needs_c
def test_c_kernels_give_the_same_numbers_on_any_number_of_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tiles above the kernels' parallel size split among torch's threads: the counter-
    based numbers and the bands of output rows make 1 and 2 threads agree bit for bit."""
    monkeypatch.setenv(fused.ENV, "1")
    g = torch.Generator().manual_seed(13)
    fired_d, fired_x = signed_firings(60, 256, 0.05, 14), signed_firings(60, 160, 0.05, 15)
    values, scale = torch.randn(200, 300, generator=g), torch.rand(200, generator=g)
    key = draw_key(g)
    rounded, pulses = rounded_inputs(noise=True), pulses_inputs(3, noise=True)

    def run() -> list[torch.Tensor]:
        out = []
        for chain, inputs in ((fused.rounded_linear, rounded), (fused.pulses_linear, pulses)):
            w = inputs[0].clone()
            chain(w, *inputs[1:])
            out.append(w)
        fired = torch.empty_like(values)
        fused.pulse_train(fired, values, scale, key)
        return [*out, fired, *count_coincidences(fired_d, fired_x)]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)
