"""AGAD's part of the job spec (`optimizer.agad`): Chopped TTv2's shared fields and the
dynamic reference's, named and defaulted as aihwkit 1.2's DynamicTransferCompound
(docs/aihwkit.md; analog-model.md section 6)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.chopped_ttv2_spec import ChopperSpec


class AGADSpec(ChopperSpec):
    in_chop_prob: float = Field(
        0.1,
        gt=0,
        le=1,
        description="1/period of the input choppers' regular flips (a column flips every "
        "max(ceil(1/in_chop_prob), 2) passes), or their chance per read when in_chop_random.",
    )
    in_chop_random: bool = Field(False, description="true: random flips; false: regular ones.")
    reference: Literal["symmetric_point", "none"] = Field(
        "none",
        description="none (AGAD's point): P is read as it is and the running mean of the "
        "previous chopper period is the reference; symmetric_point: read against a static "
        "reference as well.",
    )
    tail_weightening: float = Field(
        5.0,
        gt=0,
        description="The running mean of P's reads moves by min(tail_weightening / period, "
        "1) per read, weighting a chopper period's tail.",
    )
    buffer_cap: float = Field(
        0.0,
        ge=0,
        description="Without forget_buffer: |H| is capped at buffer_cap * transfer_desired_bl; "
        "0: no cap.",
    )
