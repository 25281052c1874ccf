"""run(spec): reproducibility, metric records, training sanity, every model kind."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from aimc_engine.runner import Callbacks, RunError, run
from aimc_spec.metric_record import METRIC_COLUMNS
from aimc_spec.spec import JobSpec, parse_spec

METRIC_KEYS = set(METRIC_COLUMNS)  # the job-spec contract's metric fields
DIGITS_MLP = {
    "dataset": {"name": "digits"},
    "model": {"kind": "mlp", "hidden": [128, 64], "activation": "tanh"},
    "training": {"epochs": 10, "micro_batch_size": 10, "eval_every": 1000},
}


def short(**overrides: object) -> dict:
    spec: dict = {"training": {"steps": 30, "micro_batch_size": 8, "eval_every": 10}}
    spec.update(overrides)
    return spec


def without_wall(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "wall_s"} for m in metrics]


@pytest.mark.parametrize("update", ["expected", "pulsed", "rounded"])
def test_same_spec_and_seed_give_identical_metrics(update: str) -> None:
    data = short(
        analog={
            "update": update,
            "device": {"c2c_noise": 0.5, "d2d_variation": 0.1},
            "io": {"perfect": False},
        },
    )
    a, b = run(parse_spec(data)), run(parse_spec(data))
    assert without_wall(a.metrics) == without_wall(b.metrics)
    c = run(parse_spec({**data, "seed": 1}))
    assert without_wall(a.metrics) != without_wall(c.metrics)


def test_metric_points_and_result() -> None:
    out = run(parse_spec(short()))
    steps = [m["step"] for m in out.metrics]
    assert steps == [0, 10, 20, 30]
    for m in out.metrics:
        assert m.keys() >= METRIC_KEYS
        assert m["samples"] == 8 * m["step"]
        assert m["sim_time_ns"] == pytest.approx(m["samples"] * 3 * (40 + 40 + 165.9))
        assert m["saturation"] >= 0 and 0 <= m["near_bound_fraction"] <= 1
        assert m["grad_norm_sq"] > 0
    r = out.result
    assert r["status"] == "succeeded" and r["updates"] == 30 and r["samples"] == 240
    assert r["final"]["test_accuracy"] == out.metrics[-1]["test_accuracy"]
    assert r["timeline"]["staleness"] == [0] and r["timeline"]["bubble_fraction"] == 0
    assert r["spec"]["analog"]["device"]["dw_min"] == pytest.approx(2 / 1200)
    assert {"torch", "numpy", "aimc", "python"} <= r["versions"].keys()


def test_digital_run_has_no_analog_health() -> None:
    out = run(parse_spec(short(analog={"enabled": False}, optimizer={"algorithm": "sgd"})))
    assert out.metrics[-1]["saturation"] is None
    assert out.metrics[-1]["near_bound_fraction"] is None


@pytest.mark.parametrize(
    ("kind", "dataset"),
    [("cnn", {"name": "digits"}), ("resnet", {"name": "digits"}), ("mlp", {"name": "synthetic"})],
)
@pytest.mark.parametrize("algorithm", ["analog_sgd", "tiki_taka"])
def test_every_model_kind_trains(kind: str, dataset: dict, algorithm: str) -> None:
    spec = short(
        model={"kind": kind, "channels": [4, 8], "fc": 16, "hidden": [16]},
        dataset=dataset,
        analog={"update": "pulsed", "io": {"perfect": False}},
        optimizer={"algorithm": algorithm, "lr": 0.05},
    )
    out = run(parse_spec(spec))
    assert out.result["status"] == "succeeded"
    assert all(np.isfinite(m["test_loss"]) for m in out.metrics)


def test_cnn_on_28x28_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "img.npz"
    np.savez(
        path,
        x_train=rng.random((40, 28, 28), dtype=np.float32),
        y_train=rng.integers(0, 3, 40),
        x_test=rng.random((10, 28, 28), dtype=np.float32),
        y_test=rng.integers(0, 3, 10),
    )
    spec = short(
        model={"kind": "cnn", "channels": [4, 8], "fc": 16},
        dataset={"name": "npz", "path": str(path)},
    )
    out = run(parse_spec(spec))
    assert out.model.analog_layers[2].tile.shape == (16, 8 * 7 * 7)


def test_cancel_stops_at_the_next_action() -> None:
    """Asked before every action (a forward, backward and update per micro-batch here):
    15 actions are 5 updates."""
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 15

    out = run(parse_spec(short()), Callbacks(should_stop=should_stop))
    assert out.result["status"] == "cancelled" and out.result["updates"] == 5


def test_a_pipeline_is_asked_to_stop_before_every_action() -> None:
    """4 stages, async: 12 actions a micro-batch. A cancel waits for one action, not for a
    micro-batch's passage through every stage (a large model's cancel took minutes)."""
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 30

    spec = short(model={"hidden": [8, 8, 8]}, pipeline={"stages": 4, "schedule": "async"})
    out = run(parse_spec(spec), Callbacks(should_stop=should_stop))
    assert out.result["status"] == "cancelled"
    assert len(calls) == 31  # 30 actions ran, the 31st ask stopped the run
    assert out.result["updates"] < 30 // 12 + 1


def test_divergence_is_reported_not_raised() -> None:
    spec = short(
        analog={"enabled": False},
        optimizer={"algorithm": "sgd", "lr": 1000},
        model={"activation": "relu", "hidden": [64, 64, 64]},  # diverges at every seed tried
    )
    out = run(parse_spec(spec))
    assert out.result["status"] == "failed"
    assert "lower optimizer.lr" in out.result["error"]


def test_micro_batch_larger_than_dataset() -> None:
    spec = short(dataset={"name": "synthetic", "synthetic": {"n_train": 10, "n_test": 10}})
    spec["training"]["micro_batch_size"] = 64
    with pytest.raises(RunError, match=r"training\.micro_batch_size: 64 exceeds the 10"):
        run(parse_spec(spec))


def test_digits_digital_sanity() -> None:
    """Seeds 0-4 reach 0.939-0.967 (seed 0 the lowest)."""
    spec = {
        **DIGITS_MLP,
        "analog": {"enabled": False},
        "optimizer": {"algorithm": "sgd", "lr": 0.1},
    }
    assert run(parse_spec(spec)).result["final"]["test_accuracy"] >= 0.93


@pytest.mark.parametrize("update", ["expected", "pulsed", "rounded"])
def test_digits_analog_sgd_sanity(update: str) -> None:
    """Soft bounds +-1 with 1200 states reach >= 0.88 in every update mode."""
    spec = {
        **DIGITS_MLP,
        "analog": {
            "device": {"model": "softbounds", "w_min": -1, "w_max": 1, "states": 1200},
            "update": update,
        },
        "optimizer": {"algorithm": "analog_sgd", "lr": 0.1},
    }
    assert run(parse_spec(spec)).result["final"]["test_accuracy"] >= 0.88


@pytest.mark.parametrize("schedule", ["sequential", "gpipe", "1f1b", "async", "async_stash"])
def test_pipeline_runs_record_the_timeline(schedule: str) -> None:
    spec = short(
        model={"kind": "mlp", "hidden": [16, 16, 16]},
        pipeline={"stages": 4, "schedule": schedule, "micro_batches": 5},
    )
    spec["training"] = {"steps": 6, "micro_batch_size": 8, "eval_every": 10}
    out = run(parse_spec(spec))
    r = out.result
    group = 5 if schedule in ("gpipe", "1f1b") else 1
    assert r["status"] == "succeeded" and r["updates"] == 6 and r["samples"] == 6 * group * 8
    timeline = r["timeline"]
    assert timeline["staleness"] == ([3, 2, 1, 0] if schedule.startswith("async") else [0] * 4)
    assert len(timeline["utilisation"]) == 4 and 0 <= timeline["bubble_fraction"] < 1
    assert timeline["speedup_vs_sequential"] > (1.0 if schedule != "sequential" else 0.99)
    times = [m["sim_time_ns"] for m in out.metrics]
    assert times == sorted(times) and times[-1] == pytest.approx(timeline["makespan_ns"])
    assert [m["samples"] for m in out.metrics][-1] == r["samples"]


@pytest.mark.parametrize("kind", ["cnn", "resnet"])
def test_conv_models_in_a_pipeline(kind: str) -> None:
    spec = short(
        model={"kind": kind, "channels": [4, 8], "fc": 16},
        pipeline={"stages": 3, "schedule": "async"},
        analog={"update": "rounded"},
        optimizer={"algorithm": "tiki_taka", "lr": 0.05},
    )
    out = run(parse_spec(spec))
    assert out.result["status"] == "succeeded"
    assert out.result["timeline"]["staleness"] == [2, 1, 0]


def test_pipeline_is_reproducible() -> None:
    spec = short(
        model={"hidden": [16, 16]},
        pipeline={"stages": 3, "schedule": "async"},
        analog={"update": "pulsed", "device": {"c2c_noise": 0.3}},
    )
    a, b = run(parse_spec(spec)), run(parse_spec(spec))
    assert without_wall(a.metrics) == without_wall(b.metrics)


@pytest.mark.parametrize(
    "extra",
    [
        {"analog": {"update": "pulsed", "device": {"c2c_noise": 0.3}}},
        # noisy IO: evaluation draws from the observation generator, saved in the checkpoint
        {"analog": {"update": "pulsed", "io": {"perfect": False}}},
        {
            "pipeline": {"stages": 3, "schedule": "gpipe", "micro_batches": 2},
            "model": {"hidden": [16, 16]},
            "optimizer": {"algorithm": "tiki_taka"},
        },
    ],
)
def test_resume_from_a_checkpoint_continues_exactly(extra: dict) -> None:
    spec = parse_spec(
        {**short(**extra), "training": {"steps": 40, "micro_batch_size": 8, "eval_every": 10}}
    )
    blobs: list[bytes] = []
    full = run(spec, Callbacks(on_checkpoint=blobs.append, checkpoint_every=12))
    assert len(blobs) >= 2
    emitted: list[dict] = []
    resumed = run(spec, Callbacks(on_metrics=emitted.append), resume=blobs[1])
    assert without_wall(resumed.metrics) == without_wall(full.metrics)
    assert emitted and emitted[0]["step"] > 0  # points before the checkpoint not re-emitted
    assert without_wall(emitted) == without_wall(full.metrics[-len(emitted) :])
    for a, b in zip(
        resumed.model.state_dict().values(), full.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_async_schedules_take_no_checkpoints() -> None:
    blobs: list[bytes] = []
    spec = short(model={"hidden": [8, 8]}, pipeline={"stages": 3, "schedule": "async"})
    run(parse_spec(spec), Callbacks(on_checkpoint=blobs.append, checkpoint_every=5))
    assert blobs == []


def observed(eval_every: int, algorithm: str) -> JobSpec:
    """A run whose every MVM and update draws noise: pulsed, noisy IO, c2c, async pipeline."""
    return parse_spec(
        {
            "dataset": {"name": "synthetic", "synthetic": {"n_train": 400, "n_test": 200}},
            "model": {"kind": "mlp", "hidden": [16, 16]},
            "analog": {
                "update": "pulsed",
                "io": {"perfect": False},
                "device": {"c2c_noise": 0.3},
            },
            "optimizer": {"algorithm": algorithm, "lr": 0.05},
            "pipeline": {"stages": 3, "schedule": "async"},
            "training": {"steps": 300, "micro_batch_size": 8, "eval_every": eval_every},
        }
    )


@pytest.mark.parametrize("algorithm", ["analog_sgd", "tiki_taka"])
def test_observing_never_changes_the_run(algorithm: str) -> None:
    """43 metric points taken mid-pipeline (noisy test evaluations, gradient probes) or 2:
    the same trained weights, bit for bit."""
    often, rarely = run(observed(7, algorithm)), run(observed(1000, algorithm))
    assert len(often.metrics) == 44 and len(rarely.metrics) == 2
    a, b = often.model.state_dict(), rarely.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # what depends on the weights alone agrees; test loss and accuracy are noisy readings
    # (the observation stream has advanced further in `often`), train_loss a window mean
    for key in ("step", "sim_time_ns", "grad_norm_sq", "saturation", "near_bound_fraction"):
        assert often.metrics[-1][key] == rarely.metrics[-1][key], key


def test_a_checkpoint_of_another_format_is_refused() -> None:
    spec = parse_spec({**short(), "training": {"steps": 20, "micro_batch_size": 8}})
    blobs: list[bytes] = []
    run(spec, Callbacks(on_checkpoint=blobs.append, checkpoint_every=10))
    state = torch.load(io.BytesIO(blobs[0]), weights_only=False)
    del state["format"]  # as written before the format was recorded
    old = io.BytesIO()
    torch.save(state, old)
    with pytest.raises(RunError, match=r"resume: the checkpoint is of format 1"):
        run(spec, resume=old.getvalue())


def test_a_cancel_during_an_evaluation_abandons_the_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test set is evaluated in chunks with a stop asked before each: a cancel
    arriving at a metric point of a large model waits for one chunk, not the whole set;
    the run ends cancelled with the points it had, and takes no final point."""
    import aimc_spec.resources as resources

    spec = parse_spec(short(training={"steps": 6, "eval_every": 3, "micro_batch_size": 4}))
    full = run(spec)
    # chunks of 50 samples: the digits test set's evaluation asks 8 times
    monkeypatch.setattr(resources, "EVAL_CHUNK", 50)
    calls: list[int] = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 9 + 2  # 3 micro-batches' 9 actions, then 2 of the point's chunks

    out = run(spec, Callbacks(should_stop=should_stop))
    assert out.result["status"] == "cancelled"
    assert len(calls) == 12  # the third chunk's ask stopped it: nothing ran after
    assert len(out.metrics) == 1  # the point before training; the second was abandoned
    assert out.metrics[0]["test_accuracy"] == full.metrics[0]["test_accuracy"]
    assert out.result["final"]["test_accuracy"] == full.metrics[0]["test_accuracy"]
    assert out.result["updates"] == 3


def test_a_large_models_evaluation_runs_in_smaller_chunks() -> None:
    """A chunk's forward is kept under EVAL_CHUNK_FLOPS, so a stop asked during a metric
    point of a large model waits seconds, not minutes; small models keep 1000 samples."""
    from aimc_spec.resources import EVAL_CHUNK_FLOPS, eval_chunk, layers

    small = parse_spec(short())
    assert eval_chunk(small, (1, 8, 8)) == 1000
    big = parse_spec(short(model={"kind": "cnn", "channels": [512, 512], "fc": 128}))
    chunk = eval_chunk(big, (1, 28, 28))
    macs = sum(layer.macs for layer in layers(big, (1, 28, 28)))
    assert 1 <= chunk < 1000
    assert 2 * macs * chunk <= EVAL_CHUNK_FLOPS < 2 * macs * (chunk + 1)
