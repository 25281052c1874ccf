"""Tiki-Taka's part of the job spec (`optimizer.tiki_taka`; analog-model.md section 6),
the base of the algorithms that extend it (ttv2_spec.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.spec_base import _Strict


class TikiTakaSpec(_Strict):
    gamma: float = Field(0.0, ge=0, description="Inference weight is W + gamma * (P - P_ref).")
    transfer_lr: float = Field(
        1.0,
        gt=0,
        description="Rate of the P -> W transfer; times the current learning rate when "
        "scale_transfer_lr (aihwkit's default, 1.0).",
    )
    scale_transfer_lr: bool = Field(
        True, description="true: transfer at transfer_lr * lr (aihwkit); false: at transfer_lr."
    )
    transfer_every: int = Field(1, ge=1, description="Updates between two transfers.")
    transfer_columns: int = Field(1, ge=1, description="Columns of P read per transfer.")
    reference: Literal["symmetric_point", "none"] = Field(
        "symmetric_point",
        description="symmetric_point: before training P is driven to its symmetric point by "
        "alternating up/down pulses and that state is kept as a reference; P is read as "
        "P - P_ref (aihwkit's reference devices). none: P is read as it is.",
    )
