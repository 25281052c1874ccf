"""Residual Learning's part of the job spec (`optimizer.residual_learning`).

The algorithm of Wu et al. (arXiv 2502.06309; analog-model.md section 6c): an
auxiliary array P learns the residual with the device rule at the optimizer's lr
(the paper's alpha), the MVMs use W-bar = W + gamma P, and P is written into W at rate
beta. The parameters carry the paper's names; the defaults are aimc's choices.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aimc_spec.spec_base import _Strict


class ResidualLearningSpec(_Strict):
    gamma: float = Field(
        1.0, ge=0, description="The MVMs use W-bar = W + gamma * (P - P_ref) (the paper's gamma)."
    )
    beta: float = Field(
        0.01,
        gt=0,
        description="Rate of the transfer W <- W + beta * (P - P_ref), written with the "
        "device rule (the paper's beta); not scaled by the learning rate.",
    )
    transfer_every: int = Field(
        1, ge=1, description="Updates between two transfers; the paper transfers every update."
    )
    reference: Literal["symmetric_point", "none"] = Field(
        "symmetric_point",
        description="symmetric_point: P is read against a reference at its symmetric point, "
        "so the residual's device has G = 0 where P reads 0 (the paper's condition for "
        "exact convergence); none: P is read as it is.",
    )
