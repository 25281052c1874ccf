"""`analog.config`: aihwkit 1.2's 52 training presets by name. The expected values are
aihwkit 1.2.0's, written out from aihwkit/simulator/presets/configs.py (the classes and
their compound arguments), presets/utils.py (PresetIOParameters,
PresetUpdateParameters) and presets/compounds.py (PCMPresetUnitCell)."""

from __future__ import annotations

from typing import Any

import pytest

from aimc_spec.configs import CONFIGS, find_config
from aimc_spec.presets import PRESETS
from aimc_spec.spec import SpecError, parse_spec
from aimc_spec.sweep import expand as expand_sweep

# aihwkit.simulator.presets.configs, 1.2.0: every training preset class, in file order
AIHWKIT_CLASSES = [
    "ReRamESPreset",
    "ReRamSBPreset",
    "CapacitorPreset",
    "EcRamPreset",
    "EcRamMOPreset",
    "IdealizedPreset",
    "GokmenVlasovPreset",
    "PCMPreset",
    "ReRamES2Preset",
    "ReRamSB2Preset",
    "Capacitor2Preset",
    "EcRam2Preset",
    "EcRamMO2Preset",
    "Idealized2Preset",
    "ReRamES4Preset",
    "ReRamSB4Preset",
    "Capacitor4Preset",
    "EcRam4Preset",
    "EcRamMO4Preset",
    "Idealized4Preset",
    "TikiTakaReRamESPreset",
    "TikiTakaReRamSBPreset",
    "TikiTakaCapacitorPreset",
    "TikiTakaEcRamPreset",
    "TikiTakaEcRamMOPreset",
    "TikiTakaIdealizedPreset",
    "TTv2ReRamESPreset",
    "TTv2ReRamSBPreset",
    "TTv2CapacitorPreset",
    "TTv2EcRamPreset",
    "TTv2EcRamMOPreset",
    "TTv2IdealizedPreset",
    "ChoppedTTv2ReRamESPreset",
    "ChoppedTTv2ReRamSBPreset",
    "ChoppedTTv2CapacitorPreset",
    "ChoppedTTv2EcRamPreset",
    "ChoppedTTv2EcRamMOPreset",
    "ChoppedTTv2IdealizedPreset",
    "AGADReRamESPreset",
    "AGADReRamSBPreset",
    "AGADCapacitorPreset",
    "AGADEcRamPreset",
    "AGADEcRamMOPreset",
    "AGADIdealizedPreset",
    "MixedPrecisionReRamESPreset",
    "MixedPrecisionReRamSBPreset",
    "MixedPrecisionCapacitorPreset",
    "MixedPrecisionEcRamPreset",
    "MixedPrecisionEcRamMOPreset",
    "MixedPrecisionIdealizedPreset",
    "MixedPrecisionGokmenVlasovPreset",
    "MixedPrecisionPCMPreset",
]

# the compounds' arguments as configs.py passes them: (fast_lr, auto_granularity,
# in_chop_prob, update desired_bl, tail_weightening); ChoppedTTv2EcRamPreset passes no
# fast_lr, so ChoppedTransferCompound's 1.0 stands
CHOPPERS: dict[str, tuple[float, float, float, int, float | None]] = {
    "TTv2ReRamESPreset": (0.5, 1000, 0.0, 31, None),
    "TTv2ReRamSBPreset": (0.5, 1000, 0.0, 31, None),
    "TTv2CapacitorPreset": (0.1, 1000, 0.0, 31, None),
    "TTv2EcRamPreset": (0.1, 500, 0.0, 100, None),
    "TTv2EcRamMOPreset": (0.1, 500, 0.0, 100, None),
    "TTv2IdealizedPreset": (0.1, 500, 0.0, 100, None),
    "ChoppedTTv2ReRamESPreset": (0.5, 1000, 0.01, 31, None),
    "ChoppedTTv2ReRamSBPreset": (0.5, 1000, 0.01, 31, None),
    "ChoppedTTv2CapacitorPreset": (0.1, 1000, 0.01, 31, None),
    "ChoppedTTv2EcRamPreset": (1.0, 500, 0.01, 100, None),
    "ChoppedTTv2EcRamMOPreset": (0.1, 500, 0.001, 100, None),
    "ChoppedTTv2IdealizedPreset": (0.1, 500, 0.001, 100, None),
    "AGADReRamESPreset": (0.5, 1000, 0.02, 31, 5.0),
    "AGADReRamSBPreset": (0.5, 1000, 0.02, 31, 5.0),
    "AGADCapacitorPreset": (0.1, 1000, 0.01, 31, 20.0),
    "AGADEcRamPreset": (0.1, 750, 0.005, 31, 50.0),
    "AGADEcRamMOPreset": (0.1, 500, 0.005, 100, 50.0),
    "AGADIdealizedPreset": (0.1, 500, 0.005, 100, 50.0),
}
DEVICE_OF = {
    "ReRamES": "reram_es",
    "ReRamSB": "reram_sb",
    "Capacitor": "capacitor",
    "EcRamMO": "ecram_mo",
    "EcRam": "ecram",
    "Idealized": "idealized",
    "GokmenVlasov": "gokmen_vlasov",
    "PCM": "pcm",
}


