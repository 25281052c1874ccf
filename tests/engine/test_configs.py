"""Every aihwkit configuration (`analog.config`) trains through the engine: in a
pipeline with weight stashing, reproducibly, and resumed from a checkpoint exactly as
it runs uninterrupted (processes: tests/engine/test_distributed.py)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aimc_engine.runner import Callbacks, run
from aimc_spec.configs import CONFIGS
from aimc_spec.spec import parse_spec


def job(config: str, schedule: str = "async_stash") -> dict[str, Any]:
    return {
        "seed": 5,
        "dataset": {"name": "digits"},
        "model": {"kind": "mlp", "hidden": [12], "activation": "tanh"},
        "analog": {"config": config},
        "training": {"steps": 8, "micro_batch_size": 6, "eval_every": 4},
        "pipeline": {"stages": 2, "micro_batches": 2, "schedule": schedule},
    }


def without_wall(out: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k != "wall_s"} for m in out.metrics]


@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_configuration_trains_in_a_stashing_pipeline(config: str) -> None:
    out = run(parse_spec(job(config)))
    assert out.result["status"] == "succeeded"
    assert all(math.isfinite(m["train_loss"]) for m in out.metrics if "train_loss" in m)


@pytest.mark.parametrize(
    "config", ["TTv2EcRamPreset", "AGADReRamSBPreset", "ReRamSB4Preset", "MixedPrecisionPCMPreset"]
)
def test_a_configuration_run_is_reproducible_and_resumes_exactly(config: str) -> None:
    spec = parse_spec(job(config, "gpipe"))
    blobs: list[bytes] = []
    full = run(spec, Callbacks(on_checkpoint=blobs.append, checkpoint_every=3))
    assert without_wall(run(spec)) == without_wall(full)
    assert blobs
    assert without_wall(run(spec, resume=blobs[0])) == without_wall(full)
