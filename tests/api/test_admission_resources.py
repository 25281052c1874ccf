"""Admission by estimated peak memory and run time (aimc_spec.resources): the probe's
two jobs are refused naming the limit; every example passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aimc_spec.cost import data_shape
from aimc_spec.resources import resources
from aimc_spec.spec import parse_spec
from service.admission import check_resources
from service.errors import ProblemError
from service.settings import Settings
from tests.conftest import ROOT

SETTINGS = Settings()


def refusal(spec: dict) -> dict:
    with pytest.raises(ProblemError) as refused:
        check_resources(parse_spec(spec), None, SETTINGS)
    assert refused.value.problem.status == 422
    return refused.value.problem.model_dump()


def test_a_model_of_17_gb_of_weights_is_refused_for_its_memory() -> None:
    """`hidden: [65536, 65536]` for one step passed samples x parameters; a worker then
    tried to allocate 17 GB."""
    problem = refusal({"model": {"hidden": [65536, 65536]}, "training": {"steps": 1}})
    assert "max_job_memory_mib" in problem["detail"] and "weights" in problem["detail"]
    assert problem["errors"][0]["loc"] == "model"


def test_a_cnn_of_hours_is_refused_for_its_time() -> None:
    """channels [512, 512] on the MNIST subset for 10 epochs: 1.3 GMAC a sample."""
    spec = {
        "model": {"kind": "cnn", "channels": [512, 512]},
        "dataset": {"name": "mnist_subset"},
        "training": {"epochs": 10},
    }
    problem = refusal(spec)
    assert "max_job_seconds" in problem["detail"] and problem["errors"][0]["loc"] == "training"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_admitted(path: Path) -> None:
    check_resources(parse_spec(yaml.safe_load(path.read_text())), None, SETTINGS)


def test_the_estimate_grows_with_what_the_engine_holds() -> None:
    """Each part follows its cause: stashes only for async_stash, pulses only for pulsed
    updates, a second device array for tiki_taka and
    residual_learning,
    chi for mixed_precision, K devices for a unit cell, activations with the micro-batch."""

    def parts(**spec: object) -> dict[str, int]:
        job = parse_spec(spec)
        return resources(job, *(data_shape(job, None) or (1, (1,)))).parts

    plain = parts()
    assert plain["stashes"] == 0 and plain["pulses"] == 0
    stashed = parts(pipeline={"stages": 3, "schedule": "async_stash"})
    assert stashed["stashes"] == 3 * stashed["weights"] // 2  # P weight copies
    assert parts(analog={"update": "pulsed"})["pulses"] > 0
    assert parts(optimizer={"algorithm": "tiki_taka"})["devices"] == 2 * plain["devices"]
    assert parts(optimizer={"algorithm": "residual_learning"})["devices"] == 2 * plain["devices"]
    ttv2 = parts(optimizer={"algorithm": "ttv2"})["devices"]  # P's devices and the buffer H
    assert ttv2 == plain["devices"] * 13 // 6
    assert parts(optimizer={"algorithm": "chopped_ttv2"})["devices"] == ttv2
    assert parts(optimizer={"algorithm": "agad"})["devices"] == plain["devices"] * 15 // 6
    chi = parts(optimizer={"algorithm": "mixed_precision"})["devices"]  # one float per weight
    assert chi == plain["devices"] * 7 // 6
    pair = parts(analog={"unit_cell": {"kind": "one_sided"}})["devices"]
    assert pair == plain["devices"] * 13 // 6  # two devices and the weight read from them
    quad = parts(analog={"unit_cell": {"kind": "vector", "devices": 4}})["devices"]
    assert quad == plain["devices"] * 25 // 6
    wide = parts(training={"micro_batch_size": 40})
    assert wide["activations"] == 4 * plain["activations"]
    assert parts(analog={"enabled": False}, optimizer={"algorithm": "sgd"})["devices"] == 0


def test_a_micro_batch_of_seconds_is_refused_so_a_cancel_acts_within_the_limit() -> None:
    """A cancel waits for the action in progress: one micro-batch's backward through a
    wide CNN on 28x28 images, 64 at a time, would take about 19 s at 10 GFLOP/s."""
    spec = {
        "dataset": {"name": "mnist_subset"},
        "model": {"kind": "cnn", "channels": [256, 256]},
        "training": {"steps": 2, "micro_batch_size": 64},
    }
    problem = refusal(spec)
    assert "max_action_seconds" in problem["detail"], problem["detail"]
    assert problem["errors"][0]["loc"] == "training.micro_batch_size"
    smaller = {**spec, "training": {"steps": 2, "micro_batch_size": 4}}
    check_resources(parse_spec(smaller), None, SETTINGS)  # 16x less: within the limit
