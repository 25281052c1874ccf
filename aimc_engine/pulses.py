"""Pulse counts for an update -lr * d^T x: stochastic pulse trains and stochastic rounding.

Stochastic pulse trains (Gokmen & Vlasov 2016; analog-model.md section 4):
per sample and slot t < BL, input j fires with probability B|x_j| and error i
with A|d_i|, A*B = lr / (dw_min * BL). Each coincidence is one pulse on (i, j)
of sign -sign(x_j) sign(d_i), so E[net pulses] * dw_min = -lr * d^T x. Counting
coincidences over all (slot, sample) rows is a product of 0/1 matrices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aimc_engine.rng import uniform


def pulse_train_counts(
    x: Tensor,
    d: Tensor,
    *,
    lr: float,
    dw_min: float,
    bit_length: int,
    update_management: bool,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """(n_up, n_down), each (out, in), for x of shape (N, in) and d of shape (N, out).

    With update management (aihwkit's default) the two sides' probabilities are
    balanced by sqrt(max|x| / max|d|) and BL is capped at
    ceil(lr * max|x| * max|d| / dw_min), the fewest slots that keep every
    probability <= 1; this is what makes small updates cheap.
    """
    x_max = float(x.abs().max()) if x.numel() else 0.0
    d_max = float(d.abs().max()) if d.numel() else 0.0
    out_features, in_features = d.shape[1], x.shape[1]
    if x_max == 0 or d_max == 0:
        zeros = torch.zeros(out_features, in_features, dtype=x.dtype, device=x.device)
        return zeros, zeros.clone()
    bl = bit_length
    if update_management:
        bl = max(1, min(bit_length, math.ceil(lr * x_max * d_max / dw_min)))
    k = lr / (dw_min * bl)  # A * B
    if update_management:
        a, b = math.sqrt(k * x_max / d_max), math.sqrt(k * d_max / x_max)
    else:
        a = b = math.sqrt(k)
    n = x.shape[0]
    # floor(u + p) is 1 with probability p (p <= 1): cheaper than a compare and a cast
    fire_x = torch.floor(
        uniform((bl, n, in_features), generator, x.device).add_((b * x.abs()).clamp_(max=1))
    ).reshape(bl * n, in_features)  # (BL*N, in)
    fire_d = torch.floor(
        uniform((bl, n, out_features), generator, d.device).add_((a * d.abs()).clamp_(max=1))
    ).reshape(bl * n, out_features)  # (BL*N, out)
    signed_x = fire_x * torch.sign(x).repeat(bl, 1)
    signed_d = fire_d * torch.sign(d).repeat(bl, 1)
    total = fire_d.T @ fire_x  # all coincidences
    same_sign = signed_d.T @ signed_x  # (#sign(x)=sign(d)) - (#opposite)
    n_down = (total + same_sign) / 2
    return total - n_down, n_down


def rounded_counts(
    delta: Tensor, *, dw_min: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(n_up, n_down) with n = stochastic_round(|dW| / dW_min), unbiased in expectation.

    Consumes `delta` (computed in place: each pass over the tile costs as much as
    the weight-gradient product on a CPU).
    """
    up = torch.sign(delta).clamp_(min=0)  # sign, not a boolean mask: faster on CPU
    n = delta.abs_().mul_(1 / dw_min).add_(uniform(delta.shape, generator, delta.device)).floor_()
    n_up = up.mul_(n)
    return n_up, n.sub_(n_up)
