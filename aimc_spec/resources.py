"""What a job will take from a worker, from its spec alone (torch-free): the peak memory
of its process above the worker it was forked from, and its floating-point work.

samples x parameters (aimc_spec.cost) bounded neither: `hidden: [65536, 65536]` for one
step is few samples but 17 GB of weights, and a CNN with 512 channels has few weights
but 1.3 GMAC per 28x28 sample. The API refuses a job whose estimate passes the
worker's limits (service/admission.py); each job's process also runs under an
operating-system memory limit (worker/memory_limit.py) for what an estimate misses.

Memory, float32 (4 bytes) throughout, each term one thing the engine holds at once:
  weights     every weight and bias, and its gradient                      2 x params
  devices     analog layers: the device's state and per-device parameters  6 x analog
              (tiki_taka, residual_learning: a second array P and devices) + 6 x analog
              (mixed_precision: the digital accumulator chi)              + 1 x analog
              (ttv2, chopped_ttv2: P and its devices, the buffer H)      + 7 x analog
              (agad: as chopped_ttv2, and the running mean, reference)   + 9 x analog
              (analog.unit_cell of K devices: K x 6, and the weight read) K x 6 + 1
  pulses      pulsed/rounded updates: up and down pulse counts per weight  2 x analog
  stashes     async_stash keeps a weight copy per micro-batch in flight    P x params
  activations outputs and their gradients of every layer per micro-batch,
              for the micro-batches in flight (B for gpipe/1f1b, P async)  2 x b x acts x m
  evaluation  every layer's outputs for a chunk of EVAL_CHUNK samples        chunk x acts
              (resnet: x RESIDUAL_EVAL_FACTOR, a block's skip and sum besides)
  data        the training and test sets as float32 tensors               (n + n/4) x in
  checkpoint  a serialised copy of weights and device state                1 x state
  runtime     what the engine takes whatever the model (allocator, thread
              pools, dataset loaders): RUNTIME_BYTES, measured
The constants were fitted to measured peaks (benchmarks/memory_estimate.py: VmHWM of
the job's forked process less what it held at the fork), within a factor 1.25 for mlp,
cnn and resnet under every update mode and schedule it runs.
Work: a forward pass is one multiply-add per weight use (MACs), backward two; so 6
FLOPs per MAC per sample, plus, for pulsed updates, bit_length pulse draws per analog
weight per update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from aimc_spec.cost import CLASSES
from aimc_spec.spec import JobSpec
from aimc_spec.vocabulary import SYNCHRONOUS

F32 = 4
DEVICE_ARRAYS = 6  # state, bounds up/down, step up/down, reference: per analog weight
# what an algorithm keeps per analog weight besides the tile's own device arrays
ALGORITHM_ARRAYS = {
    "ttv2": DEVICE_ARRAYS + 1,  # P and the digital buffer H
    "chopped_ttv2": DEVICE_ARRAYS + 1,  # P and H (the choppers are vectors)
    "agad": DEVICE_ARRAYS + 3,  # P, H, the running mean and the reference
    "tiki_taka": DEVICE_ARRAYS,
    "residual_learning": DEVICE_ARRAYS,
    "mixed_precision": 1,
}
PULSE_ARRAYS = 2  # up and down pulse counts (pulsed, rounded)
FLOPS_PER_MAC = 6  # forward 2, backward 4 (input and weight gradients)
STEP_OVERHEAD_S = 1e-3  # the engine's own time per micro-batch (Python, small tensors)
EVAL_CHUNK = 1000  # at most this many samples per evaluation forward
# ...and at most this much work per chunk (~2 s at the admission's 10 GFLOP/s): the
# engine asks for a stop between chunks, so a cancel during a large model's metric
# point waits for one such chunk, not for a 1000-sample forward of minutes
EVAL_CHUNK_FLOPS = 2e10
RUNTIME_BYTES = 100 * 2**20  # a 7 MB digital mlp's job process peaked 120 MiB above the fork
# A residual block's evaluation holds its input (the skip) beside both convolutions'
# outputs and their sum: twice the outputs of its weight layers (measured: resnet
# [64, 128] on digits peaked 227-316 MiB above the fork, 190 MiB estimated without it).
RESIDUAL_EVAL_FACTOR = 2


@dataclass(frozen=True)
class Layer:
    """One weight layer: `fan_in` x `fan_out` weights used at `positions` places per
    sample (1 for a dense layer, output pixels for a convolution)."""

    fan_in: int
    fan_out: int
    positions: int = 1

    @property
    def weights(self) -> int:
        return self.fan_in * self.fan_out + self.fan_out

    @property
    def outputs(self) -> int:
        return self.fan_out * self.positions

    @property
    def macs(self) -> int:
        return self.fan_in * self.fan_out * self.positions


def layers(spec: JobSpec, sample_shape: tuple[int, ...]) -> list[Layer]:
    """The model's weight layers for samples of `sample_shape` (as aimc_spec.cost counts
    them: 5x5 convolutions then 2x2 pooling for cnn, 3x3 for resnet)."""
    m = spec.model
    if m.kind == "mlp":
        widths = [math.prod(sample_shape), *m.hidden, CLASSES]
        return [Layer(a, b) for a, b in pairwise(widths)]
    c = sample_shape[0] if len(sample_shape) == 3 else 1
    h = sample_shape[-2] if len(sample_shape) == 3 else math.isqrt(math.prod(sample_shape))
    w = sample_shape[-1] if len(sample_shape) == 3 else h
    out: list[Layer] = []
    if m.kind == "cnn":
        for ch in m.channels:
            out.append(Layer(c * 25, ch, h * w))
            c, h, w = ch, max(h // 2, 1), max(w // 2, 1)
        return [*out, Layer(c * h * w, m.fc), Layer(m.fc, CLASSES)]
    out.append(Layer(c * 9, m.channels[0], h * w))
    c_in = m.channels[0]
    for i, ch in enumerate(m.channels):
        if i > 0:
            h, w = max(h // 2, 1), max(w // 2, 1)
            out.append(Layer(c_in, ch, h * w))  # 1x1 shortcut
        out += [Layer(c_in * 9, ch, h * w), Layer(ch * 9, ch, h * w)]
        c_in = ch
    return [*out, Layer(c_in, CLASSES)]


def eval_chunk(spec: JobSpec, sample_shape: tuple[int, ...]) -> int:
    """Samples per evaluation forward for the spec's model on samples of `sample_shape`:
    EVAL_CHUNK, fewer where a chunk's forward would pass EVAL_CHUNK_FLOPS. Both executors
    evaluate in these chunks (and draw their IO noise chunk by chunk)."""
    macs = sum(layer.macs for layer in layers(spec, sample_shape))
    return max(1, min(EVAL_CHUNK, int(EVAL_CHUNK_FLOPS // (2 * max(macs, 1)))))


BACKWARD_FLOPS_PER_MAC = 4  # input and weight gradients: the longest of the three actions


def action_flops(spec: JobSpec, sample_shape: tuple[int, ...]) -> float:
    """FLOPs of the longest single action: one micro-batch's backward through the whole
    model (a stage holds at most that). The engine asks for a stop between actions, so
    this bounds how long a cancel can wait while training (evaluation: eval_chunk)."""
    macs = sum(layer.macs for layer in layers(spec, sample_shape))
    return float(BACKWARD_FLOPS_PER_MAC * macs * spec.training.micro_batch_size)


def _analog_weights(spec: JobSpec, found: list[Layer]) -> int:
    a = spec.analog
    if not a.enabled:  # under optimizer sgd too the tiles hold their devices (measured)
        return 0
    chosen: list[int]
    if a.layers == "all":
        chosen = list(range(len(found)))
    elif a.layers == "last":
        chosen = [len(found) - 1]
    else:
        chosen = [i for i in a.layers if 0 <= i < len(found)]
    return sum(found[i].weights for i in chosen)


@dataclass(frozen=True)
class Resources:
    """A job's estimated peak memory by part (bytes), its work (FLOPs) and its
    micro-batches."""

    parts: dict[str, int]
    flops: float
    micro_batches: int

    def seconds(self, gflops: float) -> float:
        """Run time on a worker doing `gflops` GFLOP/s, with the per-micro-batch cost."""
        return self.flops / (gflops * 1e9) + self.micro_batches * STEP_OVERHEAD_S

    @property
    def peak_bytes(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        """The parts over 1 MiB, largest first, in MiB."""
        big = sorted(((v, k) for k, v in self.parts.items() if v >= 2**20), reverse=True)
        return ", ".join(f"{k} {v / 2**20:.0f}" for v, k in big) or "all parts under 1 MiB"


def _cell_arrays(spec: JobSpec) -> int:
    """Device arrays per analog weight: one device's, or a unit cell's K devices' and
    the weight the tile reads from them (aimc_engine/unit_cells.py)."""
    cell = spec.analog.unit_cell
    if cell is None:
        return DEVICE_ARRAYS
    units = 2 if cell.kind == "one_sided" else cell.devices
    return units * DEVICE_ARRAYS + 1


def resources(spec: JobSpec, n_train: int, sample_shape: tuple[int, ...]) -> Resources:
    """The estimate for `spec` on `n_train` training samples of `sample_shape`."""
    found = layers(spec, sample_shape)
    params = sum(layer.weights for layer in found)
    analog = _analog_weights(spec, found)
    p, t, b = spec.pipeline, spec.training, spec.training.micro_batch_size
    device_arrays = _cell_arrays(spec) + ALGORITHM_ARRAYS.get(spec.optimizer.algorithm, 0)
    in_flight = p.micro_batches if p.schedule in SYNCHRONOUS else min(p.stages, p.micro_batches)
    stashes = p.stages if p.schedule == "async_stash" else 0
    acts = math.prod(sample_shape) + sum(layer.outputs for layer in found)
    eval_factor = RESIDUAL_EVAL_FACTOR if spec.model.kind == "resnet" else 1
    state = (params + device_arrays * analog) * F32
    parts = {
        "weights": 2 * params * F32,
        "devices": device_arrays * analog * F32,
        "pulses": (PULSE_ARRAYS * analog * F32) if spec.analog.update != "expected" else 0,
        "stashes": stashes * params * F32,
        "activations": 2 * b * acts * max(in_flight, 1) * F32,
        "evaluation": min(eval_chunk(spec, sample_shape), n_train) * acts * F32 * eval_factor,
        "data": (n_train + max(n_train // 4, 1)) * math.prod(sample_shape) * F32,
        "checkpoint": state,
        "runtime": RUNTIME_BYTES,
    }
    if t.steps is not None:
        samples = t.steps * p.group * b
    else:
        samples = math.ceil((t.epochs or 0) * (n_train // b)) * b
    updates = samples // max(b * p.group, 1)
    flops = FLOPS_PER_MAC * samples * sum(layer.macs for layer in found)
    if spec.analog.update == "pulsed":
        flops += updates * analog * spec.analog.bit_length
    return Resources(parts=parts, flops=float(flops), micro_batches=samples // max(b, 1))
