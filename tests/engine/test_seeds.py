"""A run's random streams: independent of each other and of every other seed's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aimc_engine.seeds import Stream, run_generators, stream_seed


def first_draws(seed: int) -> dict[str, tuple[float, ...]]:
    """The first uniforms of every stream a run with `seed` draws from."""
    gens = run_generators(seed, torch.device("cpu"))
    draws = {
        name: tuple(torch.rand(4, generator=getattr(gens, name)).tolist())
        for name in ("init", "data", "noise", "observe")
    }
    # the dataset stream is numpy's; its draws are compared through a torch generator
    # seeded alike, so a shared seed would show as a shared draw
    dataset = torch.Generator().manual_seed(stream_seed(seed, Stream.DATASET))
    draws["dataset"] = tuple(torch.rand(4, generator=dataset).tolist())
    return draws


@pytest.mark.parametrize("seed", [0, 1, 41, 2**40])
def test_streams_of_neighbouring_seeds_share_nothing(seed: int) -> None:
    """Formerly seed s's data stream was seed s+1's init stream (seed + 1)."""
    mine, next_seed = first_draws(seed), first_draws(seed + 1)
    everything = [*mine.values(), *next_seed.values()]
    assert len(set(everything)) == 10  # no two of the ten streams start alike
    seeds = [stream_seed(s, stream) for s in (seed, seed + 1) for stream in Stream]
    assert len({s % 2**32 for s in seeds}) == 10  # torch's CPU generator keeps 32 bits


def test_same_seed_same_streams() -> None:
    assert first_draws(7) == first_draws(7)


def test_streams_are_seed_sequence_children() -> None:
    """Child i of SeedSequence(seed).spawn(k), as the docs say: results can be re-derived."""
    children = np.random.SeedSequence(12).spawn(len(Stream))
    for stream, child in zip(Stream, children, strict=True):
        assert stream_seed(12, stream) == int(child.generate_state(1, np.uint64)[0])
