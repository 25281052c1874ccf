"""Energy of a run, from what it did and what each operation costs (docs/energy.md).

Torch-free: the engine hands over its counts (samples through the pipeline, updates
and device pulses per stage) and this module prices them with the job's `hardware`
figures (hardware_spec.py). Per sample and weight layer l (fan_in x fan_out weights
used at `pos` places; resources.layers):

- forward: analog l: macs_l mvm + fan_in pos dac + fan_out pos adc; digital l: macs_l op
- backward: the same with the conversions swapped, for every layer but the network's
  first (its input needs no gradient); a digital layer also computes its weight
  gradient (macs_l op more)
- update: pulses pulse (the tiles' device pulses, whichever write made them); a digital
  layer's update: weights op per update
- transfer: each column read of the Tiki-Taka family's P: fan_out mvm + dac + fan_out
  adc, and 2 fan_out buffer words where a buffer holds the reads (ttv2, chopped_ttv2,
  agad); mixed precision: the digital outer product into chi (macs_l op per sample) and
  2 words of chi per weight written per transfer
- peripheral: activations (outputs_l op forward and backward), the pulse trains'
  generation ((fan_in + fan_out) pos op per sample and analog l), weight stashes (2
  words per weight per micro-batch), accumulated gradients ((k - 1) / k op per weight
  per micro-batch: k - 1 additions per k)
- communication: each stage boundary, link_bits link per element, activations forward
  and gradients back

A figure left unset prices its operations at nothing, and the result lists it under
`not_counted`. The digital reference is the same job's FLOPs (2 per MAC forward, 4
backward, 2 for the first layer; 2 per weight and update) at digital_pj_per_flop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aimc_spec.configs import find_config
from aimc_spec.resources import Layer, layers
from aimc_spec.spec import JobSpec

KINDS = ("forward", "backward", "update", "transfer", "peripheral", "communication")
BUFFERED = ("ttv2", "chopped_ttv2", "agad")  # a digital buffer holds the column reads


@dataclass(frozen=True)
class StageWork:
    """What one stage did so far: its updates and its tiles' device pulses."""

    updates: int
    pulses: float


@dataclass
class Energy:
    """pJ by stage and kind; what no figure priced; the pulses counted."""

    by_stage: list[dict[str, float]]
    not_counted: list[str] = field(default_factory=list)
    pulses: float = 0.0

    @property
    def by_kind(self) -> dict[str, float]:
        return {k: sum(stage[k] for stage in self.by_stage) for k in KINDS}

    @property
    def total(self) -> float:
        return sum(self.by_kind.values())


def analog_flags(spec: JobSpec, count: int) -> list[bool]:
    """Which of the model's `count` weight layers are analog (analog.layers)."""
    a = spec.analog
    if not a.enabled:
        return [False] * count
    if a.layers == "all":
        return [True] * count
    if a.layers == "last":
        return [i == count - 1 for i in range(count)]
    return [i in a.layers for i in range(count)]


def stage_layers(spec: JobSpec, units: Sequence[range]) -> list[list[int]]:
    """The weight layers (indices into resources.layers) of each stage's units."""
    per_unit = spec.model.layers_per_unit
    starts = [sum(per_unit[:i]) for i in range(len(per_unit))]
    return [[starts[u] + k for u in r for k in range(per_unit[u])] for r in units]


def boundary_elements(spec: JobSpec, found: list[Layer], last_layer: int) -> int:
    """Elements per sample a stage ending at weight layer `last_layer` sends on: its
    outputs, pooled 2x2 after a cnn convolution."""
    outputs = found[last_layer].outputs
    pooled = spec.model.kind == "cnn" and last_layer < len(spec.model.channels)
    return outputs // 4 if pooled else outputs


def device_preset(spec: JobSpec) -> str | None:
    """The device preset the tiles are built on: analog.device.preset, or the one of
    the configuration the spec names."""
    if spec.analog.device.preset:
        return spec.analog.device.preset
    config = find_config(spec.analog.config) if spec.analog.config else None
    return config.device if config is not None else None


