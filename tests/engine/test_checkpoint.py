"""Checkpoints: the spec's digest, and resuming refused for another spec, format or blob."""

from __future__ import annotations

import io

import pytest
import torch

from aimc_engine.checkpoint import FORMAT, spec_digest
from aimc_engine.runner import Callbacks, RunError, run
from aimc_spec.spec import JobSpec, parse_spec

SHORT = {"training": {"steps": 20, "micro_batch_size": 8, "eval_every": 5}}


def without_wall(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "wall_s"} for m in metrics]


def checkpoints(spec: JobSpec) -> list[bytes]:
    blobs: list[bytes] = []
    run(spec, Callbacks(on_checkpoint=blobs.append, checkpoint_every=10))
    assert blobs
    return blobs


def test_the_digest_ignores_the_name_and_how_the_spec_is_spelled() -> None:
    base = parse_spec({**SHORT, "analog": {"device": {"preset": "reram_sb"}}})
    expanded = parse_spec({**base.normalised(), "name": "another name"})
    assert spec_digest(expanded) == spec_digest(base)
    for change in ({"seed": 1}, {"optimizer": {"lr": 0.05}}, {"device": "cpu"}):
        assert spec_digest(parse_spec({**base.normalised(), **change})) != spec_digest(base)


def test_a_checkpoint_resumes_a_spec_differing_only_in_its_name() -> None:
    spec = parse_spec(SHORT)
    blobs: list[bytes] = []
    full = run(spec, Callbacks(on_checkpoint=blobs.append, checkpoint_every=10))
    renamed = parse_spec({**SHORT, "name": "renamed"})
    resumed = run(renamed, resume=blobs[0])
    assert without_wall(resumed.metrics) == without_wall(full.metrics)


@pytest.mark.parametrize(
    "change", [{"seed": 3}, {"training": {**SHORT["training"], "eval_every": 4}}]
)
def test_a_checkpoint_of_another_spec_is_refused(change: dict) -> None:
    blob = checkpoints(parse_spec(SHORT))[0]
    other = parse_spec({**SHORT, **change})
    with pytest.raises(RunError, match=r"resume: the checkpoint was written for another spec"):
        run(other, resume=blob)


def test_a_checkpoint_of_another_format_is_refused() -> None:
    spec = parse_spec(SHORT)
    state = torch.load(io.BytesIO(checkpoints(spec)[0]), weights_only=True)
    assert state["format"] == FORMAT
    state["format"] = FORMAT + 1
    newer = io.BytesIO()
    torch.save(state, newer)
    with pytest.raises(RunError, match=rf"resume: the checkpoint is of format {FORMAT + 1}"):
        run(spec, resume=newer.getvalue())


@pytest.mark.parametrize("blob", [b"", b"not a checkpoint", None])
def test_what_is_no_checkpoint_is_refused(blob: bytes | None) -> None:
    if blob is None:  # a torch file, but of something else
        other = io.BytesIO()
        torch.save([1, 2, 3], other)
        blob = other.getvalue()
    with pytest.raises(RunError, match=r"resume: not an aimc checkpoint"):
        run(parse_spec(SHORT), resume=blob)