def spec_of(name: str, **more: Any) -> Any:
    return parse_spec({"analog": {"config": name, **more}})


def device_stem(name: str) -> str:
    """The aihwkit device a class name is built on (TTv2EcRamMOPreset -> EcRamMO)."""
    for stem in DEVICE_OF:  # EcRamMO is tried before EcRam
        if stem in name.removeprefix("TTv2").removeprefix("ChoppedTTv2"):
            return stem
    raise AssertionError(name)


def test_every_training_preset_of_aihwkit_12_is_here_by_its_class_name() -> None:
    assert list(CONFIGS) == AIHWKIT_CLASSES
    assert len({c.alias for c in CONFIGS.values()}) == 52


@pytest.mark.parametrize("name", AIHWKIT_CLASSES)
def test_each_sets_preset_io_and_update_and_its_device(name: str) -> None:
    """PresetIOParameters forward and backward (7-bit DAC, 9-bit ADC, out_bound 20,
    out_noise 0.1, ABS_MAX noise and ITERATIVE bound management); PresetUpdateParameters
    (stochastic pulses, BL 31 with BL and update management; 100 where a preset says)."""
    spec = spec_of(name)
    io = spec.analog.io
    assert not io.perfect and (io.dac_bits, io.adc_bits) == (7, 9)
    assert (io.out_bound, io.out_noise, io.in_bound) == (20.0, 0.1, 1.0)
    assert io.noise_management and io.bound_management
    assert spec.analog.update == "pulsed" and spec.analog.update_management
    bit_length = CHOPPERS[name][3] if name in CHOPPERS else 31
    assert spec.analog.bit_length == bit_length
    preset = PRESETS[DEVICE_OF[device_stem(name)]]
    device = spec.analog.device
    assert (device.dw_min, device.w_min, device.w_max) == (
        preset["dw_min"],
        preset["w_min"],
        preset["w_max"],
    )
    assert device.write_noise_std == preset["write_noise_std"]
    assert spec.analog.config == name


def test_single_device_and_multi_device_cells() -> None:
    for name in AIHWKIT_CLASSES[:7]:
        spec = spec_of(name)
        assert spec.analog.unit_cell is None and spec.optimizer.algorithm == "analog_sgd"
    # PCMPresetUnitCell: OneSidedUnitCell with refresh_every 1, units_in_mbatch True and
    # refresh_update PresetUpdateParameters(desired_bl=31)
    pcm = spec_of("PCMPreset")
    cell = pcm.analog.unit_cell
    assert cell is not None and cell.kind == "one_sided"
    assert (cell.refresh_every, cell.refresh_bit_length, cell.units_in_mbatch) == (1, 31, True)
    assert (cell.refresh_upper_thres, cell.refresh_lower_thres) == (0.75, 0.25)
    for count in (2, 4):  # VectorUnitCell, SINGLE_RANDOM, equal weights
        for stem in ("ReRamES", "ReRamSB", "Capacitor", "EcRam", "EcRamMO", "Idealized"):
            vector = spec_of(f"{stem}{count}Preset").analog.unit_cell
            assert vector is not None and vector.kind == "vector"
            assert (vector.devices, vector.update_policy) == (count, "single_random")
            assert vector.gammas() == [1 / count] * count


def test_tiki_taka_presets() -> None:
    """TransferCompound(units_in_mbatch=True) with its defaults: transfer_every 1, one
    read per transfer, transfer_lr 1 scaled by lr, gamma 0; ReRamSB's devices with
    subtract_symmetry_point=True, the others with no reference."""
    for stem in ("ReRamES", "ReRamSB", "Capacitor", "EcRam", "EcRamMO", "Idealized"):
        spec = spec_of(f"TikiTaka{stem}Preset")
        tt = spec.optimizer.tiki_taka
        assert spec.optimizer.algorithm == "tiki_taka"
        assert (tt.transfer_every, tt.transfer_columns, tt.transfer_lr, tt.gamma) == (1, 1, 1.0, 0)
        assert tt.scale_transfer_lr and tt.reference == "none"
        symmetric = getattr(spec.analog.device, "subtract_symmetry_point", False)
        assert symmetric == (stem == "ReRamSB")