def column_reads(spec: JobSpec, layer: Layer, samples: int, updates: int) -> int:
    """Column reads of a layer's P by the transfers of `updates` updates over `samples`."""
    o = spec.optimizer
    if o.algorithm in ("tiki_taka", "ttv2"):
        part = o.tiki_taka if o.algorithm == "tiki_taka" else o.ttv2
        return updates // part.transfer_every * min(part.transfer_columns, layer.fan_in)
    if o.algorithm in ("chopped_ttv2", "agad"):
        chop = o.chopped_ttv2 if o.algorithm == "chopped_ttv2" else o.agad
        count = updates if chop.units_in_mbatch else samples * layer.positions
        return count // chop.transfer_every * min(chop.transfer_columns, layer.fan_in)
    if o.algorithm == "residual_learning":
        return updates // o.residual_learning.transfer_every * layer.fan_in
    return 0


def format_energy(pj: float) -> str:
    """pJ in the unit that reads best: 1.85 uJ, 320 pJ, 4.2 J."""
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _price(value: float | None, name: str, missing: set[str]) -> float:
    """A figure, or 0 with its name noted as missing."""
    if value is None:
        missing.add(name)
        return 0.0
    return value


def estimate(
    spec: JobSpec,
    sample_shape: tuple[int, ...],
    units: Sequence[range],
    samples: int,
    work: Sequence[StageWork],
) -> Energy:
    """The run's energy after `samples` samples through every stage and `work`."""
    hw, found = spec.hardware, layers(spec, sample_shape)
    analog = analog_flags(spec, len(found))
    missing: set[str] = set()
    mvm = _price(hw.mvm_pj_per_mac, "mvm_pj_per_mac", missing) if any(analog) else 0.0
    separate = any(analog) and not hw.mvm_includes_conversions
    dac = _price(hw.dac_pj, "dac_pj", missing) if separate else 0.0
    adc = _price(hw.adc_pj, "adc_pj", missing) if separate else 0.0
    op = _price(hw.digital_op_pj, "digital_op_pj", missing)
    pulse = hw.pulse_pj_for(device_preset(spec))
    if any(analog) and pulse is None:
        missing.add("pulse_pj")
    pulse = pulse or 0.0
    micro_batches = samples / spec.training.micro_batch_size
    stages = stage_layers(spec, units)
    by_stage = []
    for s, (indices, did) in enumerate(zip(stages, work, strict=True)):
        e = dict.fromkeys(KINDS, 0.0)
        for i in indices:
            ly, pos = found[i], found[i].positions
            if analog[i]:
                e["forward"] += samples * (
                    ly.macs * mvm + ly.fan_in * pos * dac + ly.fan_out * pos * adc
                )
                if i > 0:
                    e["backward"] += samples * (
                        ly.macs * mvm + ly.fan_out * pos * dac + ly.fan_in * pos * adc
                    )
                e["peripheral"] += samples * (ly.fan_in + ly.fan_out) * pos * op
                e["transfer"] += _transfer(spec, ly, samples, did.updates, mvm, dac, adc, missing)
            else:
                e["forward"] += samples * ly.macs * op
                e["backward"] += samples * ly.macs * op * (2 if i > 0 else 1)
                e["update"] += did.updates * ly.weights * op
            e["peripheral"] += 2 * samples * ly.outputs * op  # activation and its derivative
        e["update"] += did.pulses * pulse
        weights = sum(found[i].weights for i in indices)
        if spec.pipeline.schedule == "async_stash":
            word = _price(hw.sram_pj_per_word, "sram_pj_per_word", missing)
            e["peripheral"] += 2 * micro_batches * weights * word
        compensation = spec.pipeline.compensation
        if compensation.mode == "accumulate":  # k gradients summed: k - 1 additions
            e["peripheral"] += micro_batches * weights * op * (compensation.k - 1) / compensation.k
        if s < len(stages) - 1:
            link = _price(hw.link_pj_per_bit, "link_pj_per_bit", missing)
            sent = boundary_elements(spec, found, indices[-1])
            e["communication"] += 2 * samples * sent * hw.link_bits * link
        by_stage.append(e)
    pulses = sum(w.pulses for w in work)
    return Energy(by_stage, sorted(missing), pulses)


