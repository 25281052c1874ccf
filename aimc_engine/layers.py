"""Analog layers: torch modules whose weight matrix lives on an analog tile.

The MVMs run in custom autograd functions whose backward reads the tile's
weights *when the backward runs* (no saved copy, as on hardware) and records
what the update needs: the layer input x and the arriving backward signal d.
A linear layer records its rows; a convolution records its input and output
images and turns them into rows (im2col) only for the pulsed update, which
needs every position's x and d; the other updates need only d^T x, the
convolution's weight gradient. Biases stay digital.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.grad import conv2d_input, conv2d_weight

from aimc_engine.mvm import acts_per_element, analog_conv
from aimc_engine.pulses import LazyRows
from aimc_engine.tiles import AnalogTile, TileConfig


def _remember(
    ctx: Any, x: Tensor, bias_or_handle: Tensor, layer: AnalogLayer
) -> tuple[Tensor, Tensor | None]:
    """What a forward keeps for its backward; returns (the weights now, the bias or None).

    With a PipeDream-style stash (async_stash) the backward reuses the forward's weights;
    otherwise it reads the tile's weights when it runs.
    """
    ctx.layer = layer
    ctx.has_bias = layer.bias is not None
    ctx.save_for_backward(x)
    weight = layer.effective_weight()
    ctx.stashed = weight.clone() if layer.stash_weights else None
    return weight, bias_or_handle if ctx.has_bias else None


class _AnalogMVM(torch.autograd.Function):
    """y = W x (+ b) on the tile; backward: d_x = W^T d with the current W, record (x, d).

    The second input is the digital bias, or for bias-free layers an empty tensor
    that requires grad: tile weights are buffers, so without it autograd would
    skip this backward whenever x needs no gradient (the first layer).
    """

    @staticmethod
    def forward(ctx, x: Tensor, bias_or_handle: Tensor, layer: AnalogLayer) -> Tensor:  # type: ignore[override]
        weight, bias = _remember(ctx, x, bias_or_handle, layer)
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


class _AnalogConv(torch.autograd.Function):
    """A convolution on the tile: as _AnalogMVM, with images (b, c, h, w) in and out.

    Records (input image, output gradient image); the layer makes rows of them
    only if the update asks for rows.
    """

    @staticmethod
    def forward(ctx, x: Tensor, bias_or_handle: Tensor, layer: AnalogConv2d) -> Tensor:  # type: ignore[override]
        weight, bias = _remember(ctx, x, bias_or_handle, layer)
        return layer.conv_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, d: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        layer: AnalogConv2d = ctx.layer
        wants_bias = ctx.has_bias and ctx.needs_input_grad[1]
        weight = layer.effective_weight() if ctx.stashed is None else ctx.stashed
        if layer.gradient_only and layer.tile.backward_io.perfect:
            # one convolution_backward gives d_x (with the current weights), d^T x and the
            # bias gradient: what torch's own conv backward computes, in one call
            grad_x, grad_w, grad_bias = layer.conv_backward_all(
                x, d, weight, wants_input=ctx.needs_input_grad[0], wants_bias=wants_bias
            )
            layer.record_gradient(grad_w)
            return grad_x, grad_bias, None
        layer.pending.append((x.detach(), d.detach()))
        grad_bias = d.sum((0, 2, 3)) if wants_bias else None
        if not ctx.needs_input_grad[0]:
            return None, grad_bias, None
        return layer.conv_backward(x.shape, d, weight), grad_bias, None


class AnalogLayer(nn.Module):
    """What analog linear and conv layers share: the tile, a digital bias, pending rows.

    Built with `TileConfig.digital()` the same module is an exact floating-point
    layer (`is_analog` False): digital weights take the same path as analog ones.

    `fast` is Tiki-Taka's fast array P (None otherwise) and `fast_ref` its reference
    P_ref (None without one); the layer then computes with W + fast_gamma * (P - P_ref).
    `pending` holds one (x, d) pair per backward since the last update, in the
    layer's own layout (rows for a linear layer, images for a convolution).
    While `exact_weight` is set (the gradient probe in metrics.py) the layer computes
    digitally with that gradient-tracking weight: no IO model, nothing recorded.
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
        self.exact_weight: Tensor | None = None
        # Set by the algorithm when its update of this layer needs only d^T x (not the
        # pulsed mode): a convolution then records that product, summed, in
        # `pending_gradient`, computed in its backward's one convolution_backward call.
        self.gradient_only = False
        self.pending_gradient: Tensor | None = None
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

    @property
    def _bias_or_handle(self) -> Tensor:
        return self._grad_handle if self.bias is None else self.bias

    def take_pending(self) -> tuple[Tensor, Tensor]:
        """All recorded (x, d) rows since the last update, stacked: (N, in), (N, out)."""
        x, d = self._take()
        return self._rows(x, d)

    def take_pulse_rows(self) -> tuple[Tensor | LazyRows, Tensor]:
        """The recorded rows for a pulsed update: as take_pending, but a convolution's
        input rows come as LazyRows (patches cut only where pulses fire)."""
        return self.take_pending()

    def take_gradient(self, scale: float = 1.0) -> Tensor:
        """scale * d^T x summed over the records since the last update, (out, in): all
        that the exact, expected and rounded updates need."""
        if self.pending_gradient is not None:
            grad, self.pending_gradient = self.pending_gradient, None
            return grad if scale == 1.0 else grad.mul_(scale)
        x, d = self._take()
        return self._gradient(x, d, scale)

    def record_gradient(self, grad: Tensor) -> None:
        """Add one backward's d^T x (out, in) to the pending sum."""
        if self.pending_gradient is None:
            self.pending_gradient = grad
        else:
            self.pending_gradient.add_(grad)

    def _take(self) -> tuple[Tensor, Tensor]:
        if not self.pending:
            raise RuntimeError("no backward pass recorded since the last update")
        xs, ds = zip(*self.pending, strict=True)
        self.pending.clear()
        if len(xs) == 1:
            return xs[0], ds[0]
        return torch.cat(xs), torch.cat(ds)

    def _rows(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """Records in the layer's layout -> rows (N, in), (N, out)."""
        return x, d

    def _gradient(self, x: Tensor, d: Tensor, scale: float) -> Tensor:
        """scale * d^T x of records in the layer's layout; scaled on the smaller side."""
        return (d if scale == 1.0 else d * scale).T @ x


class AnalogLinear(AnalogLayer):
    """y = W x + b with W on an analog tile of shape (out_features, in_features)."""

    def __init__(
        self, in_features: int, out_features: int, config: TileConfig, *, bias: bool = True
    ) -> None:
        super().__init__(out_features, in_features, config, bias=bias)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        if self.exact_weight is not None:
            return F.linear(x, self.exact_weight, self.bias)
        return _AnalogMVM.apply(x, self._bias_or_handle, self)


class AnalogConv2d(AnalogLayer):
    """A 2-D convolution on one tile of shape (out_ch, in_ch * k * k) (the im2col mapping).

    Every output position is one MVM of the tile with that position's input patch.
    Where the IO model treats each element on its own (perfect IO, or DAC, output
    noise and ADC without noise or bound management), those MVMs together are one
    convolution with the tile's weights, and torch's convolution kernels compute
    them; otherwise the patches are laid out as rows (im2col) and go through the
    row-wise IO model. The backward MVMs' outputs are patch gradients that are summed
    into the input gradient (col2im) after their ADC: a transposed convolution is
    exact only when the backward IO is perfect.
    """

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
        self.kernel_shape = (out_channels, in_channels, kernel_size, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.exact_weight is not None:
            w = self.exact_weight.reshape(self.kernel_shape)
            return F.conv2d(x, w, self.bias, stride=self.stride, padding=self.padding)
        return _AnalogConv.apply(x, self._bias_or_handle, self)

    def conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """y = the tile's MVM at every output position, (b, in_ch, h, w) -> (b, out_ch, h', w')."""
        tile = self.tile
        if acts_per_element(tile.analog.io):
            w = weight.reshape(self.kernel_shape)
            return analog_conv(
                w,
                x,
                tile.analog.io,
                tile.noise_generator,
                stride=self.stride,
                padding=self.padding,
                bias=bias,
            )
        b = x.shape[0]
        h_out, w_out = self._out_size(x.shape)
        y = tile.forward_mvm(self._patches(x), weight, bias=bias)  # (b*L, out_ch)
        return y.reshape(b, h_out * w_out, -1).transpose(1, 2).reshape(b, -1, h_out, w_out)

    def conv_backward(self, x_shape: torch.Size, d: Tensor, weight: Tensor) -> Tensor:
        """d_x: every position's backward MVM W^T d, summed into the input image."""
        k, s, p = self.kernel_size, self.stride, self.padding
        if self.tile.backward_io.perfect:
            w = weight.reshape(self.kernel_shape)
            return conv2d_input(x_shape, w, d, stride=s, padding=p)
        b, _, h, w_in = x_shape
        cols = self.tile.backward_mvm(self._out_rows(d), weight)  # (b*L, in_ch*k*k)
        cols = cols.reshape(b, -1, cols.shape[1]).transpose(1, 2)  # (b, in_ch*k*k, L)
        return F.fold(cols, (h, w_in), k, padding=p, stride=s)

    def conv_backward_all(
        self, x: Tensor, d: Tensor, weight: Tensor, *, wants_input: bool, wants_bias: bool
    ) -> tuple[Tensor | None, Tensor, Tensor | None]:
        """(d_x or None for an input without gradient, d^T x (out, in), bias gradient or
        None) of a perfect-IO convolution, from one convolution_backward call."""
        s, p = self.stride, self.padding
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            d,
            x,
            weight.reshape(self.kernel_shape),
            [self.out_channels] if wants_bias else None,
            [s, s],
            [p, p],
            [1, 1],
            False,
            [0, 0],
            1,
            [wants_input, True, wants_bias],
        )
        return grad_x, grad_w.reshape(self.out_channels, -1), grad_b

    def _out_size(self, shape: torch.Size) -> tuple[int, int]:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (shape[2] + 2 * p - k) // s + 1, (shape[3] + 2 * p - k) // s + 1

    def _patches(self, x: Tensor) -> Tensor:
        """im2col: (b, in_ch, h, w) -> one row per output position, (b*L, in_ch*k*k)."""
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])

    @staticmethod
    def _out_rows(d: Tensor) -> Tensor:
        """(b, out_ch, h', w') -> one row per output position, (b*L, out_ch)."""
        return d.permute(0, 2, 3, 1).reshape(-1, d.shape[1])

    def _rows(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        return self._patches(x), self._out_rows(d)

    def take_pulse_rows(self) -> tuple[Tensor | LazyRows, Tensor]:
        x, d = self._take()
        return self._lazy_patches(x), self._out_rows(d)

    def _lazy_patches(self, x: Tensor) -> LazyRows:
        """The im2col rows of x without im2col: each row's max |x| (a max-pool of the
        channel maxima), and the patches of given rows cut from a strided view."""
        k, s, p = self.kernel_size, self.stride, self.padding
        b, c = x.shape[:2]
        h_out, w_out = self._out_size(x.shape)
        abs_max = F.max_pool2d(x.abs().amax(dim=1, keepdim=True), k, s, p)  # (b, 1, h', w')
        padded = F.pad(x, (p, p, p, p))
        sb, sc, sh, sw = padded.stride()
        # (b, h', w', in_ch, k, k): patch (i, j) of sample n, no copy
        view = padded.as_strided((b, h_out, w_out, c, k, k), (sb, sh * s, sw * s, sc, sh, sw))
        positions = h_out * w_out

        def take(rows: Tensor) -> Tensor:  # row = n * positions + i * w_out + j, as im2col
            n, at = rows // positions, rows % positions
            return view[n, at // w_out, at % w_out].reshape(len(rows), c * k * k)

        return LazyRows(abs_max.reshape(-1), take, c * k * k)

    def _gradient(self, x: Tensor, d: Tensor, scale: float) -> Tensor:
        # the convolution's weight gradient is sum over positions of d x^T = d^T x of the rows
        grad = conv2d_weight(x, self.kernel_shape, d, stride=self.stride, padding=self.padding)
        grad = grad.reshape(self.kernel_shape[0], -1)  # (out_ch, in_ch*k*k)
        return grad if scale == 1.0 else grad.mul_(scale)
