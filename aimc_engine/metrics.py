"""Metric-point measurements: test loss and accuracy, gradient norm, analog saturation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from aimc_engine.models import LayeredNet

EVAL_CHUNK = 1000  # samples per forward pass when evaluating


@torch.no_grad()
def evaluate(model: LayeredNet, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the whole set, through the analog forward."""
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), EVAL_CHUNK):
        logits = model(x[i : i + EVAL_CHUNK])
        target = y[i : i + EVAL_CHUNK]
        total_loss += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    return total_loss / len(x), correct / len(x)


def gradient_norm_sq(model: LayeredNet, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(||grad f(W)||^2, f(W)) of the mean loss on (x, y), over every trained tensor.

    The theory's convergence measure; weight gradients are d^T x from the recorded
    backward rows. Gradients of micro-batches still in a pipeline are set aside
    and restored, so no update sees this measurement.
    """
    layers, params = model.weight_layers, model.digital_parameters()
    in_flight = [layer.pending for layer in layers], [p.grad for p in params]
    for layer in layers:
        layer.pending = []
    for p in params:
        p.grad = None
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    total = sum(float(p.grad.square().sum()) for p in params if p.grad is not None)
    for layer in layers:
        rows_x, rows_d = layer.take_pending()
        total += float((rows_d.T @ rows_x).square().sum())
    for layer, pending in zip(layers, in_flight[0], strict=True):
        layer.pending = pending
    for p, grad in zip(params, in_flight[1], strict=True):
        p.grad = grad
    return total, float(loss.detach())


@torch.no_grad()
def analog_health(model: LayeredNet) -> tuple[float | None, float | None]:
    """(saturation S, near-bound fraction) over analog tiles; None for a digital model.

    S = mean over layers of max_ij (G/sqrt(F))^2 (analog-model.md section 3); the
    fraction counts weights within 5% of the range from a bound.
    """
    tiles = [layer.tile for layer in model.analog_layers]
    if not tiles:
        return None, None
    saturation = sum(t.saturation() for t in tiles) / len(tiles)
    n = sum(t.weight.numel() for t in tiles)
    near = sum(t.near_bound_fraction() * t.weight.numel() for t in tiles) / n
    return saturation, near