@pytest.mark.parametrize("name", sorted(CHOPPERS))
def test_ttv2_chopped_and_agad_presets(name: str) -> None:
    """ChoppedTransferCompound (TTv2: in_chop_prob 0) and DynamicTransferCompound (AGAD,
    regular flips): auto_scale, units_in_mbatch False, transfer BL 1, and the values above."""
    fast_lr, granularity, in_chop, _, tail = CHOPPERS[name]
    spec = spec_of(name)
    algorithm = "agad" if name.startswith("AGAD") else "chopped_ttv2"
    assert spec.optimizer.algorithm == algorithm
    part = getattr(spec.optimizer, algorithm)
    assert (part.fast_lr, part.auto_granularity, part.in_chop_prob) == (
        fast_lr,
        granularity,
        in_chop,
    )
    assert part.auto_scale and not part.units_in_mbatch and not part.scale_fast_lr
    assert (part.transfer_every, part.transfer_desired_bl, part.auto_momentum) == (1, 1, 0.99)
    assert part.in_chop_random == (algorithm == "chopped_ttv2")
    if tail is not None:
        assert part.tail_weightening == tail
    symmetric = getattr(spec.analog.device, "subtract_symmetry_point", False)
    assert symmetric == ("ReRamSB" in name)


def test_mixed_precision_presets() -> None:
    """MixedPrecisionCompound with its defaults (transfer_every 1, all rows, no bins)
    around the device; for PCM around PCMPresetUnitCell."""
    for name in AIHWKIT_CLASSES[-8:]:
        spec = spec_of(name)
        mp = spec.optimizer.mixed_precision
        assert spec.optimizer.algorithm == "mixed_precision"
        assert (mp.transfer_every, mp.n_rows_per_transfer, mp.n_x_bins, mp.n_d_bins) == (
            1,
            -1,
            0,
            0,
        )
        cell = spec.analog.unit_cell
        assert (cell is not None and cell.kind == "one_sided") == (
            name == "MixedPrecisionPCMPreset"
        )


def test_names_aliases_and_case() -> None:
    for text in ("TTv2EcRamPreset", "ttv2_ecram", "TTV2ECRAM", "ttv2_ecram_preset", "TTv2EcRam"):
        config = find_config(text)
        assert config is not None and config.name == "TTv2EcRamPreset", text
    assert spec_of("mixed_precision_pcm").analog.config == "MixedPrecisionPCMPreset"


def test_an_unknown_name_is_refused_with_the_closest_ones() -> None:
    with pytest.raises(SpecError) as info:
        spec_of("TTv2EcRamPrest")
    (where, message), *_ = info.value.problems
    assert where == "analog.config"
    assert "'TTv2EcRamPrest'" in message and "did you mean 'TTv2EcRamPreset'" in message
    with pytest.raises(SpecError) as info:
        spec_of(7)
    assert info.value.problems[0][0] == "analog.config"


def test_every_field_the_spec_gives_overrides_the_configuration() -> None:
    spec = parse_spec(
        {
            "analog": {
                "config": "AGADEcRamPreset",
                "device": {"dw_min": 0.004},
                "io": {"out_noise": 0.0},
                "bit_length": 15,
            },
            "optimizer": {"agad": {"tail_weightening": 7.0}, "lr": 0.05},
        }
    )
    assert spec.analog.device.dw_min == 0.004 and spec.analog.device.model == "linear"
    assert spec.analog.device.w_max == PRESETS["ecram"]["w_max"]  # the rest as configured
    assert (spec.analog.io.out_noise, spec.analog.io.out_bound, spec.analog.bit_length) == (
        0.0,
        20.0,
        15,
    )
    assert spec.optimizer.agad.tail_weightening == 7.0 and spec.optimizer.agad.fast_lr == 0.1
    # a device with its own preset or family replaces the configuration's
    other = spec_of("TTv2EcRamPreset", device={"preset": "capacitor"})
    assert other.analog.device.dw_min == PRESETS["capacitor"]["dw_min"]
    assert (
        spec_of("EcRamPreset", device={"model": "softbounds"}).analog.device.model == "softbounds"
    )
    # the normalised spec parses to itself
    assert parse_spec(spec.normalised()) == spec


def test_a_sweep_may_vary_the_configuration() -> None:
    base = {"training": {"steps": 5}, "analog": {"io": {"out_noise": 0.0}}}
    points = expand_sweep(base, {"analog.config": ["ReRamSBPreset", "agad_ecram"]})
    specs = [point.spec for point in points]
    assert [s.analog.config for s in specs] == ["ReRamSBPreset", "AGADEcRamPreset"]
    assert [s.optimizer.algorithm for s in specs] == ["analog_sgd", "agad"]
    assert all(s.analog.io.out_noise == 0.0 for s in specs)
