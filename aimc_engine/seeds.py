"""Independent random streams of a run, all derived from the job's one seed.

Each stream is a child of numpy's `SeedSequence(seed)` (child i is
`SeedSequence(seed, spawn_key=(i,))`, what `SeedSequence(seed).spawn(k)[i]`
gives), hashed into a 64-bit torch or numpy seed. Deriving streams as
seed, seed+1, ... would make seed s's data stream seed s+1's initialisation
stream; hashed children of different seeds share nothing. torch's CPU
generator keeps 32 bits of its seed, so on CPU two streams collide with
probability about 2^-32 per pair.

Streams are numbered once and for all: adding a stream appends a number, so
existing streams (and every seed's results) stay as they are.

The streams a stage's tiles draw from (INIT, NOISE, OBSERVE) are per stage: stage s's
stream is `SeedSequence(seed, spawn_key=(stream, s))`, the s-th grandchild. So the draws
a stage sees depend on nothing but its own actions, and a process that runs one stage
(pipeline/stage_process.py) draws exactly what the single-process simulator draws for it.
DATA and DATASET stay one per run: stage 0 and the last stage replay the same shuffle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import torch


class Stream(IntEnum):
    """What a stream drives (its value is the spawn key)."""

    INIT = 0  # initial weights and biases, device-to-device variation
    DATA = 1  # the shuffle of the training set each epoch
    NOISE = 2  # training's noise: pulses, cycle-to-cycle, IO noise of training MVMs
    OBSERVE = 3  # noise of metric evaluation, never seen by training
    DATASET = 4  # train/test split, synthetic teacher and samples, MNIST-1D generation


STAGE_STREAMS = (Stream.INIT, Stream.NOISE, Stream.OBSERVE)  # one per stage


def stream_seed(seed: int, stream: Stream, stage: int | None = None) -> int:
    """The 64-bit seed of `stream` in a run seeded with `seed` (>= 0); for the per-stage
    streams (STAGE_STREAMS), stage `stage`'s."""
    if (stage is None) == (stream in STAGE_STREAMS):
        raise ValueError(f"stream {stream.name}: per stage is {stream in STAGE_STREAMS}")
    key = (int(stream),) if stage is None else (int(stream), stage)
    child = np.random.SeedSequence(seed, spawn_key=key)
    return int(child.generate_state(1, np.uint64)[0])


def _generator(seed: int, where: torch.device) -> torch.Generator:
    return torch.Generator(device=where).manual_seed(seed)


@dataclass(frozen=True)
class StageGenerators:
    """The torch generators of one stage: initial weights and device-to-device draws (on
    the CPU, moved), training's noise and the observation noise (on the stage's device,
    where the MVMs and updates draw them)."""

    init: torch.Generator
    noise: torch.Generator
    observe: torch.Generator


def stage_generators(seed: int, stage: int, device: torch.device) -> StageGenerators:
    """Fresh generators for stage `stage` of a run seeded with `seed`."""
    return StageGenerators(
        init=_generator(stream_seed(seed, Stream.INIT, stage), torch.device("cpu")),
        noise=_generator(stream_seed(seed, Stream.NOISE, stage), device),
        observe=_generator(stream_seed(seed, Stream.OBSERVE, stage), device),
    )


def data_generator(seed: int) -> torch.Generator:
    """The run's shuffle stream (CPU): every process that needs the shuffle makes its own."""
    return _generator(stream_seed(seed, Stream.DATA), torch.device("cpu"))
