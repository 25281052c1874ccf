"""Fused update chains: the same numbers as counting pulses, compiled or not, with fallbacks."""

from __future__ import annotations

import pytest
import torch

from aimc_engine import fused
from aimc_engine.pulses import rounded_counts
from tests.conftest import make_device

SHAPE = (256, 160)  # above fused.MIN_FUSED_ELEMENTS: compiled where fusion is on


def start_and_grad(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(SHAPE, generator=g) * 1.8 - 0.9  # some weights near the bounds
    return w, torch.randn(SHAPE, generator=g)


@pytest.mark.parametrize("model", ["softbounds", "linear"])
def test_fused_rounded_update_equals_counting_pulses(model: str) -> None:
    """rounded_update_ (one chain) = stochastic rounding to counts, then the closed form
    direction by direction (the unfused path), draw for draw."""
    dev = make_device(SHAPE, model=model, states=100, gamma=0.4, up_down=0.1)
    ref = make_device(SHAPE, model=model, states=100, gamma=0.4, up_down=0.1)
    ref._fused = None  # the unfused path
    w, grad = start_and_grad()
    lr = 0.3
    ours, theirs = w.clone(), w.clone()
    assert dev.rounded_update_(ours, grad.clone(), lr, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    n_up, n_down = rounded_counts(-lr * grad, dw_min=ref.dw_min, generator=g)
    assert n_up.max() >= 1 and n_down.max() >= 1  # whole pulses both ways
    ref.apply_pulses_(theirs, n_up, n_down, g)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not torch.equal(ours, w)


def test_fused_pulses_equal_the_closed_form_loop() -> None:
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
    assert not multiplicative.rounded_update_(w, grad, 0.1, torch.Generator())


def chain_inputs() -> tuple[torch.Tensor, ...]:
    dev = make_device(SHAPE, states=100, c2c_noise=0.3)
    assert dev._fused is not None
    w, grad = start_and_grad()
    g = torch.Generator().manual_seed(4)
    u, xi = torch.rand(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    return w, grad, torch.tensor(-0.3 / dev.dw_min), u, xi, dev._fused


@pytest.mark.skipif(not fused.compiler_available(), reason="no C++ compiler: nothing to compile")
def test_compiled_chain_equals_the_plain_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile's kernel gives the op-by-op numbers (to float rounding of expm1)."""
    monkeypatch.setenv(fused.ENV, "1")
    monkeypatch.setattr(fused.Fused, "broken", False)
    chain = fused.Fused(fused._rounded_linear)
    w, *rest = chain_inputs()
    ours, theirs = w.clone(), w.clone()
    chain(ours, *rest)
    fused._rounded_linear(theirs, *rest)
    assert chain.compiled is not None and not fused.Fused.broken
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours, w)


@pytest.mark.parametrize("how", ["env", "no_compiler"])
def test_without_fusion_the_plain_chain_runs(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """AIMC_FUSE=0, or no compiler on the machine: nothing is compiled, same numbers."""
    monkeypatch.setenv(fused.ENV, "0" if how == "env" else "1")
    if how == "no_compiler":
        monkeypatch.setattr(fused, "compiler_available", lambda: False)
    assert not fused.fusion_enabled()

    def no_compile(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.compile must not be called")

    monkeypatch.setattr(torch, "compile", no_compile)
    chain = fused.Fused(fused._rounded_linear)
    w, *rest = chain_inputs()
    ours, theirs = w.clone(), w.clone()
    chain(ours, *rest)
    fused._rounded_linear(theirs, *rest)
    assert chain.compiled is None and torch.equal(ours, theirs)


def test_a_failed_compile_falls_back_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler that fails (missing headers, unsupported backend) costs one warning."""
    monkeypatch.setenv(fused.ENV, "1")
    monkeypatch.setattr(fused, "compiler_available", lambda: True)
    monkeypatch.setattr(fused.Fused, "broken", False)
    calls = []

    def broken_compile(fn: object, **kwargs: object) -> object:
        def run(*args: object) -> None:
            calls.append(1)
            raise RuntimeError("inductor: no working C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    chain = fused.Fused(fused._rounded_linear)
    w, *rest = chain_inputs()
    ours, theirs = w.clone(), w.clone()
    chain(ours, *rest)
    chain(ours.clone(), *rest)  # not tried again
    fused._rounded_linear(theirs, *rest)
    assert fused.Fused.broken and len(calls) == 1
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
