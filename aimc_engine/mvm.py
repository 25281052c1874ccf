"""Analog matrix-vector products through the IO model (analog-model.md section 5).

Order per MVM, as in aihwkit: noise management (inputs divided by max|x|),
DAC (clip to +-in_bound, quantise), the product, output noise, ADC (clip to
+-out_bound, quantise), bound management (rows whose outputs clipped are
redone with halved inputs), rescale.

A convolution's MVMs (one per output position) become one convolution when
the IO model acts on every element on its own (`acts_per_element`).
"""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import Tensor

from aimc_engine import native
from aimc_engine.fused import fusion_enabled
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
    On the CPU the steps before and after the product run as two C loops (native.py:
    io_inputs, io_outputs), the same float32 operations as the torch ops below, and
    the output noise is drawn by torch as below: the same numbers, bit for bit, in
    two calls instead of some twenty small ops.
    """
    if io.perfect:
        return x @ w.T if bias is None else torch.addmm(bias, x, w.T)
    fast = _io_in_c(w, x, io, generator)
    if fast is not None:
        return fast if bias is None else fast + bias
    scale = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    if io.noise_management:
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)  # (N, 1)
        x = x / scale
    y = _product(w, x, io, generator)
    y = _bound_managed(w, x, y, scale, io, generator)
    return y if bias is None else y + bias


def _product(w: Tensor, rows_x: Tensor, io: IOSpec, generator: torch.Generator | None) -> Tensor:
    """DAC, the product, output noise."""
    y = quantise(rows_x, io.in_bound, io.dac_bits) @ w.T
    if io.out_noise > 0:
        y = y + io.out_noise * torch.randn(
            y.shape, generator=generator, dtype=y.dtype, device=y.device
        )
    return y


def _bound_managed(
    w: Tensor, x: Tensor, y: Tensor, scale: Tensor, io: IOSpec, generator: torch.Generator | None
) -> Tensor:
    """Bound management (rows whose outputs clipped redone with halved inputs), the ADC
    and the rescale, from the scaled inputs x and their first outputs y."""
    halving = torch.ones_like(scale)  # (N, 1) bound-management factor
    if io.bound_management:
        for _ in range(MAX_BOUND_HALVINGS):
            clipped = (y.abs() >= io.out_bound).any(dim=1)  # (N,)
            if not bool(clipped.any()):
                break
            halving[clipped] = halving[clipped] / 2
            y[clipped] = _product(w, x[clipped] * halving[clipped], io, generator)
    return quantise(y, io.out_bound, io.adc_bits) * (scale / halving)


def _io_in_c(w: Tensor, x: Tensor, io: IOSpec, generator: torch.Generator | None) -> Tensor | None:
    """analog_mvm without its bias through the C loops; None where they cannot run (not
    the CPU, not float32, AIMC_FUSE=0, no compiler)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32:
        return None
    lib = native.library() if fusion_enabled() else None
    if lib is None:
        return None
    x = x.contiguous()
    rows, cols = x.shape
    xq, scale = torch.empty_like(x), torch.empty(rows, 1)
    in_step, out_step = (
        quantisation_step(io.in_bound, io.dac_bits),
        quantisation_step(io.out_bound, io.adc_bits),
    )
    lib.io_inputs(
        xq.data_ptr(),
        scale.data_ptr(),
        x.data_ptr(),
        rows,
        cols,
        io.in_bound,
        in_step,
        io.noise_management,
    )
    y = xq @ w.T
    xi = None
    if io.out_noise > 0:
        xi = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    clipped = lib.io_outputs(
        y.data_ptr(),
        None if xi is None else xi.data_ptr(),
        scale.data_ptr(),
        rows,
        y.shape[1],
        io.out_noise,
        io.out_bound,
        out_step,
        io.bound_management,
    )
    if not clipped:
        return y
    # bound management redoes rows
    x = x / scale if io.noise_management else x
    return _bound_managed_c(lib, w, x, y, scale, io, generator)


def _bound_managed_c(
    lib: ctypes.CDLL,
    w: Tensor,
    x: Tensor,
    y: Tensor,
    scale: Tensor,
    io: IOSpec,
    generator: torch.Generator | None,
) -> Tensor:
    """_bound_managed with its row loops in C (native.py: clipped_rows, halved_rows,
    replace_rows, managed_outputs) around torch's product and noise draw: the same
    numbers, drawn in the same order, in a few calls instead of some fifteen ops per
    halving."""
    rows, cols = y.shape
    halving = torch.ones(rows, 1)
    idx = torch.empty(rows, dtype=torch.int64)
    x = x.contiguous()
    in_step = quantisation_step(io.in_bound, io.dac_bits)
    for _ in range(MAX_BOUND_HALVINGS):
        n = lib.clipped_rows(idx.data_ptr(), y.data_ptr(), rows, cols, io.out_bound)
        if n == 0:
            break
        xq = torch.empty(n, x.shape[1])
        lib.halved_rows(
            xq.data_ptr(),
            halving.data_ptr(),
            x.data_ptr(),
            idx.data_ptr(),
            n,
            x.shape[1],
            io.in_bound,
            in_step,
        )
        redone = xq @ w.T
        xi = None
        if io.out_noise > 0:
            xi = torch.randn(redone.shape, generator=generator, dtype=y.dtype, device=y.device)
        lib.replace_rows(
            y.data_ptr(),
            redone.data_ptr(),
            None if xi is None else xi.data_ptr(),
            idx.data_ptr(),
            n,
            cols,
            io.out_noise,
        )
    out_step = quantisation_step(io.out_bound, io.adc_bits)
    lib.managed_outputs(
        y.data_ptr(), scale.data_ptr(), halving.data_ptr(), rows, cols, io.out_bound, out_step
    )
    return y


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
