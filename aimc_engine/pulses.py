"""Pulse counts for an update -lr * d^T x: stochastic pulse trains and stochastic rounding.

Stochastic pulse trains (Gokmen & Vlasov 2016; analog-model.md section 4):
per sample and slot t < BL, input j fires with probability B|x_j| and error i
with A|d_i|, A*B = lr / (dw_min * BL). Each coincidence is one pulse on (i, j)
of sign -sign(x_j) sign(d_i), so E[net pulses] * dw_min = -lr * d^T x. Counting
coincidences over all (slot, sample) rows is a product of 0/1 matrices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from aimc_engine import fused
from aimc_engine.rng import counter_uniform, draw_key

# The 6 keys of one pulsed update of a whole tile, in the order they are drawn
# (update_kernels.c: K_D ... K_NOISE; pulsed.py, pulsed_curve.py): the pulse trains'
# error and input sides, the pulses' noise in closed form, the write noise, and the
# order and noise of pulses replayed one at a time.
K_D, K_X, K_NOISE_PAIR, K_WRITE, K_ORDER, K_NOISE = range(6)


@dataclass(frozen=True)
class LazyRows:
    """Input rows made on demand: a convolution's patches (im2col), of which a pulsed
    update reads only those whose slots fire an error pulse, usually a few."""

    abs_max: Tensor  # (N,) max |x| of each row
    take: Callable[[Tensor], Tensor]  # row indices (H,) -> those rows, (H, in)
    in_features: int


def pulse_train_counts(
    x: Tensor | LazyRows,
    d: Tensor,
    *,
    lr: float,
    dw_min: float,
    bit_length: int,
    update_management: bool,
    generator: torch.Generator | None,
    keys: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """(n_up, n_down), each (out, in), for x of shape (N, in) (or LazyRows) and d (N, out).

    With update management (aihwkit's default) each sample n gets its own pulse
    train: its probabilities are balanced by sqrt(max|x_n| / max|d_n|) and its
    length capped at BL_n = ceil(lr * max|x_n| * max|d_n| / dw_min), the fewest
    slots that keep its probabilities <= 1. The maxima are the sample's own
    (aihwkit's per-vector rule), so one sample's large |x| or |d| cannot clip
    another's probabilities; only the rows of the slots each sample uses are drawn,
    and the input side only for slots where an error pulse fires. A sample that needs
    more than BL slots keeps its largest input at probability 1 and clips on the error
    side, as aihwkit does. `dw_min` is the device's update granularity (aihwkit's
    weight_granularity).
    Without it every sample uses BL slots and A = B = sqrt(lr / (dw_min BL)).
    The two sides' counter-based uniforms take one key each, drawn from the generator
    when it is needed, or given (`keys`: error side, input side; pulsed.py).
    """
    n, out_features = d.shape
    if isinstance(x, Tensor):
        in_features = x.shape[1]
        x_max = torch.linalg.vector_norm(x, math.inf, dim=1)  # (N,) max |x_n|
        take: Callable[[Tensor], Tensor] = x.__getitem__
    else:
        in_features, x_max, take = x.in_features, x.abs_max, x.take
    d_max = torch.linalg.vector_norm(d, math.inf, dim=1)  # (N,)
    a, b, sample = _trains(
        x_max, d_max, lr=lr, dw_min=dw_min, bit_length=bit_length, managed=update_management
    )
    # the error side first: one row per (sample, slot), each error i firing with
    # probability a_n |d_i| (capped at 1)
    d_rows = d if sample is None else d[sample]  # (R, out)
    key_d, key_x = (None, None) if keys is None else keys
    fired_d = draw_pulse_trains(d_rows, a if sample is None else a[sample], generator, key_d)
    # A slot where no error pulse fires makes no coincidence: the input side is drawn for
    # the other slots only (the draws are independent, so the counts' law is the same).
    # Most slots of a convolution's positions fire none: their d is small.
    hit = torch.nonzero(fired_d.any(dim=1)).squeeze(1)  # (H,)
    if len(hit) == 0:
        zeros = torch.zeros(out_features, in_features, dtype=d.dtype, device=d.device)
        return zeros, zeros.clone()
    if len(hit) < len(fired_d):
        fired_d = fired_d[hit]
        sample = hit if sample is None else sample[hit]
    scale_x = b if sample is None else b[sample]
    if sample is None and isinstance(x, Tensor):
        xs = x  # every row, in order: no copy
    else:
        xs = take(torch.arange(n, device=d.device) if sample is None else sample)  # (H, in)
    fired_x = draw_pulse_trains(xs, scale_x, generator, key_x)
    return count_coincidences(fired_d, fired_x)


def _trains(
    x_max: Tensor, d_max: Tensor, *, lr: float, dw_min: float, bit_length: int, managed: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(a, b, sample): each sample's pulse probabilities per unit |d| and |x|, and the
    sample of each (sample, slot) row, None while that is row i <-> sample i (BL 1). A
    sample with a zero side gets probability 0: it fires nothing."""
    n = len(d_max)
    if managed:
        a, b, slots = manage_updates(x_max, d_max, lr=lr, dw_min=dw_min, bit_length=bit_length)
        if n and float(slots.max()) > 1:
            return a, b, torch.repeat_interleave(torch.arange(n, device=d_max.device), slots.long())
        return a, b, None
    a = torch.full_like(x_max, math.sqrt(lr / (dw_min * bit_length)))
    return a, a, torch.arange(n, device=d_max.device).repeat(bit_length)


def manage_updates(
    x_max: Tensor, d_max: Tensor, *, lr: float, dw_min: float, bit_length: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Update management per sample (aihwkit: update_bl_management + update_management):
    (A_n, B_n, BL_n), each (N,), from each sample's max |x_n| and max |d_n|.

    BL_n = ceil(lr max|x_n| max|d_n| / dw_min), clipped to [1, BL], and A_n B_n =
    lr / (dw_min BL_n) balanced by sqrt(max|x_n| / max|d_n|); past BL, max|x_n| keeps
    firing at probability 1 and the error side clips. A sample with a zero side gets
    A_n = B_n = 0 (it makes no coincidence) and one slot (fused.manage).
    """
    a, b, slots = (torch.empty_like(x_max) for _ in range(3))
    constants = torch.tensor([lr / dw_min, bit_length], dtype=x_max.dtype)
    fused.manage(a, b, slots, x_max, d_max, constants.to(x_max.device))
    return a, b, slots


def draw_pulse_trains(
    values: Tensor,
    row_scale: Tensor,
    generator: torch.Generator | None,
    key: Tensor | None = None,
) -> Tensor:
    """One pulse train per row of `values` (R, cols): element j of row r fires with
    probability min(row_scale[r] |values[r, j]|, 1). Returns the firings signed like the
    values (+-1, 0 where none fired), (R, cols), drawn with counter-based uniforms from
    one key, given or drawn from the generator (one pass over the rows; fused.pulse_train)."""
    if key is None:
        if generator is None:
            raise ValueError("draw_pulse_trains: give a generator or a key")
        key = draw_key(generator)
    fired = torch.empty(values.shape, dtype=values.dtype, device=values.device)
    fused.pulse_train(fired, values, row_scale, key)
    return fired


def count_coincidences(fired_d: Tensor, fired_x: Tensor) -> tuple[Tensor, Tensor]:
    """(n_up, n_down), each (out, in), from the signed firings of the error side (H, out)
    and the input side (H, in) in the same slots: every slot where error i and input j
    both fire is one pulse on (i, j), down when their signs agree (the update is
    -lr d^T x), up otherwise (fused.coincidences)."""
    shape = (fired_d.shape[1], fired_x.shape[1])
    n_up = torch.empty(shape, dtype=fired_d.dtype, device=fired_d.device)
    n_down = torch.empty_like(n_up)
    fused.coincidences(n_up, n_down, fired_d, fired_x)
    return n_up, n_down


def rounded_counts(
    delta: Tensor, *, dw_min: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(n_up, n_down) with n = stochastic_round(|dW| / dW_min), unbiased in expectation.

    Consumes `delta` (computed in place: each pass over the tile costs as much as
    the weight-gradient product on a CPU).
    """
    up = torch.sign(delta).clamp_(min=0)  # sign, not a boolean mask: faster on CPU
    u = counter_uniform(tuple(delta.shape), draw_key(generator), delta.device)
    n = delta.abs_().mul_(1 / dw_min).add_(u).floor_()
    n_up = up.mul_(n)
    return n_up, n.sub_(n_up)
