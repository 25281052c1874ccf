"""Mixed precision (aihwkit's MixedPrecisionCompound; analog-model.md section 6b).

The rank-one update lr * d^T x is computed digitally, optionally on quantised x and d,
and accumulated in a floating-point matrix chi of the tile's shape; the device only
receives whole multiples of a granularity eps, row by row: a transfer writes
n = trunc(chi / eps) to the device as an update of eps * transfer_lr * n and keeps the
remainder chi - n * eps. The forward and backward passes read the device only.

Timing follows aihwkit 1.2 (MixedPrecRPUDeviceBase::doTransfer): the rows x_i, d_i of
each update are applied one vector at a time, counted over the run; after vector c is
added, chi is transferred if c > 0 and c is a multiple of transfer_every times the
update's rows, so a transfer lands after the first vector of every transfer_every-th
update and carries that vector with it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aimc_engine.layers import AnalogLayer
from aimc_engine.rng import counter_uniform, draw_key
from aimc_engine.tiles import AnalogTile
from aimc_spec.mixed_precision_spec import MixedPrecisionSpec


class MixedPrecisionState(nn.Module):
    """A layer's digital accumulator chi and the transfer's place, as buffers: they
    travel in the layer's state_dict, hence in checkpoints and across stage processes."""

    chi: Tensor
    vectors: Tensor
    next_row: Tensor

    def __init__(self, tile: AnalogTile) -> None:
        super().__init__()
        self.register_buffer("chi", torch.zeros_like(tile.weight))
        self.register_buffer("vectors", torch.zeros((), dtype=torch.int64))  # seen so far
        self.register_buffer("next_row", torch.zeros((), dtype=torch.int64))


def quantise(v: Tensor, n_bins: int, stochastic: bool, generator: torch.Generator) -> Tensor:
    """Each row of v on floor(n_bins/2) levels each side of 0, scaled by the row's own
    max |v| (aihwkit's dynamic quantisation in MixedPrecRPUDevice::doDirectVectorUpdate):
    q = clip(rint(v / w + u - 1/2), -h, h) * w, w = max|v| / h, u ~ U(0, 1) when
    stochastic, else 1/2; a zero row keeps w = 1. n_bins 0: v unchanged."""
    if n_bins == 0:
        return v
    half = float(n_bins // 2)
    width = v.abs().amax(dim=1, keepdim=True) / half
    width = torch.where(width == 0, torch.ones_like(width), width)
    scaled = v / width
    if stochastic:
        u = counter_uniform(tuple(v.shape), draw_key(generator), v.device).to(v.dtype)
        scaled = scaled + (u - 0.5)
    return torch.round(scaled).clamp_(-half, half).mul_(width)


class MixedPrecision:
    """The algorithm for analog layers: chi per layer, transfers to the device."""

    def __init__(self, spec: MixedPrecisionSpec) -> None:
        self.spec = spec

    def attach(self, layer: AnalogLayer) -> None:
        """Give the layer its chi (zero, as aihwkit's on construction)."""
        layer.add_module("mixed_precision", MixedPrecisionState(layer.tile))

    @staticmethod
    def needs_rows(layer: AnalogLayer) -> bool:
        """Always: quantisation and the transfer's timing are per row."""
        return True

    def update(self, layer: AnalogLayer, lr: float, scale: float, updates: int) -> None:
        """chi += lr * q(d)^T q(x) for the rows since the last update, transferring to the
        device after the vector aihwkit's counter picks (see the module docstring; it
        counts vectors, in the layer's buffer, not the algorithm's `updates`)."""
        state = layer.mixed_precision
        assert isinstance(state, MixedPrecisionState)
        tile, sp = layer.tile, self.spec
        x, d = layer.take_pending()
        if scale != 1.0:
            d = d * scale
        qx = quantise(x, sp.n_x_bins, sp.stoc_round_x, tile.noise_generator)
        qd = quantise(d, sp.n_d_bins, sp.stoc_round_d, tile.noise_generator)
        n, seen = len(x), int(state.vectors)
        every = sp.transfer_every * n
        k = (-seen) % every  # the first vector of this update whose count is a multiple
        if k < n and seen + k > 0:
            state.chi.addmm_(qd[: k + 1].T, qx[: k + 1], alpha=lr)
            self.transfer(tile, state)
            state.chi.addmm_(qd[k + 1 :].T, qx[k + 1 :], alpha=lr)
        else:
            state.chi.addmm_(qd.T, qx, alpha=lr)
        state.vectors += n

    def transfer(self, tile: AnalogTile, state: MixedPrecisionState) -> None:
        """Rows of chi to the device: n = trunc(chi / eps) as an update of eps *
        transfer_lr * n (aihwkit's MixedPrecRPUDevice::forwardUpdate), chi keeps the rest."""
        sp = self.spec
        eps = sp.granularity or tile.granularity
        out = tile.shape[0]
        count = out if sp.n_rows_per_transfer < 0 else min(sp.n_rows_per_transfer, out)
        start = int(state.next_row)
        if sp.random_row and count < out:
            gen = tile.noise_generator
            start = int(torch.randint(0, out, (), generator=gen, device=gen.device))
        rows = torch.arange(start, start + count, device=state.chi.device) % out
        state.next_row.fill_((start + count) % out)
        n = torch.trunc(state.chi[rows] / eps)
        state.chi[rows] -= n * eps
        rate = eps * sp.transfer_lr
        if tile.analog.update == "pulsed":  # one row's update per row: d is its one-hot
            d = torch.zeros(count, out, dtype=n.dtype, device=n.device)
            d[torch.arange(count), rows] = 1.0
            tile.update(n, d, rate)
        else:
            grad = torch.zeros_like(state.chi)
            grad[rows] = n
            tile.update_from_gradient(grad, rate)
