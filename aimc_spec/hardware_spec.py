"""The hardware part of the job spec (`hardware`): what each operation costs in energy,
for the energy estimate of every run (aimc_spec/energy.py; docs/energy.md).

Every default carries its source below and in docs/energy.md. Where we found no
published figure (a pulse on most devices, a link between stages) the field is left
unset: that part is then reported as not counted, never filled with a guess; a user
who has a figure sets it. A named `profile` sets the fields; the spec's own fields
override it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from aimc_spec.spec_base import _Strict

# Le Gallo et al., "A 64-core mixed-signal in-memory compute chip based on phase-change
# memory for deep neural network inference", Nature Electronics 6, 680-693 (2023),
# abstract: 9.76 TOPS/W for 8-bit input/output matrix-vector multiplications, a MAC
# being 2 operations; the figure includes the cores' input (PWM) and output (ADC)
# conversions, so the profile leaves dac_pj and adc_pj unset rather than count them twice
MVM_PJ_PER_MAC = 2 / 9.76  # 0.205 pJ
# Han et al., "Learning both Weights and Connections for Efficient Neural Networks",
# NeurIPS 2015, Table 1 (45 nm CMOS, after Horowitz, ISSCC 2014): 32-bit float add 0.9
# pJ, float multiply 3.7 pJ, 32-bit SRAM access 5 pJ
DIGITAL_OP_PJ = 0.9 + 3.7  # one 32-bit floating-point multiply-add
SRAM_PJ_PER_WORD = 5.0
# Tang et al., "ECRAM as Scalable Synaptic Cell for High-Speed, Low-Power Neuromorphic
# Computing", IEDM 2018, abstract: switching energy ~1 fJ projected for 100x100 nm^2
# devices (a projection from the measured scaling with pulse charge)
PULSE_PJ = {"ecram": 0.001, "ecram_mo": 0.001}
# NVIDIA A100 Tensor Core GPU datasheet (2020), technical specifications: FP32 19.5
# TFLOPS at 400 W max TDP (SXM4): 20.5 pJ per FLOP at peak throughput and full power
GPU_PJ_PER_FLOP = 400 / 19.5e12 * 1e12

PROFILES: dict[str, dict[str, Any]] = {
    # every figure above; what has none stays unset (not counted)
    "published": {
        "mvm_pj_per_mac": MVM_PJ_PER_MAC,
        "digital_op_pj": DIGITAL_OP_PJ,
        "sram_pj_per_word": SRAM_PJ_PER_WORD,
        "digital_pj_per_flop": GPU_PJ_PER_FLOP,
    },
    # the arrays alone (their MVMs and pulses): the peripheral digital work, buffers and
    # links left out, as papers that count only the crossbars do
    "arrays_only": {
        "mvm_pj_per_mac": MVM_PJ_PER_MAC,
        "digital_pj_per_flop": GPU_PJ_PER_FLOP,
    },
}


def _pj(description: str) -> Any:
    return Field(None, ge=0, description=description)


class HardwareSpec(_Strict):
    """What one operation costs (pJ); unset: not counted, and said so in the result."""

    profile: Literal["published", "arrays_only"] = Field(
        "published",
        description="Named figures with their sources (docs/energy.md): published (every "
        "figure we found), arrays_only (the arrays' MVMs and pulses only); fields given "
        "here override the profile's.",
    )
    mvm_pj_per_mac: float | None = _pj(
        "Energy of one multiply-accumulate of an analog MVM on the array (forward, "
        "backward and transfer reads); published: 0.205 (Le Gallo 2023, with conversions)."
    )
    mvm_includes_conversions: bool = Field(
        True,
        description="true: mvm_pj_per_mac includes the DAC and ADC conversions (the "
        "profiles' figure does), so dac_pj and adc_pj are not added; false: they are.",
    )
    dac_pj: float | None = _pj(
        "Energy of one input conversion (at analog.io.dac_bits); unset in the profiles: "
        "their MVM figure includes it."
    )
    adc_pj: float | None = _pj(
        "Energy of one output conversion (at analog.io.adc_bits); unset in the profiles: "
        "their MVM figure includes it."
    )
    pulse_pj: float | None = _pj(
        "Energy of one pulse on a device; default by device preset where published "
        "(ecram, ecram_mo: 0.001, Tang 2018), else unset."
    )
    digital_op_pj: float | None = _pj(
        "Energy of one digital operation (a 32-bit multiply-add) of the periphery: "
        "activations, pulse-train generation, digital layers, accumulators; published: 4.6."
    )
    sram_pj_per_word: float | None = _pj(
        "Energy of one 32-bit buffer access (weight stashes, TTv2's H, mixed precision's "
        "chi); published: 5."
    )
    link_pj_per_bit: float | None = _pj(
        "Energy per bit sent between stages (activations forward, gradients back); no "
        "published default: set it for multi-stage jobs."
    )
    link_bits: int = Field(
        16, ge=1, le=64, description="Bits per activation or gradient element sent."
    )
    digital_pj_per_flop: float | None = _pj(
        "The digital reference: energy per FLOP of the same job on a GPU; published: "
        "20.5 (A100 FP32 at 400 W TDP and 19.5 TFLOPS)."
    )
    target_accuracy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="If set: the energy and hardware time until the first metric point "
        "at or above this test accuracy are reported.",
    )

    @model_validator(mode="before")
    @classmethod
    def _profile(cls, data: Any) -> Any:
        """The profile's figures under the fields given."""
        if not isinstance(data, dict):
            return data
        name = data.get("profile", "published")
        figures = PROFILES.get(name, {}) if isinstance(name, str) else {}
        return {**figures, **data}

    def pulse_pj_for(self, preset: str | None) -> float | None:
        """pulse_pj, or the published figure for the device preset, or None."""
        if self.pulse_pj is not None:
            return self.pulse_pj
        if self.profile in PROFILES and preset is not None:
            return PULSE_PJ.get(preset)
        return None
