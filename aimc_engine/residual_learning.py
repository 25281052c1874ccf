"""Residual Learning (Wu et al., arXiv 2502.06309; analog-model.md section 6c).

Two arrays per layer, as Tiki-Taka: the MVMs use W-bar = W + gamma (P - P_ref), the
gradient at W-bar goes to P with the device rule at the optimizer's lr (the paper's
alpha), and every `transfer_every` updates the whole of P - P_ref is written into W
with the device rule at rate beta:

    P <- P - alpha grad f(W-bar) (.) F(P) - alpha |grad f(W-bar)| (.) G(P)
    W <- W + beta P (.) F(W) - beta |P| (.) G(W)

P then learns the residual between W and a critical point. Where P's device has G = 0
at the point P reads as 0 (its reference at the symmetric point), a fixed point needs
P = 0 and so grad f(W) = 0: exact convergence, where Analog SGD stops short by the
implicit penalty of its own G. The P update and the reference are Tiki-Taka's
(algorithms.py); this module is the transfer.
"""

from __future__ import annotations

import torch

from aimc_engine.layers import AnalogLayer
from aimc_engine.mvm import analog_mvm
from aimc_spec.analog_spec import IOSpec
from aimc_spec.residual_learning_spec import ResidualLearningSpec


def transfer(layer: AnalogLayer, spec: ResidualLearningSpec, updates: int, io: IOSpec) -> None:
    """After update `updates` (0-based) and every transfer_every-th: W += beta (P - P_ref),
    every column of P read through the IO model `io` (one-hot inputs) and written with the
    device rule, as an update -beta d^T x with x the unit rows and d = -read."""
    fast = layer.fast
    assert fast is not None  # the auxiliary array: created for every analog layer
    if (updates + 1) % spec.transfer_every:
        return
    p = fast.weight if layer.fast_ref is None else fast.weight - layer.fast_ref
    unit = torch.eye(p.shape[1], dtype=p.dtype, device=p.device)
    read = analog_mvm(p, unit, io, fast.noise_generator)  # (in, out): column j of P in row j
    layer.tile.update(unit, -read, spec.beta)
