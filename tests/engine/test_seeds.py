"""A run's random streams: independent of each other, per stage, and of every other seed's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aimc_engine.seeds import STAGE_STREAMS, Stream, data_generator, stage_generators, stream_seed

STAGES = 3


def first_draws(seed: int) -> dict[str, tuple[float, ...]]:
    """The first uniforms of every stream a 3-stage run with `seed` draws from."""
    draws = {"data": tuple(torch.rand(4, generator=data_generator(seed)).tolist())}
    for s in range(STAGES):
        gens = stage_generators(seed, s, torch.device("cpu"))
        for name in ("init", "noise", "observe"):
            draws[f"{name}{s}"] = tuple(torch.rand(4, generator=getattr(gens, name)).tolist())
    # the dataset stream is numpy's; its draws are compared through a torch generator
    # seeded alike, so a shared seed would show as a shared draw
    dataset = torch.Generator().manual_seed(stream_seed(seed, Stream.DATASET))
    draws["dataset"] = tuple(torch.rand(4, generator=dataset).tolist())
    return draws


@pytest.mark.parametrize("seed", [0, 1, 41, 2**40])
def test_streams_of_neighbouring_seeds_and_stages_share_nothing(seed: int) -> None:
    """Formerly seed s's data stream was seed s+1's init stream (seed + 1); stage s's
    streams are no other stage's either."""
    mine, next_seed = first_draws(seed), first_draws(seed + 1)
    everything = [*mine.values(), *next_seed.values()]
    assert len(set(everything)) == len(everything) == 2 * (2 + 3 * STAGES)
    seeds = [
        stream_seed(s, stream, stage if stream in STAGE_STREAMS else None)
        for s in (seed, seed + 1)
        for stream in Stream
        for stage in range(STAGES if stream in STAGE_STREAMS else 1)
    ]
    assert len({s % 2**32 for s in seeds}) == len(seeds)  # torch's CPU generator keeps 32 bits


def test_same_seed_same_streams() -> None:
    assert first_draws(7) == first_draws(7)


def test_streams_are_seed_sequence_descendants() -> None:
    """Run-wide streams are child i of SeedSequence(seed).spawn(k); stage s's stream i is
    that child's child s, as the docs say: results can be re-derived."""
    children = np.random.SeedSequence(12).spawn(len(Stream))
    for stream, child in zip(Stream, children, strict=True):
        if stream in STAGE_STREAMS:
            grandchildren = child.spawn(STAGES)
            for s in range(STAGES):
                want = int(grandchildren[s].generate_state(1, np.uint64)[0])
                assert stream_seed(12, stream, s) == want
        else:
            assert stream_seed(12, stream) == int(child.generate_state(1, np.uint64)[0])


def test_a_stream_is_per_stage_or_per_run() -> None:
    with pytest.raises(ValueError, match="per stage"):
        stream_seed(0, Stream.NOISE)
    with pytest.raises(ValueError, match="per stage"):
        stream_seed(0, Stream.DATA, 1)
