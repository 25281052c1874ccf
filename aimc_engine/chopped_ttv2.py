"""Chopped TTv2 (aihwkit's ChoppedTransferCompound; analog-model.md section 6).

TTv2 with choppers: each input column j and output row i of P carries a sign, and P
accumulates the gradient with the product of the two signs; the read of a column is
multiplied by the same signs, so the gradient comes back with its own sign while
whatever P's device adds by itself (its drift towards its symmetric point, a bias of
its reference) changes sign with every flip and averages out in the buffer. Following
aihwkit 1.2's ChoppedTransferRPUDevice::readAndUpdate, per column read:

    H     += chop * read * rate / bg          (a count of steps; 0 + ... when no_buffer)
    where |H| >= 1: n = clip(trunc(H), +-transfer_desired_bl), W[:, j] += step * gran(W) n,
                    H = momentum * H (forget_buffer) or H - (1 - momentum) n
    bg     = buffer_granularity * gran(P), times auto_granularity / (columns x
             transfer_every) when auto_granularity > 0

after which column j's input chopper flips with probability in_chop_prob (or
regularly), and after the last column every output chopper flips with probability
out_chop_prob. P is updated at fast_lr (absolute unless scale_fast_lr, as aihwkit), or,
with auto_scale, at fast_lr * BL * gran(P) / (m_x m_d) (getPulseCountAutoLR), m_x and
m_d running means of each row's max |x| and |d| (updateAutoScale). With units_in_mbatch
false, transfer_every counts rows, and an update makes one transfer per multiple of it
that its rows pass (aihwkit interleaves them with the rows' pulses; here they follow).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from aimc_engine.layers import AnalogLayer
from aimc_engine.mvm import analog_mvm
from aimc_engine.pulses import LazyRows
from aimc_spec.analog_spec import IOSpec
from aimc_spec.chopped_ttv2_spec import ChoppedTTv2Spec, ChopperSpec


class Choppers(nn.Module):
    """A layer's chopper signs (+-1), buffer H and count of full passes over the columns:
    buffers of the layer, so checkpoints and stage processes carry them."""

    in_chop: Tensor
    out_chop: Tensor
    h: Tensor
    passes: Tensor
    m_x: Tensor  # auto_scale only
    m_d: Tensor  # auto_scale only
    vectors: Tensor  # units_in_mbatch false only

    def __init__(self, weight: Tensor, spec: ChopperSpec) -> None:
        super().__init__()
        out_f, in_f = weight.shape
        self.register_buffer("in_chop", torch.ones(in_f, dtype=weight.dtype, device=weight.device))
        self.register_buffer(
            "out_chop", torch.ones(out_f, dtype=weight.dtype, device=weight.device)
        )
        self.register_buffer("h", torch.zeros_like(weight))
        self.register_buffer("passes", torch.zeros((), dtype=torch.int64))
        # only where the spec asks for them, so that earlier checkpoints still load
        if spec.auto_scale:  # the running means of the rows' max |x| and |d|
            self.register_buffer("m_x", torch.zeros((), dtype=torch.float64))
            self.register_buffer("m_d", torch.zeros((), dtype=torch.float64))
        if not spec.units_in_mbatch:  # rows seen, the count transfer_every is in
            self.register_buffer("vectors", torch.zeros((), dtype=torch.int64))


def _choppers(layer: AnalogLayer) -> Choppers:
    state = layer.choppers
    assert isinstance(state, Choppers)
    return state


def read_column(layer: AnalogLayer, col: int, io: IOSpec) -> Tensor:
    """Column col of P (- P_ref), read through the IO model with a one-hot input: (out,)."""
    fast = layer.fast
    assert fast is not None
    p = fast.weight[:, col : col + 1]
    if layer.fast_ref is not None:
        p = p - layer.fast_ref[:, col : col + 1]
    one = torch.ones(1, 1, dtype=p.dtype, device=p.device)
    return analog_mvm(p, one, io, fast.noise_generator)[0]


def buffer_scale(layer: AnalogLayer, spec: ChopperSpec, lr: float) -> float:
    """rate / bg: what one unit of a read adds to the step-counting buffer
    (ChoppedTransferRPUDeviceMetaParameter::getTransferLRScale, getBufferGranularity)."""
    fast = layer.fast
    assert fast is not None
    bg = (spec.buffer_granularity or 1.0) * fast.device_model.granularity
    if spec.auto_granularity > 0:
        bg *= spec.auto_granularity / (layer.tile.shape[1] * spec.transfer_every)
    rate = spec.transfer_lr * lr if spec.scale_transfer_lr else spec.transfer_lr
    return rate / bg


def running_mean_(mean: Tensor, maxima: Tensor, momentum: float) -> None:
    """aihwkit's updateAutoScale over a batch's rows in turn: mean <- (1 - tau) mean +
    tau v with tau = (1 - momentum) / rows, a row's max v skipped when 0, the first
    positive v taken as it is while mean is still 0; in closed form over the batch."""
    v = maxima[maxima > 0].to(torch.float64)
    if len(v) == 0:
        return
    if float(mean) <= 0:
        mean.fill_(v[0])
        v = v[1:]
    tau = (1 - momentum) / len(maxima)
    k = len(v)
    keep = (1 - tau) ** torch.arange(k - 1, -1, -1, dtype=torch.float64, device=v.device)
    mean.mul_((1 - tau) ** k).add_((tau * keep.to(mean.device) * v.to(mean.device)).sum())


def write_steps(layer: AnalogLayer, col: int, n: Tensor, spec: ChopperSpec) -> None:
    """W[:, col] += step * granularity(W) * n, through the device."""
    x = torch.zeros(1, layer.tile.shape[1], dtype=n.dtype, device=n.device)
    x[0, col] = 1.0
    layer.tile.update(x, -n[None], spec.step * layer.tile.device_model.granularity)


class ChopperBase(ABC):
    """What Chopped TTv2 and AGAD share: P (made by algorithms.py) updated under the
    choppers, and columns read in turn into a buffer; `_read_and_write` is theirs."""

    spec: ChopperSpec

    def __init__(self, io: IOSpec) -> None:
        self.io = io  # the transfer's reads: the job's IO without noise/bound management

    def attach(self, layer: AnalogLayer) -> None:
        layer.add_module("choppers", Choppers(layer.tile.weight, self.spec))

    def needs_rows(self, layer: AnalogLayer) -> bool:
        """The rows, not only d^T x: for pulse trains, auto_scale's maxima, or the count
        of rows that transfer_every is in."""
        sp = self.spec
        return layer.tile.analog.update == "pulsed" or sp.auto_scale or not sp.units_in_mbatch

    def update(self, layer: AnalogLayer, lr: float, scale: float, updates: int) -> None:
        """P takes the chopped gradient at the fast lr; then, on transfer updates, the
        columns' reads go through H into W."""
        fast, sp, chop = layer.fast, self.spec, _choppers(layer)
        assert fast is not None
        if not self.needs_rows(layer):
            grad = layer.take_gradient(scale).mul_(torch.outer(chop.out_chop, chop.in_chop))
            fast.update_from_gradient(grad, self.fast_lr(layer, lr))
            if (updates + 1) % sp.transfer_every == 0:
                self._transfer(layer, lr, (updates + 1) // sp.transfer_every - 1, 1)
            return
        # chop the rows: x_j by in_chop_j, d_i by out_chop_i
        pulsed = layer.tile.analog.update == "pulsed"
        x, d = layer.take_pulse_rows() if pulsed else layer.take_pending()
        if sp.auto_scale:
            x_max = x.abs_max if isinstance(x, LazyRows) else x.abs().amax(dim=1)
            running_mean_(chop.m_x, x_max, sp.auto_momentum)
            running_mean_(chop.m_d, d.abs().amax(dim=1), sp.auto_momentum)
        d = d * (chop.out_chop * scale)
        if isinstance(x, LazyRows):
            take = x.take
            x = LazyRows(x.abs_max, lambda rows: take(rows) * chop.in_chop, x.in_features)
        else:
            x = x * chop.in_chop
        if pulsed:
            fast.update(x, d, self.fast_lr(layer, lr))
        else:
            assert isinstance(x, Tensor)
            fast.update_from_gradient(d.T @ x, self.fast_lr(layer, lr))
        if sp.units_in_mbatch:
            if (updates + 1) % sp.transfer_every == 0:
                self._transfer(layer, lr, (updates + 1) // sp.transfer_every - 1, 1)
            return
        seen = int(chop.vectors)
        chop.vectors += len(d)
        done, due = seen // sp.transfer_every, (seen + len(d)) // sp.transfer_every
        if due > done:
            self._transfer(layer, lr, done, due - done)

    def fast_lr(self, layer: AnalogLayer, lr: float) -> float:
        """P's learning rate: fast_lr, or auto_scale's fast_lr * BL * gran(P) / (m_x m_d)
        (ChoppedTransferRPUDeviceMetaParameter::getPulseCountAutoLR); times lr when
        scale_fast_lr."""
        sp, fast = self.spec, layer.fast
        assert fast is not None
        rate = sp.fast_lr
        if sp.auto_scale:
            chop = _choppers(layer)
            rate *= layer.tile.analog.bit_length * fast.device_model.granularity
            m_x, m_d = float(chop.m_x), float(chop.m_d)
            if m_x > 0 and m_d > 0:
                rate /= m_x * m_d
        return rate * lr if sp.scale_fast_lr else rate

    def _transfer(self, layer: AnalogLayer, lr: float, first: int, count: int) -> None:
        """`count` transfers from the `first`-th (counted over the run), each of
        transfer_columns columns in turn from where the last one stopped."""
        in_f = layer.tile.shape[1]
        n_cols = min(self.spec.transfer_columns, in_f)
        for c in range(first * n_cols, (first + count) * n_cols):
            self._read_and_write(layer, c % in_f, lr)

    @abstractmethod
    def _read_and_write(self, layer: AnalogLayer, col: int, lr: float) -> None:
        """One column of P through the buffer into W, and the choppers' flips after it."""


class ChoppedTTv2(ChopperBase):
    """The algorithm for analog layers: P under choppers, the buffer H, W."""

    spec: ChoppedTTv2Spec

    def __init__(self, spec: ChoppedTTv2Spec, io: IOSpec) -> None:
        super().__init__(io)
        self.spec = spec

    def _read_and_write(self, layer: AnalogLayer, col: int, lr: float) -> None:
        """One column through H into W, then the choppers' flips (see the module doc)."""
        sp, chop, fast = self.spec, _choppers(layer), layer.fast
        assert fast is not None
        read = read_column(layer, col, self.io)
        signs = chop.out_chop * chop.in_chop[col]
        omega = signs * read * buffer_scale(layer, sp, lr)
        if not sp.no_buffer:
            omega = omega + chop.h[:, col]
        moved = omega.abs() >= 1
        limit = float(sp.transfer_desired_bl)
        n = torch.where(moved, torch.trunc(omega).clamp_(-limit, limit), torch.zeros_like(omega))
        kept = omega * sp.momentum if sp.forget_buffer else omega - (1 - sp.momentum) * n
        chop.h[:, col] = torch.where(moved, kept, omega)
        if bool(moved.any()):
            write_steps(layer, col, n, sp)
        self._flip(chop, col, layer.tile.shape[1], fast.noise_generator)

    def _flip(self, chop: Choppers, col: int, in_f: int, gen: torch.Generator) -> None:
        """aihwkit's chopper flips after column col's read; a pass ends at the last column."""
        sp = self.spec
        if sp.in_chop_prob > 0:
            if sp.in_chop_random:
                flip = float(torch.rand((), generator=gen, device=gen.device)) < sp.in_chop_prob
            else:
                period = max(math.ceil(1 / sp.in_chop_prob), 2)
                flip = int(chop.passes) % period + 1 == period
            if flip:
                chop.in_chop[col] = -chop.in_chop[col]
        if col == in_f - 1:
            if sp.out_chop_prob > 0:
                u = torch.rand(chop.out_chop.shape, generator=gen, device=gen.device)
                chop.out_chop.mul_(
                    torch.where(u.to(chop.out_chop.device) < sp.out_chop_prob, -1.0, 1.0)
                )
            chop.passes += 1
