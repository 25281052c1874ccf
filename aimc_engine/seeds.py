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


def stream_seed(seed: int, stream: Stream) -> int:
    """The 64-bit seed of `stream` in a run seeded with `seed` (>= 0)."""
    child = np.random.SeedSequence(seed, spawn_key=(int(stream),))
    return int(child.generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class RunGenerators:
    """The torch generators of one run (the dataset stream is numpy's: see datasets.py)."""

    init: torch.Generator
    data: torch.Generator
    noise: torch.Generator
    observe: torch.Generator


def run_generators(seed: int, device: torch.device) -> RunGenerators:
    """Fresh generators for a run: init and data on the CPU (their draws are made there and
    moved), noise and observation on `device`, where the MVMs and updates draw them."""

    def make(stream: Stream, where: torch.device) -> torch.Generator:
        return torch.Generator(device=where).manual_seed(stream_seed(seed, stream))

    cpu = torch.device("cpu")
    return RunGenerators(
        init=make(Stream.INIT, cpu),
        data=make(Stream.DATA, cpu),
        noise=make(Stream.NOISE, device),
        observe=make(Stream.OBSERVE, device),
    )
