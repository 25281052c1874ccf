"""Chopped TTv2's part of the job spec (`optimizer.chopped_ttv2`): fields named and
defaulted as aihwkit 1.2's ChoppedTransferCompound (docs/aihwkit.md; analog-model.md
section 6). Counts are in updates unless units_in_mbatch is false (then in vectors, the
rows of the updates, aihwkit's default; aimc keeps updates as its default so that a spec
written before the field existed trains as it did)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.spec_base import _Strict


class ChopperSpec(_Strict):
    """The fields Chopped TTv2 and AGAD share (aihwkit's DynamicTransferCompound extends
    ChoppedTransferCompound)."""

    transfer_every: int = Field(
        1, ge=1, description="Updates (vectors unless units_in_mbatch) between two transfers."
    )
    units_in_mbatch: bool = Field(
        True,
        description="true: transfer_every counts updates (mini-batches); false: it counts "
        "vectors, the rows of the updates (aihwkit's default), so an update of m rows makes "
        "m / transfer_every transfers, all after its pulses.",
    )
    auto_scale: bool = Field(
        False,
        description="true: P's learning rate is fast_lr * bit_length * granularity(P) / "
        "(m_x m_d), m_x and m_d running means of each row's max |x| and |d| (aihwkit's "
        "auto_scale); times lr when scale_fast_lr.",
    )
    auto_momentum: float = Field(
        0.99,
        ge=0,
        lt=1,
        description="auto_scale's running means move by (1 - auto_momentum) / rows per row.",
    )
    transfer_columns: int = Field(
        1, ge=1, description="Columns of P read per transfer, in turn (n_reads_per_transfer)."
    )
    transfer_lr: float = Field(
        1.0, gt=0, description="Rate of the reads into the buffer; times lr when scale_transfer_lr."
    )
    scale_transfer_lr: bool = Field(True, description="true: transfer rate transfer_lr * lr.")
    fast_lr: float = Field(
        1.0,
        gt=0,
        description="Learning rate of P's updates; times lr only when scale_fast_lr "
        "(aihwkit's default keeps it absolute).",
    )
    scale_fast_lr: bool = Field(False, description="true: P is updated at fast_lr * lr.")
    reference: Literal["symmetric_point", "none"] = Field(
        "symmetric_point", description="P read against a reference at its symmetric point, or not."
    )
    in_chop_prob: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Chance that a column's input chopper flips after its read (in_chop_random), "
        "or 1/period of regular flips; 0: never.",
    )
    in_chop_random: bool = Field(True, description="true: random flips; false: regular ones.")
    buffer_granularity: float = Field(
        1.0,
        ge=0,
        description="One step of the buffer in units of P's granularity (0 counts as 1).",
    )
    auto_granularity: float = Field(
        0.0,
        ge=0,
        description="If > 0: the buffer step is further scaled by auto_granularity / "
        "(columns x transfer_every), the updates one column waits between reads.",
    )
    step: float = Field(1.0, gt=0, description="Each buffer step writes step * granularity(W).")
    momentum: float = Field(0.0, ge=0, le=1, description="Fraction the buffer keeps after a write.")
    forget_buffer: bool = Field(
        True,
        description="true: after a write the buffer keeps momentum * H; false: H - (1 - "
        "momentum) * n.",
    )
    transfer_desired_bl: int = Field(
        1, ge=1, le=255, description="The most steps one write may take (transfer BL)."
    )


class ChoppedTTv2Spec(ChopperSpec):
    out_chop_prob: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Chance that each output chopper flips after the last column's read.",
    )
    no_buffer: bool = Field(
        False, description="true: no buffer; each read alone must pass the threshold."
    )
