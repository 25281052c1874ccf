"""Metric-point measurements: test loss and accuracy, gradient norm, analog saturation.

Observing a run never changes it: evaluation draws its noise from the observation
generators (`observing`: each stage's own, seeds.py), and the gradient probe computes
digitally with no random draws, touching neither the recorded rows nor the gradients
of micro-batches still in a pipeline.

Each measurement is written per stage, with the combination of the stages' parts
separate: the single-process run passes one stage's output to the next itself, a
stage process (pipeline/stage_points.py) sends it to its neighbour, and both add the
parts up in the same order, so the two give the same floats bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_engine.models import LayeredNet, tile_layers
from aimc_engine.tiles import AnalogTile
from aimc_spec.resources import EVAL_CHUNK


@contextmanager
def observing(
    stages: nn.Module | Sequence[nn.Module],
    generators: torch.Generator | Sequence[torch.Generator],
) -> Iterator[None]:
    """For the block, every tile (W, and Tiki-Taka's P) of stage s draws its noise from
    generators[s] (a module and one generator: one stage).

    Training's noise generator of a stage advances with every noisy MVM of its tiles; an
    evaluation drawing from it would shift every later pulse and make a run's weights
    depend on how often it is observed.
    """
    if isinstance(stages, nn.Module):
        stages = [stages]
    if isinstance(generators, torch.Generator):
        generators = [generators]
    tiles = [
        (tile, generator)
        for stage, generator in zip(stages, generators, strict=True)
        for tile in stage.modules()
        if isinstance(tile, AnalogTile)
    ]
    saved = [tile.noise_generator for tile, _ in tiles]
    for tile, generator in tiles:
        tile.noise_generator = generator
    try:
        yield
    finally:
        for (tile, _), own in zip(tiles, saved, strict=True):
            tile.noise_generator = own


def chunks(n: int, size: int = EVAL_CHUNK) -> list[slice]:
    """The evaluation's chunks of a set of n samples, in order, `size` samples each
    (aimc_spec.resources.eval_chunk: fewer for large models)."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def tally(logits: Tensor, target: Tensor) -> tuple[float, int]:
    """(summed cross-entropy, correct predictions) of one chunk."""
    loss = float(F.cross_entropy(logits, target, reduction="sum"))
    return loss, int((logits.argmax(dim=1) == target).sum())


def mean_of(tallies: Sequence[tuple[float, int]], n: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a set of n samples from its chunks' tallies."""
    total_loss, correct = 0.0, 0
    for loss, right in tallies:
        total_loss += loss
        correct += right
    return total_loss / n, correct / n


class EvaluationStopped(Exception):
    """A stop was asked between two chunks of an evaluation: the point is abandoned."""


@torch.no_grad()
def evaluate(
    model: nn.Module | Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    *,
    generator: torch.Generator | Sequence[torch.Generator],
    should_stop: Callable[[], bool] | None = None,
    chunk: int = EVAL_CHUNK,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the whole set, through the analog forward
    (IO non-idealities included: the network as the hardware runs it) of the stages in
    order, stage s's noise drawn from generator[s], its observation generator.

    `should_stop` is asked before each chunk: a large model's test set takes minutes,
    and a cancel must not wait for it (raises EvaluationStopped)."""
    stages = [model] if isinstance(model, nn.Module) else list(model)
    tallies = []
    with observing(stages, generator):
        for part in chunks(len(x), chunk):
            if should_stop is not None and should_stop():
                raise EvaluationStopped
            h = x[part]
            for stage in stages:
                h = stage(h)
            tallies.append(tally(h, y[part]))
    return mean_of(tallies, len(x))


@contextmanager
def _digital(module: nn.Module) -> Iterator[list[Tensor]]:
    """For the block, every weight layer in `module` computes rows @ W^T + b in floating
    point, W a gradient-tracking leaf holding the weights its MVMs use now (W + gamma P
    under Tiki-Taka); yields those leaves. Nothing reaches the tiles: no IO model, no
    noise, no rows recorded for an update."""
    layers = tile_layers(module)
    leaves = [layer.effective_weight().detach().requires_grad_() for layer in layers]
    for layer, weight in zip(layers, leaves, strict=True):
        layer.exact_weight = weight
    try:
        yield leaves
    finally:
        for layer in layers:
            layer.exact_weight = None


class Probe:
    """One stage's part of the gradient probe: a digital forward, then the backward that
    gives the squared norms of its weight and bias gradients and the gradient to pass to
    the stage before."""

    def __init__(self, stage: nn.Module) -> None:
        self.stage = stage
        self.biases = [p for p in stage.parameters() if p.requires_grad]

    def forward(self, x: Tensor, *, first: bool) -> Tensor:
        """The stage's digital output for x (the first stage's x needs no gradient)."""
        self.x = x if first else x.detach().requires_grad_()
        with _digital(self.stage) as weights:
            self.weights = weights
            self.out = self.stage(self.x)
        return self.out

    def loss(self, y: Tensor) -> float:
        """The last stage: the output becomes f, the mean cross-entropy against y."""
        self.out = F.cross_entropy(self.out, y)
        return float(self.out.detach())

    def backward(self, grad: Tensor | None) -> tuple[Tensor | None, list[float], list[float]]:
        """(gradient for the stage before or None, squared norms of the weight gradients,
        of the bias gradients); `grad` is the output's gradient, None if the output is the
        loss."""
        first = not self.x.requires_grad
        inputs = [*([] if first else [self.x]), *self.weights, *self.biases]
        grads = torch.autograd.grad(self.out, inputs, grad_outputs=grad, allow_unused=True)
        grad_in = None if first else grads[0]
        rest = grads[0 if first else 1 :]
        squares = [None if g is None else float(g.square().sum()) for g in rest]
        n = len(self.weights)
        del self.x, self.out, self.weights  # the graph goes with them
        return (
            grad_in,
            [q for q in squares[:n] if q is not None],
            [q for q in squares[n:] if q is not None],
        )


def norm_sq(weight_squares: Sequence[list[float]], bias_squares: Sequence[list[float]]) -> float:
    """||grad||^2 from the stages' parts: every weight's square, stage by stage, then every
    bias's (the order of the whole model's parameters, so the sum is the same float)."""
    return sum(
        [q for part in weight_squares for q in part] + [q for part in bias_squares for q in part]
    )


def gradient_norm_sq(
    model: nn.Module | Sequence[nn.Module], x: Tensor, y: Tensor
) -> tuple[float, float]:
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
    stages = [model] if isinstance(model, nn.Module) else list(model)
    probes = [Probe(stage) for stage in stages]
    h = x
    for i, probe in enumerate(probes):
        h = probe.forward(h, first=i == 0)
    loss = probes[-1].loss(y)
    grad: Tensor | None = None
    weights: list[list[float]] = []
    biases: list[list[float]] = []
    for probe in reversed(probes):
        grad, w, b = probe.backward(grad)
        weights.insert(0, w)
        biases.insert(0, b)
    return norm_sq(weights, biases), loss


TileHealth = tuple[float, float, int]  # saturation, near-bound fraction, weights


@torch.no_grad()
def tile_health(module: nn.Module) -> list[TileHealth]:
    """Each analog tile's (saturation, near-bound fraction, weight count), in order."""
    out = []
    for layer in tile_layers(module):
        if layer.is_analog:
            t = layer.tile
            out.append((t.saturation(), t.near_bound_fraction(), t.weight.numel()))
    return out


def combine_health(tiles: Sequence[TileHealth]) -> tuple[float | None, float | None]:
    """(saturation S, near-bound fraction) over analog tiles; None for a digital model.

    S = mean over layers of max_ij (G/sqrt(F))^2 (analog-model.md section 3); the
    fraction counts weights within 5% of the range from a bound.
    """
    if not tiles:
        return None, None
    saturation = sum(t[0] for t in tiles) / len(tiles)
    n = sum(t[2] for t in tiles)
    near = sum(t[1] * t[2] for t in tiles) / n
    return saturation, near


def stage_pulses(module: nn.Module) -> float:
    """The device pulses counted on a stage's analog tiles (W and Tiki-Taka's P)."""
    total = 0.0
    for layer in tile_layers(module):
        if layer.is_analog:
            total += float(layer.tile.pulses)
            if layer.fast is not None:
                total += float(layer.fast.pulses)
    return total


def analog_health(model: LayeredNet) -> tuple[float | None, float | None]:
    """combine_health of the whole model's tiles."""
    return combine_health(tile_health(model))
