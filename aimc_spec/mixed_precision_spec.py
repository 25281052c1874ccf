"""The mixed-precision algorithm's part of the job spec (`optimizer.mixed_precision`).

Field names and defaults are aihwkit 1.2's MixedPrecisionCompound (docs/aihwkit.md):
the rank-one updates accumulate digitally in a matrix chi, and whole multiples of the
granularity are written to the device row by row (analog-model.md section 6b).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from aimc_spec.spec_base import _fail, _Strict


class MixedPrecisionSpec(_Strict):
    transfer_every: int = Field(
        1,
        ge=1,
        description="Updates (mini-batches) between two transfers of chi to the device; "
        "aihwkit counts it in mat-vec operations times the batch's rows.",
    )
    n_rows_per_transfer: int = Field(
        -1, ge=-1, description="Rows of chi written per transfer; -1: all (aihwkit's default)."
    )
    random_row: bool = Field(
        False,
        description="true: each transfer starts at a random row; false: where the last "
        "one stopped.",
    )
    granularity: float = Field(
        0.0,
        ge=0,
        description="The step epsilon of one transfer pulse: chi moves to the device in "
        "whole multiples of it; 0: the device's own granularity (dw_min).",
    )
    transfer_lr: float = Field(
        1.0,
        gt=0,
        description="Scale of the write: each row gets trunc(chi/eps) * eps * transfer_lr.",
    )
    n_x_bins: int = Field(
        0,
        ge=0,
        description="Levels the inputs x are quantised to, symmetric around 0 and scaled "
        "by each row's max |x| (dynamic), before the outer product; 0: no quantisation.",
    )
    n_d_bins: int = Field(0, ge=0, description="As n_x_bins, for the errors d; 0: no quantisation.")
    stoc_round_x: bool = Field(True, description="Stochastic rounding when quantising x.")
    stoc_round_d: bool = Field(True, description="Stochastic rounding when quantising d.")

    @model_validator(mode="after")
    def _bins(self) -> MixedPrecisionSpec:
        # floor(n / 2) levels each side: one bin would quantise everything to 0 / 0
        for name in ("n_x_bins", "n_d_bins"):
            if getattr(self, name) == 1:
                raise _fail(name, "1 bin leaves no level but 0; use 0 (off) or at least 2")
        if self.n_rows_per_transfer == 0:
            raise _fail("n_rows_per_transfer", "0 never transfers; use -1 (all rows) or >= 1")
        return self
