"""aihwkit 1.2's training configurations by name: `analog.config` (docs/aihwkit.md).

An aihwkit preset configuration (`TTv2EcRamPreset`, `MixedPrecisionPCMPreset`, ...)
fixes more than the device: the unit cell or compound around it, the training
algorithm, the forward and backward IO (PresetIOParameters) and the pulsed update
(PresetUpdateParameters). Each of the 52 training presets of
`aihwkit.simulator.presets.configs` (1.2.0) is here as the part of a job spec it
stands for; `expand` lays that part under what the spec itself says, so every field
stays overridable. Torch-free: the API lists and validates configurations without the
engine.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from typing import Any

from aimc_spec.presets import PRESETS

# aihwkit's device class stem -> aimc's device preset
DEVICES = {
    "ReRamES": "reram_es",
    "ReRamSB": "reram_sb",
    "Capacitor": "capacitor",
    "EcRam": "ecram",
    "EcRamMO": "ecram_mo",
    "Idealized": "idealized",
    "GokmenVlasov": "gokmen_vlasov",
    "PCM": "pcm",
}
# the six devices aihwkit builds its compound and multi-device presets from
COMPOUND_DEVICES = ("ReRamES", "ReRamSB", "Capacitor", "EcRam", "EcRamMO", "Idealized")

# PresetIOParameters (aihwkit presets/utils.py), forward and backward alike: a 7-bit DAC
# (inp_res 1/(2^7 - 2)), a 9-bit ADC, out_bound 20, out_noise 0.1, inputs within +-1,
# noise management ABS_MAX and bound management ITERATIVE
PRESET_IO = {
    "perfect": False,
    "dac_bits": 7,
    "adc_bits": 9,
    "out_noise": 0.1,
    "in_bound": 1.0,
    "out_bound": 20.0,
    "noise_management": True,
    "bound_management": True,
}

# TTv2, Chopped TTv2 and AGAD presets: (fast_lr, auto_granularity, in_chop_prob, update
# desired_bl[, tail_weightening]) per device, as configs.py writes them; ChoppedTTv2EcRam
# leaves fast_lr at ChoppedTransferCompound's 1.0
_TTV2 = {
    "ReRamES": (0.5, 1000, 0.0, 31),
    "ReRamSB": (0.5, 1000, 0.0, 31),
    "Capacitor": (0.1, 1000, 0.0, 31),
    "EcRam": (0.1, 500, 0.0, 100),
    "EcRamMO": (0.1, 500, 0.0, 100),
    "Idealized": (0.1, 500, 0.0, 100),
}
_CHOPPED = {
    "ReRamES": (0.5, 1000, 0.01, 31),
    "ReRamSB": (0.5, 1000, 0.01, 31),
    "Capacitor": (0.1, 1000, 0.01, 31),
    "EcRam": (1.0, 500, 0.01, 100),
    "EcRamMO": (0.1, 500, 0.001, 100),
    "Idealized": (0.1, 500, 0.001, 100),
}
_AGAD = {
    "ReRamES": (0.5, 1000, 0.02, 31, 5.0),
    "ReRamSB": (0.5, 1000, 0.02, 31, 5.0),
    "Capacitor": (0.1, 1000, 0.01, 31, 20.0),
    "EcRam": (0.1, 750, 0.005, 31, 50.0),
    "EcRamMO": (0.1, 500, 0.005, 100, 50.0),
    "Idealized": (0.1, 500, 0.005, 100, 50.0),
}


@dataclass(frozen=True)
class Config:
    """One aihwkit preset configuration: its class name, aimc's snake_case alias, a
    line saying what it is, and the part of a job spec it expands to."""

    name: str
    alias: str
    summary: str
    spec: dict[str, Any]

    @property
    def device(self) -> str:
        """aimc's device preset the configuration is built on."""
        rest = re.sub(r"^(TikiTaka|ChoppedTTv2|TTv2|AGAD|MixedPrecision)", "", self.name)
        return DEVICES[re.sub(r"[24]?Preset$", "", rest)]


def _device(stem: str, *, symmetric: bool = False) -> dict[str, Any]:
    """The preset device's fields, written out (not `preset:`) so that the spec may
    override any one of them; `symmetric`: aihwkit's subtract_symmetry_point=True."""
    fields = copy.deepcopy(PRESETS[DEVICES[stem]])
    if symmetric:
        fields["model"] = "softbounds_reference"
        fields["subtract_symmetry_point"] = True
    return fields


