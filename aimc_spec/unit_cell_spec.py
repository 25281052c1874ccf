"""Unit cells: several devices per weight, read as one (analog-model.md section 10).

`analog.unit_cell` (absent: one device per weight) makes every analog weight a cell of
devices, each of them an `analog.device` with its own device-to-device draw:

- `one_sided` (aihwkit's OneSidedUnitCell, the cell of its PCM presets): a pair g+, g-
  that only ever step up, the weight g+ - g-; an increase of w pulses g+, a decrease
  g-, and every `refresh_every` updates a pair that has drifted towards saturation
  is reset and its difference written back to one device.
- `vector` (aihwkit's VectorUnitCell): `devices` devices, the weight sum gamma_k w_k,
  an update going to all of them or to one picked by `update_policy`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from aimc_spec.spec_base import _fail, _Strict


class UnitCellSpecBase(_Strict):
    """A unit cell: `kind` picks one; each kind's class adds its fields."""

    kind: str = Field(description="Which cell: one_sided (a refreshed pair) or vector.")


class OneSidedCellSpec(UnitCellSpecBase):
    """A pair of devices that only step up, the weight g+ - g-, refreshed near saturation."""

    kind: Literal["one_sided"] = Field(description="A pair g+, g- with one-sided updates.")
    refresh_every: int = Field(
        0,
        ge=0,
        le=10**9,
        description="Check for refresh every this many updates of the tile (mini-batches, "
        "aihwkit's units_in_mbatch); 0: never (aihwkit's default; its PCM preset uses 1).",
    )
    units_in_mbatch: bool = Field(
        True,
        description="refresh_every counts mini-batches; only true (a tile is updated once "
        "per mini-batch, so aihwkit's per-vector count has no meaning here).",
    )
    refresh_upper_thres: float = Field(
        0.75,
        gt=0,
        description="A pair is refreshed when its larger device, over its w_max, passes this...",
    )
    refresh_lower_thres: float = Field(
        0.25, ge=0, description="...and its smaller device, over its w_max, passes this."
    )
    refresh_bit_length: int = Field(
        31,
        ge=1,
        le=255,
        description="Pulse-train length of the refresh write (aihwkit's refresh_update "
        "desired_bl; the write uses update management, as the PCM preset's does).",
    )
    copy_inverted: bool = Field(
        False,
        description="aihwkit's copy_inverted (g- takes g+'s parameters with up and down "
        "swapped); only false: both devices are drawn from analog.device.",
    )

    @model_validator(mode="after")
    def _check(self) -> OneSidedCellSpec:
        if not self.units_in_mbatch:
            raise _fail("units_in_mbatch", "only true: a tile is updated once per mini-batch")
        if self.copy_inverted:
            raise _fail("copy_inverted", "only false: both devices follow analog.device")
        if self.refresh_lower_thres > self.refresh_upper_thres:
            raise _fail("refresh_lower_thres", "must not exceed refresh_upper_thres")
        return self


VectorPolicy = Literal["all", "single_fixed", "single_sequential", "single_random"]


class VectorCellSpec(UnitCellSpecBase):
    """`devices` devices per weight, the weight their gamma-weighted sum."""

    kind: Literal["vector"] = Field(description="Several devices, a weighted sum.")
    devices: int = Field(2, ge=2, le=8, description="Devices per weight.")
    update_policy: VectorPolicy = Field(
        "all",
        description="Which devices an update pulses: all; single_fixed: first_update_idx "
        "always; single_sequential: the next one each update (the first update goes to "
        "first_update_idx + 1, as aihwkit's); single_random: one drawn uniformly each update.",
    )
    first_update_idx: int = Field(
        0, ge=0, description="The device single_fixed pulses, and single_sequential's start."
    )
    gamma_vec: list[float] | None = Field(
        None,
        description="Weight of each device in the sum, one per device; default 1/devices each.",
    )

    @model_validator(mode="after")
    def _check(self) -> VectorCellSpec:
        if self.first_update_idx >= self.devices:
            last = self.devices - 1
            raise _fail("first_update_idx", f"{self.first_update_idx} is not a device; 0..{last}")
        if self.gamma_vec is not None and len(self.gamma_vec) != self.devices:
            raise _fail(
                "gamma_vec",
                f"{len(self.gamma_vec)} values for {self.devices} devices; give one per device",
            )
        return self

    def gammas(self) -> list[float]:
        """The weight of each device in the sum."""
        return self.gamma_vec if self.gamma_vec is not None else [1 / self.devices] * self.devices


UnitCellSpec = Annotated[OneSidedCellSpec | VectorCellSpec, Field(discriminator="kind")]
