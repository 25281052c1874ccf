"""IO model of analog MVMs (analog-model.md section 5)."""

from __future__ import annotations

import pytest
import torch

from aimc_engine import mvm
from aimc_engine.mvm import analog_mvm, quantisation_step
from aimc_engine.tiles import AnalogTile, TileConfig
from aimc_spec.spec import AnalogSpec, IOSpec

FINE = 24  # bits of a converter fine enough to be invisible


def test_perfect_io_is_the_exact_product(gen: torch.Generator) -> None:
    w, x = torch.randn(5, 7, generator=gen), torch.randn(3, 7, generator=gen)
    torch.testing.assert_close(analog_mvm(w, x, IOSpec(perfect=True), gen), x @ w.T)


@pytest.mark.parametrize(("bits", "bound"), [(7, 1.0), (4, 0.5)])
def test_dac_step_size(bits: int, bound: float) -> None:
    """The DAC rounds inputs to steps of 2*in_bound/(2^bits - 2) and clips to +-in_bound."""
    io = IOSpec(
        perfect=False,
        dac_bits=bits,
        adc_bits=FINE,
        out_noise=0,
        in_bound=bound,
        out_bound=4,
        noise_management=False,
        bound_management=False,
    )
    x = torch.linspace(-2 * bound, 2 * bound, 5001, dtype=torch.float64)[:, None]
    y = analog_mvm(torch.ones(1, 1, dtype=torch.float64), x, io, None)[:, 0]
    levels = torch.unique(y)
    step = quantisation_step(bound, bits)
    assert step == pytest.approx(2 * bound / (2**bits - 2))
    assert len(levels) == 2**bits - 1
    torch.testing.assert_close(
        levels.diff(), torch.full_like(levels.diff(), step), atol=1e-6, rtol=0
    )
    assert levels.min().item() == pytest.approx(-bound, abs=1e-6)
    assert levels.max().item() == pytest.approx(bound, abs=1e-6)


def test_adc_step_size() -> None:
    bits, bound = 5, 3.0
    io = IOSpec(
        perfect=False,
        dac_bits=FINE,
        adc_bits=bits,
        out_noise=0,
        in_bound=10,
        out_bound=bound,
        noise_management=False,
        bound_management=False,
    )
    x = torch.linspace(-5, 5, 4001, dtype=torch.float64)[:, None]
    y = analog_mvm(torch.ones(1, 1, dtype=torch.float64), x, io, None)[:, 0]
    levels = torch.unique(y)
    assert len(levels) == 2**bits - 1
    step = 2 * bound / (2**bits - 2)
    torch.testing.assert_close(
        levels.diff(), torch.full_like(levels.diff(), step), atol=1e-6, rtol=0
    )


def test_noise_management_makes_the_mvm_scale_free(gen: torch.Generator) -> None:
    io = IOSpec(perfect=False, out_noise=0, bound_management=False)
    w, x = torch.rand(4, 6, generator=gen) - 0.5, torch.randn(3, 6, generator=gen)
    torch.testing.assert_close(analog_mvm(w, 100 * x, io, gen), 100 * analog_mvm(w, x, io, gen))
    # and the quantised result stays close to the exact one
    assert (analog_mvm(w, x, io, gen) - x @ w.T).abs().max() < 0.05 * x.abs().max()


def test_bound_management_recovers_clipped_outputs() -> None:
    w = torch.full((2, 8), 1.0, dtype=torch.float64)
    x = torch.ones(1, 8, dtype=torch.float64)  # exact output 8, out_bound 3
    common = dict(perfect=False, dac_bits=FINE, adc_bits=FINE, out_noise=0, out_bound=3.0)
    clipped = analog_mvm(w, x, IOSpec(**common, bound_management=False), None)
    managed = analog_mvm(w, x, IOSpec(**common, bound_management=True), None)
    assert clipped[0, 0].item() == pytest.approx(3.0, abs=1e-5)
    assert managed[0, 0].item() == pytest.approx(8.0, abs=1e-4)


def test_output_noise_std() -> None:
    io = IOSpec(
        perfect=False,
        dac_bits=FINE,
        adc_bits=FINE,
        out_noise=0.06,
        out_bound=100,
        noise_management=False,
        bound_management=False,
    )
    w = torch.zeros(1000, 4, dtype=torch.float64)
    y = analog_mvm(w, torch.ones(50, 4, dtype=torch.float64), io, torch.Generator())
    assert y.std().item() == pytest.approx(0.06, rel=0.03)
    assert y.mean().item() == pytest.approx(0.0, abs=0.002)


def test_bound_management_acts_on_the_forward_mvm_only() -> None:
    """aihwkit forces bound management off for the backward MVM: there it clips."""
    io = dict(perfect=False, dac_bits=FINE, adc_bits=FINE, out_noise=0, out_bound=3.0)
    g = torch.Generator()
    tile = AnalogTile(8, 8, TileConfig(AnalogSpec(io={**io, "bound_management": True}), g, g))
    tile.weight = torch.ones(8, 8)
    ones = torch.ones(1, 8)
    assert tile.forward_mvm(ones)[0, 0].item() == pytest.approx(8.0, abs=1e-4)  # recovered
    assert tile.backward_mvm(ones)[0, 0].item() == pytest.approx(3.0, abs=1e-5)  # clipped


@pytest.mark.parametrize("noise_management", [True, False])
@pytest.mark.parametrize("bound_management", [True, False])
def test_c_io_loops_give_the_torch_ops_numbers_bit_for_bit(
    noise_management: bool, bound_management: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The IO model's C loops around the product (native.py) equal the torch ops exactly,
    rows redone by bound management (large inputs without noise management) included."""
    from aimc_engine import fused, native

    if native.library() is None:
        pytest.skip("no C compiler: the C kernels cannot be built here")
    io = IOSpec(perfect=False, noise_management=noise_management, bound_management=bound_management)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 128, generator=g) * 0.3
    redone = []  # the C path's bound management, counted: the case must reach it
    in_c = mvm._bound_managed_c
    monkeypatch.setattr(mvm, "_bound_managed_c", lambda *a: redone.append(1) or in_c(*a))
    for size in (1.0, 30.0):  # 30: outputs clip
        x = torch.rand(10, 128, generator=g) * size - size / 3
        out = []
        for flag in ("1", "0"):
            monkeypatch.setenv(fused.ENV, flag)
            gen = torch.Generator().manual_seed(1)
            out.append(analog_mvm(w, x, io, gen, bias=torch.ones(64)))
            out.append(analog_mvm(w.T, x[:, :64], io, gen))  # a backward's transposed view
        assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[3])
    assert bool(redone) == (bound_management and not noise_management)
