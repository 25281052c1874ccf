"""TTv2's part of the job spec (`optimizer.ttv2`): Tiki-Taka's fields and the digital
buffer's, named and defaulted as aihwkit 1.2's BufferedTransferCompound (docs/aihwkit.md;
analog-model.md section 6)."""

from __future__ import annotations

from pydantic import Field

from aimc_spec.tiki_taka_spec import TikiTakaSpec


class TTv2Spec(TikiTakaSpec):
    thres_scale: float = Field(
        1.0,
        gt=0,
        description="The buffer's threshold in units of W's granularity: a column of the "
        "buffer H moves n = trunc(H / (thres_scale * granularity)) steps into W.",
    )
    step: float = Field(
        1.0, gt=0, description="Each of the n steps writes step * granularity into W."
    )
    momentum: float = Field(
        0.1,
        ge=0,
        le=1,
        description="After a write, this fraction stays in H: momentum * H with "
        "forget_buffer, else H - (1 - momentum) * n * threshold.",
    )
    forget_buffer: bool = Field(
        True, description="true: H keeps momentum * H after a write (aihwkit's default)."
    )
    transfer_desired_bl: int = Field(
        1,
        ge=1,
        le=255,
        description="The most steps one write may take, |n| <= this (aihwkit's "
        "transfer_update.desired_bl, 1 by default).",
    )
