"""The pipeline executor against a direct implementation of pipeline.md's version table."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from aimc_engine.algorithms import Algorithm
from aimc_engine.models import build_model, tile_layers
from aimc_engine.pipeline.executor import PipelineExecutor, cut_stages
from aimc_engine.pipeline.schedule import build_schedule
from aimc_engine.pipeline.timeline import replay, unit_duration
from aimc_engine.tiles import TileConfig
from aimc_spec.spec import JobSpec, parse_spec

P, B, N, LR = 4, 3, 12, 0.2
ALGORITHMS = {
    "digital": {"analog": {"enabled": False}, "optimizer": {"algorithm": "sgd", "lr": LR}},
    "analog": {
        "analog": {"device": {"model": "softbounds", "w_min": -0.6, "w_max": 0.6, "states": 500}},
        "optimizer": {"algorithm": "analog_sgd", "lr": LR},
    },
}


def setup(kind: str, schedule: str, stages: int = P) -> tuple[JobSpec, PipelineExecutor, list]:
    spec = parse_spec(
        {
            "model": {"kind": "mlp", "hidden": [6, 5, 4], "activation": "tanh"},
            "pipeline": {"stages": stages, "schedule": schedule, "micro_batches": B},
            **ALGORITHMS[kind],
        }
    )
    g = torch.Generator().manual_seed(0)
    config = TileConfig(spec.analog, g, g)
    model = build_model(spec, (3,), 3, config)
    sched = build_schedule(schedule, stages, N, B)
    data = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(2, 3, generator=data), torch.randint(0, 3, (2,), generator=data))
        for _ in range(N)
    ]
    stage_list = cut_stages(model, stages, spec.pipeline.latency_ns.forward)
    algorithms = [Algorithm(spec, stage, config) for stage in stage_list]
    return spec, PipelineExecutor(stage_list, algorithms, sched), batches


def run_executor(executor: PipelineExecutor, batches: list) -> list[float]:
    losses = {}
    for t in replay(executor.schedule, unit_duration):
        executor.execute(t.action, lambda j: LR, lambda j: batches[j])
        losses.update(executor.losses)
        executor.losses.clear()
    assert not executor.in_flight()
    return [losses[j] for j in range(N)]


def reference(
    executor: PipelineExecutor, batches: list, schedule: str, init: list[tuple[Tensor, Tensor]]
) -> tuple[list[float], list[tuple[Tensor, Tensor]]]:
    """Forward of j at version v_f(s, j), backward at v_b(s, j), updates per the table."""
    layers = [layer for stage in executor.stages for layer in tile_layers(stage)]
    stage_of = [s for s, stage in enumerate(executor.stages) for _ in tile_layers(stage)]
    weights = [[w.clone()] for w, _ in init]  # weights[l][v]: layer l after v updates
    biases = [[b.clone()] for _, b in init]
    group = B if schedule in ("gpipe", "1f1b") else 1
    d = [P - 1 - s for s in range(P)]
    grads: list[list[tuple[Tensor, Tensor]]] = [[] for _ in layers]
    losses = []

    def versions(s: int, j: int) -> tuple[int, int]:
        if group > 1:
            return j // group, j // group
        stale = max(0, j - d[s])
        return stale, (stale if schedule == "async_stash" else j)

    for j, (x, y) in enumerate(batches):
        acts = [x]
        for l_idx, _ in enumerate(layers):
            v, _ = versions(stage_of[l_idx], j)
            z = acts[-1] @ weights[l_idx][v].T + biases[l_idx][v]
            acts.append(z if l_idx == len(layers) - 1 else torch.tanh(z))
        losses.append(float(F.cross_entropy(acts[-1], y)))
        delta = (F.softmax(acts[-1], dim=1) - F.one_hot(y, 3)) / len(y)
        for l_idx in reversed(range(len(layers))):
            grads[l_idx].append((delta.T @ acts[l_idx], delta.sum(0)))
            _, v = versions(stage_of[l_idx], j)
            if l_idx > 0:
                delta = (delta @ weights[l_idx][v]) * (1 - acts[l_idx] ** 2)
        if (j + 1) % group == 0:
            for l_idx, layer in enumerate(layers):
                g_w = sum(gw for gw, _ in grads[l_idx]) / group
                g_b = sum(gb for _, gb in grads[l_idx]) / group
                grads[l_idx].clear()
                w = weights[l_idx][-1].clone()
                if layer.is_analog:
                    layer.tile.device_model.expected_update_(w, -LR * g_w, torch.Generator())
                else:
                    w -= LR * g_w
                weights[l_idx].append(w)
                biases[l_idx].append(biases[l_idx][-1] - LR * g_b)
    return losses, [(w[-1], b[-1]) for w, b in zip(weights, biases, strict=True)]


@pytest.mark.parametrize("schedule", ["async", "async_stash", "gpipe", "1f1b"])
@pytest.mark.parametrize("kind", ["digital", "analog"])
def test_executor_follows_the_version_table(schedule: str, kind: str) -> None:
    _, executor, batches = setup(kind, schedule)
    layers = [layer for stage in executor.stages for layer in tile_layers(stage)]
    init = [(layer.tile.weight.clone(), layer.bias.detach().clone()) for layer in layers]
    ref_losses, ref_final = reference(executor, batches, schedule, init)
    losses = run_executor(executor, batches)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses))
    for layer, (w, b) in zip(layers, ref_final, strict=True):
        torch.testing.assert_close(layer.tile.weight, w)
        torch.testing.assert_close(layer.bias.detach(), b)


def test_stale_weights_change_the_numbers() -> None:
    """async differs from gpipe and from async_stash: the table is not vacuous."""
    finals = {}
    for schedule in ("async", "async_stash", "gpipe"):
        _, executor, batches = setup("analog", schedule)
        run_executor(executor, batches)
        finals[schedule] = tile_layers(executor.stages[0])[0].tile.weight.clone()
    assert not torch.allclose(finals["async"], finals["async_stash"])
    assert not torch.allclose(finals["async"], finals["gpipe"])


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_sync_schedules_equal_mini_batch_training(schedule: str) -> None:
    """gpipe and 1f1b with B micro-batches of b = plain training with batches of B*b."""
    _, executor, batches = setup("analog", schedule)
    run_executor(executor, batches)
    _, plain, _ = setup("analog", "sequential", stages=1)
    merged = [
        (
            torch.cat([batches[k + i][0] for i in range(B)]),
            torch.cat([batches[k + i][1] for i in range(B)]),
        )
        for k in range(0, N, B)
    ]
    for j, batch in enumerate(merged):
        plain.forward(0, j, batch)
        plain.backward(0, j)
        plain.compute[0].update(j, LR)
    ours = [layer.tile.weight for stage in executor.stages for layer in tile_layers(stage)]
    theirs = [layer.tile.weight for stage in plain.stages for layer in tile_layers(stage)]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
