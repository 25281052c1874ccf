"""The analog part of the job spec: which layers are analog, the device (one spec model
per response family, aimc_spec/devices/), the IO model of the MVMs and how updates
reach the device (analog-model.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aimc_spec.devices import DeviceSpec, parse_device
from aimc_spec.spec_base import _fail, _Strict
from aimc_spec.unit_cell_spec import UnitCellSpec


class IOSpec(_Strict):
    perfect: bool = Field(True, description="true: exact MVMs (no DAC/ADC, noise or bounds).")
    dac_bits: int = Field(7, ge=2, le=24, description="Input DAC resolution.")
    adc_bits: int = Field(9, ge=2, le=24, description="Output ADC resolution.")
    out_noise: float = Field(0.06, ge=0, description="Std of Gaussian output noise per MVM.")
    in_bound: float = Field(1.0, gt=0, description="Inputs are clipped to +-in_bound.")
    out_bound: float = Field(12.0, gt=0, description="Outputs are clipped to +-out_bound.")
    noise_management: bool = Field(True, description="Scale inputs by max|x| before the DAC.")
    bound_management: bool = Field(True, description="Halve inputs and redo when outputs clip.")


class AnalogSpec(_Strict):
    enabled: bool = Field(True, description="false: floating-point weights everywhere.")
    config: str | None = Field(
        None,
        description="An aihwkit 1.2 training configuration by name (TTv2EcRamPreset, "
        "or its alias ttv2_ecram; GET /v1/configs or `aimc configs` lists the 52): it "
        "sets the device or unit cell, the algorithm, the IO and the pulsed update, and "
        "every field the spec gives itself overrides it.",
    )
    layers: Literal["all", "last"] | list[int] = Field(
        "all", description="Which weight layers are analog: all, last, or indices."
    )
    device: DeviceSpec = Field(
        default_factory=parse_device,
        description="The device: `model` picks its response family (default softbounds) and "
        "the device takes that family's fields only; or a `preset` sets them.",
    )
    unit_cell: UnitCellSpec | None = Field(
        None,
        description="Several devices per weight (each an analog.device): kind one_sided (a "
        "refreshed pair g+ - g-) or vector (a weighted sum); absent: one device per weight.",
    )
    update: Literal["expected", "pulsed", "rounded"] = Field(
        "expected",
        description="expected: the F/G rule; pulsed: stochastic pulse trains; "
        "rounded: stochastic rounding to whole pulses.",
    )
    bit_length: int = Field(31, ge=1, le=255, description="Pulse-train length BL (pulsed).")
    update_management: bool = Field(
        True, description="pulsed: balance the two sides' probabilities and cap BL as aihwkit does."
    )
    io: IOSpec = Field(default_factory=IOSpec)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _cell_devices(self) -> AnalogSpec:
        """A one-sided cell resets its devices, which aihwkit refuses under write noise
        (resetAtIndices); so does this spec. A vector cell never resets and takes it."""
        pair = self.unit_cell is not None and self.unit_cell.kind == "one_sided"
        if pair and self.device.write_noise_std:
            raise _fail(
                "unit_cell",
                "a one-sided cell resets its devices, which needs them without write "
                "noise; set analog.device.write_noise_std: 0",
            )
        return self
