"""Analog matrix-vector products through the IO model (analog-model.md section 5).

Order per MVM, as in aihwkit: noise management (inputs divided by max|x|),
DAC (clip to +-in_bound, quantise), the product, output noise, ADC (clip to
+-out_bound, quantise), bound management (rows whose outputs clipped are
redone with halved inputs), rescale.

A convolution's MVMs (one per output position) become one convolution when
the IO model acts on every element on its own (`acts_per_element`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from aimc_spec.spec import IOSpec

# Bound management halves a clipped row's inputs at most this many times.
MAX_BOUND_HALVINGS = 10


def quantisation_step(bound: float, bits: int) -> float:
    """Step of a converter with 2^bits - 1 levels spread evenly over [-bound, bound]."""
    return 2 * bound / (2**bits - 2)


def quantise(v: Tensor, bound: float, bits: int) -> Tensor:
    """Clip to +-bound and round to the converter's grid (which includes 0)."""
    step = quantisation_step(bound, bits)
    return torch.round(v.clamp(-bound, bound) / step) * step


def analog_mvm(
    w: Tensor,
    x: Tensor,
    io: IOSpec,
    generator: torch.Generator | None,
    *,
    bias: Tensor | None = None,
) -> Tensor:
    """y = x @ w.T (+ bias) for x (N, in) and w (out, in), as the tile computes it.

    The bias is digital: added after the ADC, in one fused op when the IO is perfect.
    """
    if io.perfect:
        return x @ w.T if bias is None else torch.addmm(bias, x, w.T)
    scale = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    if io.noise_management:
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)  # (N, 1)
        x = x / scale
    halving = torch.ones_like(scale)  # (N, 1) bound-management factor

    def product(rows_x: Tensor) -> Tensor:
        y = quantise(rows_x, io.in_bound, io.dac_bits) @ w.T
        if io.out_noise > 0:
            y = y + io.out_noise * torch.randn(
                y.shape, generator=generator, dtype=y.dtype, device=y.device
            )
        return y

    y = product(x)
    if io.bound_management:
        for _ in range(MAX_BOUND_HALVINGS):
            clipped = (y.abs() >= io.out_bound).any(dim=1)  # (N,)
            if not bool(clipped.any()):
                break
            halving[clipped] = halving[clipped] / 2
            y[clipped] = product(x[clipped] * halving[clipped])
    y = quantise(y, io.out_bound, io.adc_bits) * (scale / halving)
    return y if bias is None else y + bias


def acts_per_element(io: IOSpec) -> bool:
    """Whether the IO model treats each input and output element on its own.

    Noise management scales each MVM's inputs by their own maximum and bound
    management redoes single MVMs, so both need the MVMs one row at a time; DAC,
    output noise and ADC act per element, so a batch of MVMs sharing inputs (a
    convolution's patches) can be computed as one convolution.
    """
    return io.perfect or not (io.noise_management or io.bound_management)


def analog_conv(
    w: Tensor,
    x: Tensor,
    io: IOSpec,
    generator: torch.Generator | None,
    *,
    stride: int,
    padding: int,
    bias: Tensor | None = None,
) -> Tensor:
    """conv2d(x, w) (+ bias) through an IO model that acts per element (acts_per_element):
    the same numbers as analog_mvm on the im2col rows, up to float summation order
    (noise is drawn in the output image's layout). x (b, in_ch, h, w), w (out_ch, in_ch, k, k).
    """
    if io.perfect:
        return F.conv2d(x, w, bias, stride=stride, padding=padding)
    if not acts_per_element(io):
        raise ValueError("analog_conv: noise or bound management needs the MVMs row by row")
    y = F.conv2d(quantise(x, io.in_bound, io.dac_bits), w, stride=stride, padding=padding)
    if io.out_noise > 0:
        y = y + io.out_noise * torch.randn(
            y.shape, generator=generator, dtype=y.dtype, device=y.device
        )
    y = quantise(y, io.out_bound, io.adc_bits)
    return y if bias is None else y + bias[:, None, None]
