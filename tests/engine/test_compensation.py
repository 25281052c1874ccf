"""Staleness compensation: PipeMare's factor, accumulation's staleness bound, and both
through run(spec) against the numerics they must reduce to."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from aimc_engine.pipeline.compensation import lr_factor, update_staleness, writes
from aimc_engine.pipeline.schedule import FORWARD, UPDATE, build_schedule
from aimc_engine.pipeline.timeline import staleness
from aimc_engine.runner import RunOutput, run
from aimc_spec.spec import SpecError, parse_spec

ANALOG = {
    "analog": {"device": {"model": "softbounds", "w_min": -0.6, "w_max": 0.6, "states": 500}},
    "optimizer": {"algorithm": "analog_sgd", "lr": 0.1},
}
DIGITAL = {"analog": {"enabled": False}, "optimizer": {"algorithm": "sgd", "lr": 0.1}}


def train(pipeline: dict[str, Any], *, steps: int = 20, algorithm: dict = ANALOG) -> RunOutput:
    return run(
        parse_spec(
            {
                "seed": 3,
                "device": "cpu",
                "model": {"kind": "mlp", "hidden": [12, 8, 6], "activation": "tanh"},
                "training": {"steps": steps, "micro_batch_size": 4, "eval_every": 7},
                "pipeline": pipeline,
                **algorithm,
            }
        )
    )


def without_wall(out: RunOutput) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "wall_s"} for m in out.metrics]


@pytest.mark.parametrize(
    ("d", "j", "p", "warmup", "expected"),
    [
        (3, 0, 1.0, 100, 1 / 4),  # the stalest of P = 4 stages starts at a quarter
        (3, 50, 1.0, 100, 4**-0.5),  # half-way: exponent 1/2
        (3, 75, 1.0, 100, 4**-0.25),
        (3, 100, 1.0, 100, 1.0),  # after the warm-up: plain lr
        (3, 10**6, 1.0, 100, 1.0),
        (0, 0, 1.0, 100, 1.0),  # the output stage is never rescaled
        (1, 0, 2.0, 10, 1 / 4),  # (1 + 1)^-2
        (2, 5, 2.0, 10, 3**-1.0),  # exponent 2 * (1 - 1/2) = 1
        (5, 0, 0.0, 10, 1.0),  # p = 0: no rescaling at all
    ],
)
def test_pipemare_factor(d: int, j: int, p: float, warmup: int, expected: float) -> None:
    assert math.isclose(lr_factor(d, j, p=p, warmup=warmup), expected, rel_tol=1e-12)


@pytest.mark.parametrize("stages", [2, 4, 6])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
def test_accumulation_bounds_staleness_in_device_updates(stages: int, k: int) -> None:
    """Walk each stage's async order counting the updates that write the tiles: the forward
    of j has seen floor(j/k) writes under sequential accumulation; async lags by at most
    ceil(d_s/k), and that bound is reached."""
    n = 60
    schedule = build_schedule("async", stages, n)
    for s, actions in enumerate(schedule.per_stage):
        written, worst = 0, 0
        for a in actions:
            if a.kind == UPDATE and writes(a.microbatch, k, n):
                written += 1
            elif a.kind == FORWARD:
                worst = max(worst, a.microbatch // k - written)
        d = staleness(schedule)[s]
        assert worst == update_staleness(d, k) == math.ceil((stages - 1 - s) / k)


@pytest.mark.parametrize(
    "compensation",
    [{"mode": "lr_scale", "p": 0.0}, {"mode": "accumulate", "k": 1}],
    ids=["lr_scale p=0", "accumulate k=1"],
)
@pytest.mark.parametrize("schedule", ["async", "async_stash"])
def test_neutral_settings_are_bit_identical_to_no_compensation(
    compensation: dict, schedule: str
) -> None:
    """Through the compensated code path, p = 0 and k = 1 must be the paper's numerics
    exactly (same metrics, same weights); mode none does not enter that path at all."""
    stale = {"stages": 4, "schedule": schedule, "micro_batches": 5}
    plain = train({**stale, "compensation": {"mode": "none"}})
    neutral = train({**stale, "compensation": compensation})
    assert without_wall(neutral) == without_wall(plain)
    for (name, a), (_, b) in zip(
        plain.model.state_dict().items(), neutral.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_lr_scale_shrinks_the_stale_stages_step_by_the_factor(p: float) -> None:
    """One micro-batch through P = 2 stages: the output stage (d = 0) takes the same step,
    the input stage (d = 1) (1 + 1)^-p of it."""
    stale = {"stages": 2, "schedule": "async", "micro_batches": 5}
    model = {"model": {"kind": "mlp", "hidden": [8]}}

    def weights(compensation: dict) -> list[torch.Tensor]:
        out = run(
            parse_spec(
                {
                    "seed": 0,
                    "device": "cpu",
                    **model,
                    **DIGITAL,
                    "training": {"steps": 1, "micro_batch_size": 4},
                    "pipeline": {**stale, "compensation": compensation},
                }
            )
        )
        return [layer.tile.weight.clone() for layer in out.model.weight_layers]

    start = weights({"mode": "lr_scale", "p": 8.0, "warmup": 10**9})  # a 2^-8 step
    plain = weights({"mode": "none"})
    scaled = weights({"mode": "lr_scale", "p": p, "warmup": 10**9})
    torch.testing.assert_close(scaled[1], plain[1], rtol=0, atol=0)
    # the 2^-8 step stands in for the start: the steps differ by (2^-p - 2^-8) / (1 - 2^-8)
    step_plain, step_scaled = plain[0] - start[0], scaled[0] - start[0]
    ratio = (2**-p - 2**-8) / (1 - 2**-8)
    torch.testing.assert_close(step_scaled, ratio * step_plain, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("algorithm", [DIGITAL, ANALOG], ids=["digital", "analog"])
def test_accumulate_on_one_stage_is_mini_batch_sgd_on_the_sum(algorithm: dict) -> None:
    """With P = 1 nothing is stale: accumulating k = 3 micro-batches at lr is gpipe with
    B = 3 (the mean) at 3 lr, update for update."""
    accumulate = train(
        {"stages": 1, "schedule": "async", "compensation": {"mode": "accumulate", "k": 3}},
        steps=12,
        algorithm=algorithm,
    )
    lr = algorithm["optimizer"]["lr"]
    gpipe = train(
        {"stages": 1, "schedule": "gpipe", "micro_batches": 3},
        steps=4,
        algorithm={**algorithm, "optimizer": {**algorithm["optimizer"], "lr": 3 * lr}},
    )
    assert accumulate.result["updates"] == gpipe.result["updates"] == 4
    for a, b in zip(
        accumulate.model.state_dict().values(), gpipe.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("compensation", "updates"),
    [
        ({"mode": "none"}, 22),
        ({"mode": "lr_scale", "p": 1.0, "warmup": 10}, 22),
        ({"mode": "accumulate", "k": 4}, 6),  # ceil(22 / 4): the last micro-batch writes too
    ],
)
@pytest.mark.parametrize("schedule", ["async", "async_stash"])
def test_each_mode_trains_end_to_end(compensation: dict, updates: int, schedule: str) -> None:
    out = train(
        {"stages": 4, "schedule": schedule, "micro_batches": 5, "compensation": compensation},
        steps=22,
    )
    assert out.result["status"] == "succeeded"
    assert out.result["updates"] == out.metrics[-1]["step"] == updates
    assert out.result["spec"]["pipeline"]["compensation"] == {
        **{"mode": "none", "p": 1.0, "warmup": 1000, "k": 2},
        **compensation,
    }
    assert math.isfinite(out.result["final"]["test_loss"])


@pytest.mark.parametrize(
    ("pipeline", "loc", "message"),
    [
        (
            {"schedule": "gpipe", "compensation": {"mode": "lr_scale"}},
            "pipeline.compensation.mode",
            "compensates the stale weights of the async schedules (async, async_stash); "
            "schedule 'gpipe' has none",
        ),
        (
            {"compensation": {"mode": "accumulate"}},
            "pipeline.compensation.mode",
            "schedule 'sequential' has none",
        ),
        (
            {"schedule": "async", "compensation": {"mode": "lr_scale", "k": 4}},
            "pipeline.compensation.k",
            "a parameter of mode 'accumulate'; this mode is 'lr_scale'",
        ),
        (
            {"schedule": "async", "compensation": {"warmup": 5}},
            "pipeline.compensation.warmup",
            "a parameter of mode 'lr_scale'; this mode is 'none'",
        ),
        (
            {"schedule": "async", "compensation": {"mode": "stash"}},
            "pipeline.compensation.mode",
            "allowed: 'none', 'lr_scale' or 'accumulate'",
        ),
        (
            {"schedule": "async", "compensation": {"mode": "accumulate", "k": 0}},
            "pipeline.compensation.k",
            "greater than or equal to 1",
        ),
    ],
)
def test_bad_compensation_names_the_field(pipeline: dict, loc: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({"pipeline": {"stages": 2, **pipeline}})
    assert [p[0] for p in caught.value.problems] == [loc]
    assert message in caught.value.problems[0][1]


def test_a_normalised_compensated_spec_parses_back() -> None:
    """The normalised spec (what the service stores and the worker re-reads) carries every
    compensation field, defaults of the other modes included."""
    spec = parse_spec(
        {
            "pipeline": {
                "stages": 2,
                "schedule": "async",
                "compensation": {"mode": "accumulate", "k": 5},
            }
        }
    )
    assert parse_spec(spec.normalised()) == spec
