"""Analog layers: torch modules whose weight matrix lives on an analog tile.

The MVMs run in a custom autograd function whose backward reads the tile's
weights *when the backward runs* (no saved copy, as on hardware) and records
the layer input x and the arriving backward signal d; the algorithm later
turns the recorded (x, d) rows into a device update. Biases stay digital.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_engine.tiles import AnalogTile, TileConfig


class _AnalogMVM(torch.autograd.Function):
    """y = W x (+ b) on the tile; backward: d_x = W^T d with the current W, record (x, d).

    The second input is the digital bias, or for bias-free layers an empty tensor
    that requires grad: tile weights are buffers, so without it autograd would
    skip this backward whenever x needs no gradient (the first layer).
    """

    @staticmethod
    def forward(ctx, x: Tensor, bias_or_handle: Tensor, layer: AnalogLayer) -> Tensor:  # type: ignore[override]
        ctx.layer = layer
        ctx.has_bias = layer.bias is not None
        ctx.save_for_backward(x)
        weight = layer.effective_weight()
        # PipeDream-style stash (async_stash): the backward reuses the forward's weights
        ctx.stashed = weight.clone() if layer.stash_weights else None
        bias = bias_or_handle if ctx.has_bias else None
        return layer.tile.forward_mvm(x, weight, bias=bias)

    @staticmethod
    def backward(ctx, d: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        layer: AnalogLayer = ctx.layer
        layer.pending.append((x.detach(), d.detach()))
        grad_bias = d.sum(0) if ctx.has_bias and ctx.needs_input_grad[1] else None
        if not ctx.needs_input_grad[0]:
            return None, grad_bias, None  # first layer: no input gradient wanted
        weight = layer.effective_weight() if ctx.stashed is None else ctx.stashed
        return layer.tile.backward_mvm(d, weight), grad_bias, None


class AnalogLayer(nn.Module):
    """What analog linear and conv layers share: the tile, a digital bias, pending rows.

    Built with `TileConfig.digital()` the same module is an exact floating-point
    layer (`is_analog` False): digital weights take the same path as analog ones.

    `fast` is Tiki-Taka's fast array P (None otherwise) and `fast_ref` its reference
    P_ref (None without one); the layer then computes with W + fast_gamma * (P - P_ref).
    """

    def __init__(self, out_features: int, fan_in: int, config: TileConfig, *, bias: bool) -> None:
        super().__init__()
        self.tile = AnalogTile(out_features, fan_in, config)
        self.is_analog = config.analog.enabled  # False: a digital layer (see TileConfig.digital)
        self.fast: AnalogTile | None = None
        # a buffer once set, so the reference travels with the weights and checkpoints
        self.fast_ref: Tensor | None
        self.register_buffer("fast_ref", None)
        self.fast_gamma = 0.0
        self.stash_weights = False  # set by the pipeline executor for async_stash
        self.pending: list[tuple[Tensor, Tensor]] = []
        self._grad_handle = torch.empty(0, requires_grad=True)  # see _AnalogMVM
        if bias:
            bound = 1 / math.sqrt(fan_in)
            b = torch.empty(out_features).uniform_(-bound, bound, generator=config.init_generator)
            self.bias: nn.Parameter | None = nn.Parameter(b.to(config.device))
        else:
            self.bias = None

    def effective_weight(self) -> Tensor:
        """The weights the MVMs use: W, or W + gamma * (P - P_ref) under Tiki-Taka."""
        if self.fast is None or self.fast_gamma == 0:
            return self.tile.weight
        p = self.fast.weight if self.fast_ref is None else self.fast.weight - self.fast_ref
        return self.tile.weight + self.fast_gamma * p

    def mvm(self, x: Tensor) -> Tensor:
        """Rows x (N, in) -> (N, out) through the tile plus the bias, recording for the update."""
        return _AnalogMVM.apply(x, self._grad_handle if self.bias is None else self.bias, self)

    def take_pending(self) -> tuple[Tensor, Tensor]:
        """All recorded (x, d) rows since the last update, stacked: (N, in), (N, out)."""
        if not self.pending:
            raise RuntimeError("no backward pass recorded since the last update")
        xs, ds = zip(*self.pending, strict=True)
        self.pending.clear()
        if len(xs) == 1:
            return xs[0], ds[0]
        return torch.cat(xs), torch.cat(ds)


class AnalogLinear(AnalogLayer):
    """y = W x + b with W on an analog tile of shape (out_features, in_features)."""

    def __init__(
        self, in_features: int, out_features: int, config: TileConfig, *, bias: bool = True
    ) -> None:
        super().__init__(out_features, in_features, config, bias=bias)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.mvm(x)


class AnalogConv2d(AnalogLayer):
    """A 2-D convolution mapped onto one tile by im2col: (out_ch, in_ch * k * k)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        config: TileConfig,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__(out_channels, in_channels * kernel_size**2, config, bias=bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        h_out, w_out = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        cols = F.unfold(x, k, padding=p, stride=s)  # (b, in_ch*k*k, L)
        rows = cols.transpose(1, 2).reshape(b * h_out * w_out, -1)  # (b*L, in_ch*k*k)
        y = self.mvm(rows)  # (b*L, out_ch)
        return y.reshape(b, h_out * w_out, -1).transpose(1, 2).reshape(b, -1, h_out, w_out)
