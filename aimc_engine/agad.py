"""AGAD (aihwkit's DynamicTransferCompound; analog-model.md section 6): Chopped TTv2
whose reference is dynamic. Each element keeps a running mean of its column's reads;
when the column's input chopper flips, that mean becomes the reference mu of the new
chopper period, and the buffer takes the read minus mu, so P's offset (where its
device drifts to) cancels without any static reference programmed beforehand.
Following aihwkit 1.2's DynamicTransferRPUDevice::readAndUpdate, per column read:

    if the column flipped at its last read: mu = running mean
    H    += chop * (read - mu) * rate / bg;  where |H| >= 1, n steps into W as Chopped TTv2
    mean  = (1 - m) mean + m read,  m = min(tail_weightening / period, 1)
    period = max(ceil(1 / in_chop_prob), 2) passes; the chopper flips in the last pass
    of each period (and, with in_chop_random, also with probability in_chop_prob)

and W is written only after the first period + 1 passes, once mu means something.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aimc_engine.chopped_ttv2 import ChopperBase, Choppers, buffer_scale, read_column, write_steps
from aimc_engine.layers import AnalogLayer
from aimc_spec.agad_spec import AGADSpec
from aimc_spec.analog_spec import IOSpec
from aimc_spec.chopped_ttv2_spec import ChopperSpec


class DynamicReference(Choppers):
    """The choppers and H, with each element's running mean of its reads, the reference
    mu of the current chopper period, and which columns flipped at their last read."""

    running_mean: Tensor
    past_mean: Tensor
    switched: Tensor

    def __init__(self, weight: Tensor, spec: ChopperSpec) -> None:
        super().__init__(weight, spec)
        self.register_buffer("running_mean", torch.zeros_like(weight))
        self.register_buffer("past_mean", torch.zeros_like(weight))
        self.register_buffer("switched", weight.new_zeros(weight.shape[1]))


class AGAD(ChopperBase):
    """The algorithm for analog layers: Chopped TTv2's P under choppers, read against the
    dynamic reference."""

    spec: AGADSpec

    def __init__(self, spec: AGADSpec, io: IOSpec) -> None:
        super().__init__(io)
        self.spec = spec

    def attach(self, layer: AnalogLayer) -> None:
        layer.add_module("choppers", DynamicReference(layer.tile.weight, self.spec))

    def _read_and_write(self, layer: AnalogLayer, col: int, lr: float) -> None:
        sp, st = self.spec, layer.choppers
        assert isinstance(st, DynamicReference)
        read = read_column(layer, col, self.io)
        period = max(math.ceil(1 / sp.in_chop_prob), 2)
        sample = int(st.passes) % period + 1
        if bool(st.switched[col]):  # a new chopper period: the last one's mean is mu
            st.past_mean[:, col] = st.running_mean[:, col]
            st.switched[col] = 0.0
        signs = st.out_chop * st.in_chop[col]
        omega = st.h[:, col] + signs * (read - st.past_mean[:, col]) * buffer_scale(layer, sp, lr)
        moved = omega.abs() >= 1
        limit = float(sp.transfer_desired_bl)
        n = torch.where(moved, torch.trunc(omega).clamp_(-limit, limit), torch.zeros_like(omega))
        if sp.forget_buffer:
            kept = omega * sp.momentum
        else:
            kept = omega - (1 - sp.momentum) * n
            if sp.buffer_cap > 0:
                kept = kept.clamp(-sp.buffer_cap * limit, sp.buffer_cap * limit)
        st.h[:, col] = torch.where(moved, kept, omega)
        m = min(sp.tail_weightening / period, 1.0)
        st.running_mean[:, col] = st.running_mean[:, col] * (1 - m) + read * m
        if bool(moved.any()) and int(st.passes) > period:
            write_steps(layer, col, n, sp)
        flip = sample == period
        if sp.in_chop_random:
            gen = layer.tile.noise_generator
            flip |= float(torch.rand((), generator=gen, device=gen.device)) < sp.in_chop_prob
        if flip:
            st.in_chop[col] = -st.in_chop[col]
            st.switched[col] = 1.0
        if col == layer.tile.shape[1] - 1:
            st.passes += 1
