"""TTv2 (aihwkit's BufferedTransferCompound, Gokmen 2021; analog-model.md section 6):
Tiki-Taka with a digital buffer H between the fast array P and the slow array W.

A transfer reads columns of P as Tiki-Taka does, but adds them, times the transfer
rate, into H instead of writing them; only where H passes a threshold does W move, by
whole steps (aihwkit 1.2's BufferedTransferRPUDevice::readAndUpdate):

    omega = H + rate * read,   eps = thres_scale * granularity(W)
    n     = clip(trunc(omega / eps), -transfer_desired_bl, transfer_desired_bl)
    H     = momentum * omega where n != 0, else omega              (forget_buffer)
            omega - (1 - momentum) * n * eps                        (otherwise)
    W[:, col] += step * granularity(W) * n   (an update with x the unit column, d = -n)

So W sees only a few large, sign-certain steps instead of every small noisy read.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aimc_engine.layers import AnalogLayer
from aimc_spec.ttv2_spec import TTv2Spec


class TransferBuffer(nn.Module):
    """A layer's digital buffer H, (out, in), zero at the start; a buffer of the layer,
    so checkpoints and stage processes carry it."""

    h: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("h", torch.zeros_like(weight))


def attach(layer: AnalogLayer) -> None:
    """Give the layer its buffer H."""
    layer.add_module("transfer_buffer", TransferBuffer(layer.tile.weight))


def buffered_write(
    layer: AnalogLayer, spec: TTv2Spec, cols: list[int], x: Tensor, read: Tensor, rate: float
) -> None:
    """Add rate * read (n_cols, out: the columns `cols` of P - P_ref) into H and write
    the whole steps into W; x holds the unit rows of those columns (n_cols, in)."""
    buffer = layer.transfer_buffer
    assert isinstance(buffer, TransferBuffer)
    granularity = layer.tile.device_model.granularity
    eps = spec.thres_scale * granularity
    omega = buffer.h[:, cols] + rate * read.T  # (out, n_cols)
    limit = float(spec.transfer_desired_bl)
    n = torch.trunc(omega / eps).clamp_(-limit, limit)
    moved = n != 0
    if spec.forget_buffer:
        kept = torch.where(moved, omega * spec.momentum, omega)
    else:
        kept = omega - (1 - spec.momentum) * n * eps
    buffer.h[:, cols] = kept
    if bool(moved.any()):
        layer.tile.update(x, -n.T, spec.step * granularity)