def _transfer(
    spec: JobSpec,
    ly: Layer,
    samples: int,
    updates: int,
    mvm: float,
    dac: float,
    adc: float,
    missing: set[str],
) -> float:
    """A layer's transfer energy (module docstring)."""
    hw, algorithm = spec.hardware, spec.optimizer.algorithm
    if algorithm == "mixed_precision":
        op = hw.digital_op_pj or 0.0
        word = _price(hw.sram_pj_per_word, "sram_pj_per_word", missing)
        transfers = updates // spec.optimizer.mixed_precision.transfer_every
        return samples * ly.macs * op + 2 * transfers * ly.fan_in * ly.fan_out * word
    reads = column_reads(spec, ly, samples, updates)
    if not reads:
        return 0.0
    energy = reads * (ly.fan_out * mvm + dac + ly.fan_out * adc)
    if algorithm in BUFFERED:
        energy += reads * 2 * ly.fan_out * _price(hw.sram_pj_per_word, "sram_pj_per_word", missing)
    return energy


def digital_reference(
    spec: JobSpec, sample_shape: tuple[int, ...], samples: int, updates: int
) -> float | None:
    """The same job's energy on the GPU of `digital_pj_per_flop` (module docstring); None
    without that figure."""
    per_flop = spec.hardware.digital_pj_per_flop
    if per_flop is None:
        return None
    found = layers(spec, sample_shape)
    flops = samples * sum(ly.macs * (2 + (4 if i > 0 else 2)) for i, ly in enumerate(found))
    flops += updates * sum(2 * ly.weights for ly in found)
    return flops * per_flop


def to_target(metrics: Sequence[dict[str, Any]], target: float | None) -> dict[str, Any] | None:
    """The first metric point at or above `target` test accuracy: its energy, hardware
    time and step; None without a target, reached False where none got there."""
    if target is None:
        return None
    for record in metrics:
        if record["test_accuracy"] >= target:
            return {
                "target_accuracy": target,
                "reached": True,
                "energy_pj": record["energy_pj"],
                "hardware_ns": record["sim_time_ns"],
                "step": record["step"],
            }
    return {"target_accuracy": target, "reached": False}


def summary(
    spec: JobSpec,
    sample_shape: tuple[int, ...],
    units: Sequence[range],
    samples: int,
    work: Sequence[StageWork],
    metrics: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """result.json's `energy`: totals, the split, the digital reference and its ratio,
    the hardware time of the last metric point and the energy to the target."""
    energy = estimate(spec, sample_shape, units, samples, work)
    updates = max((w.updates for w in work), default=0)
    reference = digital_reference(spec, sample_shape, samples, updates)
    total = energy.total
    return {
        "total_pj": total,
        "per_sample_pj": total / samples if samples else None,
        "by_kind_pj": energy.by_kind,
        "by_stage_pj": energy.by_stage,
        "pulses": energy.pulses,
        "hardware_ns": metrics[-1]["sim_time_ns"] if metrics else 0.0,
        "not_counted": energy.not_counted,
        "digital_reference_pj": reference,
        "digital_over_analog": reference / total if reference is not None and total else None,
        "to_target": to_target(metrics, spec.hardware.target_accuracy),
        "assumptions": (
            "an estimate: per-operation figures from the hardware profile (docs/energy.md); "
            "static power, control and memory outside the tiles are not counted; the "
            "digital reference assumes the GPU at peak FP32 throughput and full power"
        ),
    }