def _analog(device: dict[str, Any], bit_length: int = 31, **more: Any) -> dict[str, Any]:
    """The analog block every preset shares: pulsed updates with update and BL
    management (PresetUpdateParameters), the preset IO, and the device."""
    return {
        "device": device,
        "update": "pulsed",
        "bit_length": bit_length,
        "update_management": True,
        "io": dict(PRESET_IO),
        **more,
    }


def _alias(name: str) -> str:
    """TTv2EcRamMOPreset -> ttv2_ecram_mo: the class name in snake_case, device stems
    spelt as aimc's device presets, without `Preset`."""
    stem = name.removesuffix("Preset")
    prefixes = {
        "TikiTaka": "tiki_taka_",
        "ChoppedTTv2": "chopped_ttv2_",
        "TTv2": "ttv2_",
        "AGAD": "agad_",
        "MixedPrecision": "mixed_precision_",
    }
    prefix = next((p for p in prefixes if stem.startswith(p)), "")
    short, rest = prefixes.get(prefix, ""), stem.removeprefix(prefix)
    match = re.fullmatch(r"([A-Za-z]+?)([24]?)", rest)
    assert match is not None and match.group(1) in DEVICES, name
    count = f"_{match.group(2)}" if match.group(2) else ""
    return f"{short}{DEVICES[match.group(1)]}{count}"


def _chopper(
    stem: str, values: tuple[float, ...], algorithm: str, in_chop_random: bool
) -> dict[str, Any]:
    """A TTv2 / Chopped TTv2 / AGAD preset: ChoppedTransferCompound (or its dynamic
    subclass) with transfer_update BL 1 without management, counting in vectors
    (units_in_mbatch False), auto_scale on, transfer reads without management."""
    fast_lr, granularity, in_chop, bit_length = values[:4]
    part: dict[str, Any] = {
        "fast_lr": fast_lr,
        "auto_scale": True,
        "auto_granularity": float(granularity),
        "in_chop_prob": in_chop,
        "in_chop_random": in_chop_random,
        "units_in_mbatch": False,
        "transfer_every": 1,
        "transfer_desired_bl": 1,
        "reference": "none",
    }
    if len(values) > 4:
        part["tail_weightening"] = values[4]
    symmetric = stem == "ReRamSB"
    return {
        "analog": _analog(_device(stem, symmetric=symmetric), int(bit_length)),
        "optimizer": {"algorithm": algorithm, algorithm: part},
    }


Found = list[tuple[str, str, dict[str, Any]]]  # (class name, summary, spec part)
_PCM_CELL = {"kind": "one_sided", "refresh_every": 1, "refresh_bit_length": 31}


def _sgd() -> Found:
    """SingleRPUConfig presets, PCMPreset (PCMPresetUnitCell: a OneSidedUnitCell with
    refresh_every 1 and a BL-31 refresh write) and the 2- and 4-device VectorUnitCell
    presets (SINGLE_RANDOM): all trained by Analog SGD."""
    found: Found = []
    for stem in (*COMPOUND_DEVICES, "GokmenVlasov"):
        spec = {"analog": _analog(_device(stem)), "optimizer": {"algorithm": "analog_sgd"}}
        found.append(
            (f"{stem}Preset", f"Analog SGD on one {DEVICES[stem]} device per weight", spec)
        )
    pcm = {
        "analog": _analog(_device("PCM"), unit_cell=_PCM_CELL),
        "optimizer": {"algorithm": "analog_sgd"},
    }
    found.append(
        (
            "PCMPreset",
            "Analog SGD on a pair of one-sided pcm devices, refreshed after each update",
            pcm,
        )
    )
    for count in (2, 4):
        for stem in COMPOUND_DEVICES:
            cell = {"kind": "vector", "devices": count, "update_policy": "single_random"}
            spec = {
                "analog": _analog(_device(stem), unit_cell=cell),
                "optimizer": {"algorithm": "analog_sgd"},
            }
            what = f"{count} {DEVICES[stem]} devices per weight, one pulsed at random per update"
            found.append((f"{stem}{count}Preset", f"Analog SGD on {what}", spec))
    return found


