"""Job cost (samples x parameters) from the spec, checked against the built models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aimc_engine.models import build_model
from aimc_engine.tiles import TileConfig
from aimc_spec.cost import job_cost, parameters
from aimc_spec.spec import parse_spec


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        ({"kind": "mlp", "hidden": [128, 64]}, (1, 8, 8)),
        ({"kind": "cnn", "channels": [8, 16], "fc": 32}, (1, 28, 28)),
        ({"kind": "cnn", "channels": [4, 8], "fc": 16}, (1, 8, 8)),
        ({"kind": "resnet", "channels": [4, 8]}, (1, 8, 8)),
    ],
)
def test_parameter_count_equals_the_built_model(model: dict, shape: tuple[int, ...]) -> None:
    spec = parse_spec({"model": model})
    g = torch.Generator()
    net = build_model(spec, shape, 10, TileConfig(spec.analog, g, g))
    built = sum(layer.tile.weight.numel() for layer in net.weight_layers)
    built += sum(p.numel() for p in net.digital_parameters())
    assert parameters(spec, shape) == built


def test_samples_from_epochs_steps_and_npz_headers(tmp_path: Path) -> None:
    assert job_cost(parse_spec({"training": {"epochs": 2}})).samples == 2 * 143 * 10
    gpipe = {"training": {"steps": 4}, "pipeline": {"stages": 2, "schedule": "gpipe"}}
    assert job_cost(parse_spec(gpipe)).samples == 4 * 5 * 10
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=np.zeros((500, 12), np.float32),
        y_train=np.zeros(500, int),
        x_test=np.zeros((5, 12), np.float32),
        y_test=np.zeros(5, int),
    )
    cost = job_cost(
        parse_spec({"dataset": {"name": "npz", "path": str(path)}, "training": {"epochs": 1}})
    )
    assert cost.samples == 500
    assert cost.parameters == 12 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
