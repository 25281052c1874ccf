"""Metric-point measurements: test loss and accuracy, gradient norm, analog saturation.

Observing a run never changes it: evaluation draws its noise from the run's
observation generator (`observing`), and the gradient probe computes digitally
with no random draws, touching neither the recorded rows nor the gradients
of micro-batches still in a pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from aimc_engine.models import LayeredNet
from aimc_engine.tiles import AnalogTile

EVAL_CHUNK = 1000  # samples per forward pass when evaluating


@contextmanager
def observing(model: LayeredNet, generator: torch.Generator) -> Iterator[None]:
    """For the block, every tile (W, and Tiki-Taka's P) draws its noise from `generator`.

    Training's noise generator is shared by all tiles and advances with every
    noisy MVM; an evaluation drawing from it would shift every later pulse and
    make a run's weights depend on how often it is observed.
    """
    tiles = [m for m in model.modules() if isinstance(m, AnalogTile)]
    saved = [tile.noise_generator for tile in tiles]
    for tile in tiles:
        tile.noise_generator = generator
    try:
        yield
    finally:
        for tile, own in zip(tiles, saved, strict=True):
            tile.noise_generator = own


@torch.no_grad()
def evaluate(
    model: LayeredNet, x: Tensor, y: Tensor, *, generator: torch.Generator
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the whole set, through the analog forward
    (IO non-idealities included: the network as the hardware runs it), its noise
    drawn from `generator`, the run's observation generator."""
    total_loss, correct = 0.0, 0
    with observing(model, generator):
        for i in range(0, len(x), EVAL_CHUNK):
            logits = model(x[i : i + EVAL_CHUNK])
            target = y[i : i + EVAL_CHUNK]
            total_loss += float(F.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(dim=1) == target).sum())
    return total_loss / len(x), correct / len(x)


@contextmanager
def _digital(model: LayeredNet) -> Iterator[list[Tensor]]:
    """For the block, every weight layer computes rows @ W^T + b in floating point, W a
    gradient-tracking leaf holding the weights its MVMs use now (W + gamma P under
    Tiki-Taka); yields those leaves. Nothing reaches the tiles: no IO model, no noise,
    no rows recorded for an update."""
    layers = model.weight_layers
    leaves = [layer.effective_weight().detach().requires_grad_() for layer in layers]
    for layer, weight in zip(layers, leaves, strict=True):
        layer.exact_weight = weight
    try:
        yield leaves
    finally:
        for layer in layers:
            layer.exact_weight = None


def gradient_norm_sq(model: LayeredNet, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(||grad f(W)||^2, f(W)) for f the mean cross-entropy on (x, y), exactly.

    The theory's convergence measure: the digital gradient at the current weights,
    from a floating-point forward and backward (perfect IO, no noise) through every
    weight matrix (analog and digital; under Tiki-Taka the weights W + gamma P the
    network computes with) and every bias. It is the gradient of the network the
    weights define, not of the analog forward/backward's noisy estimate of it.
    torch.autograd.grad leaves `.grad` alone and the layers record nothing, so
    micro-batches in a pipeline keep their pending rows and gradients, and no random
    stream advances: measuring never changes the run.
    """
    biases = model.digital_parameters()
    with _digital(model) as weights:
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, [*weights, *biases], allow_unused=True)
    total = sum(float(g.square().sum()) for g in grads if g is not None)
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