def _transfers() -> Found:
    """Tiki-Taka (TransferCompound, units_in_mbatch True, its defaults), TTv2 and Chopped
    TTv2 (ChoppedTransferCompound) and AGAD (DynamicTransferCompound)."""
    found: Found = []
    for stem in COMPOUND_DEVICES:
        tiki_taka = {
            "transfer_every": 1,
            "transfer_columns": 1,
            "transfer_lr": 1.0,
            "scale_transfer_lr": True,
            "gamma": 0.0,
            "reference": "none",
        }
        spec = {
            "analog": _analog(_device(stem, symmetric=stem == "ReRamSB")),
            "optimizer": {"algorithm": "tiki_taka", "tiki_taka": tiki_taka},
        }
        found.append(
            (f"TikiTaka{stem}Preset", f"Tiki-Taka on {DEVICES[stem]} arrays P and W", spec)
        )
    for stem in COMPOUND_DEVICES:
        summary = f"TTv2 on {DEVICES[stem]} arrays (aihwkit's chopped compound, no chopping)"
        found.append(
            (f"TTv2{stem}Preset", summary, _chopper(stem, _TTV2[stem], "chopped_ttv2", True))
        )
    for stem in COMPOUND_DEVICES:
        summary = (
            f"Chopped TTv2 on {DEVICES[stem]} arrays, input choppers flipping at random "
            f"({_CHOPPED[stem][2]} per read)"
        )
        spec = _chopper(stem, _CHOPPED[stem], "chopped_ttv2", True)
        found.append((f"ChoppedTTv2{stem}Preset", summary, spec))
    for stem in COMPOUND_DEVICES:
        summary = f"AGAD on {DEVICES[stem]} arrays: chopped, read against a dynamic reference"
        found.append((f"AGAD{stem}Preset", summary, _chopper(stem, _AGAD[stem], "agad", False)))
    return found


def _mixed_precision() -> Found:
    """MixedPrecisionCompound with its defaults around each device; for PCM around
    PCMPresetUnitCell."""
    found: Found = []
    for stem in (*COMPOUND_DEVICES, "GokmenVlasov", "PCM"):
        analog = _analog(_device(stem))
        what = f"one {DEVICES[stem]} device per weight"
        if stem == "PCM":
            analog["unit_cell"] = _PCM_CELL
            what = "a refreshed pair of one-sided pcm devices"
        spec = {"analog": analog, "optimizer": {"algorithm": "mixed_precision"}}
        summary = f"Mixed precision: a digital accumulator chi written to {what}"
        found.append((f"MixedPrecision{stem}Preset", summary, spec))
    return found


def _build() -> dict[str, Config]:
    """The 52 configurations, in the order of aihwkit's configs.py."""
    found = [*_sgd(), *_transfers(), *_mixed_precision()]
    return {name: Config(name, _alias(name), summary, spec) for name, summary, spec in found}


CONFIGS: dict[str, Config] = _build()
_BY_ALIAS = {c.alias: c for c in CONFIGS.values()}


def find_config(name: str) -> Config | None:
    """The configuration called `name`: aihwkit's class name or aimc's alias (with or
    without `_preset`), in any case."""
    if name in CONFIGS:
        return CONFIGS[name]
    key = name.strip().lower().removesuffix("_preset").removesuffix("preset")
    for config in CONFIGS.values():
        if key in (config.name.lower().removesuffix("preset"), config.alias):
            return config
    return _BY_ALIAS.get(key)


def closest_configs(name: str, n: int = 3) -> list[str]:
    """The configurations whose names are nearest a misspelt one, best first."""
    names = [*CONFIGS, *_BY_ALIAS]
    lowered = {candidate.lower(): candidate for candidate in names}
    near = difflib.get_close_matches(name.lower(), list(lowered), n=n * 2, cutoff=0.5)
    out: list[str] = []
    for match in near:
        config = find_config(lowered[match])
        if config is not None and config.name not in out:
            out.append(config.name)
    return out[:n]


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid onto `base`, mapping by mapping; anything else in `over` wins."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def expand(data: dict[str, Any], config: Config) -> dict[str, Any]:
    """A spec mapping with `config`'s part laid under it. A device given with its own
    `preset`, or with a `model` other than the configuration's, replaces the
    configuration's device instead of being merged field by field into it (its
    fields belong to another device)."""
    part = copy.deepcopy(config.spec)
    analog = data.get("analog")
    device = analog.get("device") if isinstance(analog, dict) else None
    if isinstance(device, dict):
        own_model = device.get("model")
        if device.get("preset") or (own_model and own_model != part["analog"]["device"]["model"]):
            del part["analog"]["device"]
    return merge(part, data)
