"""The service commands of `aimc`: output and exit codes against a live API and worker."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimc_cli import main
from aimc_cli.remote.sweeps import parse_grid
from aimc_client import Client, ServiceUnavailable
from aimc_spec.spec import SpecError
from tests.conftest import LiveService

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

TINY = "training: {steps: 20, micro_batch_size: 8, eval_every: 10}\nmodel: {hidden: [16]}\n"


@pytest.fixture(scope="module")
def key(live_service: LiveService) -> str:
    return live_service.new_user("cli-tests")


@pytest.fixture(autouse=True)
def service_env(monkeypatch: pytest.MonkeyPatch, live_service: LiveService, key: str) -> None:
    monkeypatch.setenv("AIMC_URL", live_service.url)
    monkeypatch.setenv("AIMC_API_KEY", key)


def spec_file(tmp_path: Path, text: str = TINY, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_submit_wait_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["submit", str(spec_file(tmp_path, "name: cli-ok\n" + TINY)), "--wait", "--poll", "0.2"]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "succeeded; test_loss" in out
    assert "state succeeded" in err and "step 20 samples 160" in err  # plain progress lines
    job_id = out.split()[2]
    jobs = run_json(capsys, "jobs", "--name", "cli-ok")
    assert [j["id"] for j in jobs] == [job_id]  # type: ignore[union-attr,index]
    assert main(["jobs"]) == 0 and job_id in capsys.readouterr().out
    assert main(["status", job_id]) == 0
    status = capsys.readouterr().out
    assert "\nstate " in status and "succeeded\n" in status and "test_accuracy " in status
    # the energy estimate (docs/energy.md): so far, split by kind, per sample, the GPU ratio
    lines = dict(line.split(None, 1) for line in status.splitlines() if " " in line)
    assert lines["energy"].split()[1] in ("pJ", "nJ", "uJ", "mJ", "J")
    assert "(forward " in lines["energy"] and "backward " in lines["energy"]
    assert "energy/sample" in status and "x (GPU estimate)" in lines["digital/analog"]
    assert main(["metrics", job_id, "--csv"]) == 0
    csv_lines = capsys.readouterr().out.splitlines()
    assert csv_lines[0].startswith("step,samples,epoch") and len(csv_lines) == 4
    points = run_json(capsys, "metrics", job_id, "--since", "0")
    assert [p["step"] for p in points] == [10, 20]  # type: ignore[union-attr,index]
    assert main(["watch", job_id]) == 0  # a finished job replays and ends at once
    assert capsys.readouterr().out.splitlines()[-1] == "state succeeded"
    assert main(["download", job_id, "--out", str(tmp_path / "dl")]) == 0
    assert (tmp_path / "dl" / "weights.safetensors").stat().st_size > 0


def test_a_failing_job_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = (
        "dataset: {name: synthetic, synthetic: {n_train: 10, n_test: 10}}\n"
        "training: {steps: 5, micro_batch_size: 16}\n"
    )
    assert main(["submit", str(spec_file(tmp_path, spec)), "--wait", "--poll", "0.2"]) == 1
    assert "failed; error: training.micro_batch_size: 16 exceeds the 10" in capsys.readouterr().out


def test_cancel_makes_wait_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long = spec_file(tmp_path, "training: {steps: 5000, eval_every: 1000}\n")
    job = run_json(capsys, "submit", str(long))
    assert main(["cancel", job["id"]]) == 0  # type: ignore[index]
    assert "job " in capsys.readouterr().out
    assert main(["watch", job["id"]]) == 1  # type: ignore[index]


def test_bad_input_exits_2_and_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = spec_file(tmp_path, "training: {epochs: -1}\n")
    assert main(["submit", str(bad)]) == 2
    assert "training.epochs: Input should be greater than 0" in capsys.readouterr().err
    assert main(["sweep", str(spec_file(tmp_path)), "--grid", "pipeline.schedule"]) == 2
    assert "--grid: 'pipeline.schedule': write KEY=V1,V2" in capsys.readouterr().err
    assert main(["sweep", str(spec_file(tmp_path)), "--grid", "pipeline.stages=2,9"]) == 2
    assert "grid.pipeline.stages: 9 stages but the mlp has 2 layers" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    assert main(["datasets", "upload", str(junk)]) == 2
    assert "file: upload: not an .npz (zip) archive" in capsys.readouterr().err


def test_service_errors_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "no-such-job"]) == 3
    assert "404 Not Found: no job 'no-such-job'" in capsys.readouterr().err
    monkeypatch.setenv("AIMC_API_KEY", "wrong")
    assert main(["jobs"]) == 3
    assert "401" in capsys.readouterr().err


def test_sweep_wait_prints_the_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "sweep.png"
    argv = [
        "sweep",
        str(spec_file(tmp_path)),
        "--grid",
        "optimizer.lr=0.05,0.2",
        "--grid",
        "seed=1,2",
    ]
    assert main([*argv, "--name", "cli-sweep", "--wait", "--poll", "0.5", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["job", "state", "optimizer.lr", "seed", "test_accuracy"]
    assert len(out) == 1 + 4 + 1 and all("succeeded" in line for line in out[1:5])
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_compare_jobs_writes_a_table_and_a_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for lr in ("0.05", "0.3"):
        spec = spec_file(
            tmp_path, f"name: cmp-{lr}\noptimizer: {{lr: {lr}}}\n" + TINY, f"{lr}.yaml"
        )
        assert main(["submit", str(spec), "--wait", "--poll", "0.2"]) == 0
        ids.append(capsys.readouterr().out.split()[2])
    plot = tmp_path / "cmp.png"
    report = run_json(capsys, "compare", *ids, "--plot", str(plot))
    rows = report["jobs"]  # type: ignore[index]
    assert [r["name"] for r in rows] == ["cmp-0.05", "cmp-0.3"]
    assert rows[0]["test_loss"] != rows[1]["test_loss"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", *ids, "--plot", str(plot)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("job")


def test_datasets_upload_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    assert main(["datasets", "upload", str(path), "--name", "tiny-set"]) == 0
    out = capsys.readouterr().out
    assert "tiny-set" in out and "dataset: {name: uploaded, id: ds_" in out
    listed = run_json(capsys, "datasets", "list")
    assert "tiny-set" in [d["name"] for d in listed]  # type: ignore[union-attr,index]


def test_parse_grid_reads_values_as_yaml() -> None:
    grid = parse_grid(["pipeline.schedule=gpipe,async", "analog.device.states=300,1200", "x=true"])
    assert grid == {
        "pipeline.schedule": ["gpipe", "async"],
        "analog.device.states": [300, 1200],
        "x": [True],
    }
    with pytest.raises(SpecError):
        parse_grid(["=1,2"])


def test_users_create_with_the_admin_key(
    live_service: LiveService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AIMC_ADMIN_KEY", raising=False)
    (tmp_path / "admin_key").write_text(live_service.admin_key + "\n")  # as aimc serve keeps it
    zed = f"zed-{uuid.uuid4().hex[:6]}"
    assert main(["users", "create", zed, "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    key = out.split("export AIMC_API_KEY=")[1].strip()
    monkeypatch.setenv("AIMC_API_KEY", key)
    assert main(["jobs"]) == 0  # the new key works
    capsys.readouterr()
    assert main(["users", "create", "x", "--data-dir", str(tmp_path / "none")]) == 2
    assert "no admin key" in capsys.readouterr().err
    assert main(["users", "create", "x", "--admin-key", "wrong"]) == 3
    assert "401" in capsys.readouterr().err
    assert main(["users", "create", zed, "--data-dir", str(tmp_path)]) == 3
    assert "409" in capsys.readouterr().err
    assert main(["users", "list", "--data-dir", str(tmp_path)]) == 0
    assert zed in capsys.readouterr().out
    assert main(["users", "rotate", zed, "--data-dir", str(tmp_path)]) == 0
    rotated = capsys.readouterr().out.split("export AIMC_API_KEY=")[1].strip()
    assert main(["jobs"]) == 3  # the old key is revoked
    capsys.readouterr()
    monkeypatch.setenv("AIMC_API_KEY", rotated)
    assert main(["jobs"]) == 0
    assert main(["users", "delete", zed, "--data-dir", str(tmp_path)]) == 0
    assert main(["jobs"]) == 3
    assert main(["users", "delete", zed, "--data-dir", str(tmp_path)]) == 2
    assert "no user" in capsys.readouterr().err


def _into_closed_pipe(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `aimc ARGV` with stdout a pipe whose reader has already gone (as `| head`)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "aimc_cli", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)


def test_output_into_a_closed_pipe_ends_quietly(live_service: LiveService, tmp_path: Path) -> None:
    key = live_service.new_user("piper")
    env = {**os.environ, "AIMC_URL": live_service.url, "AIMC_API_KEY": key}
    with Client(live_service.url, key) as client:
        job = client.submit({"name": "piped", "training": {"steps": 5}})
        client.cancel(job["id"])
    spec = tmp_path / "s.yaml"
    spec.write_text("pipeline: {stages: 2}\n")
    for argv in (["status", job["id"]], ["jobs"], ["schedule", str(spec)]):
        done = _into_closed_pipe(argv, env)
        assert done.returncode == 141, (argv, done.stderr)
        assert done.stderr == "", argv


STUDY = """
name: remote-study
spec:
  model: {hidden: [16]}
  training: {steps: 20, micro_batch_size: 8, eval_every: 10}
grid:
  optimizer.lr: [0.05, 0.3]
seeds: [1, 2]
comparisons:
  - name: larger steps
    claims:
      - {a: {optimizer.lr: 0.3}, b: {optimizer.lr: 0.05}}
"""


def test_study_remote_is_a_sweep_collected_and_resumed(
    tmp_path: Path,
    live_service: LiveService,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = live_service.new_user("study")  # a user of its own: their sweeps are the study's
    monkeypatch.setenv("AIMC_API_KEY", key)
    study = spec_file(tmp_path, STUDY, "study.yaml")
    out = tmp_path / "out"
    argv = ["study", str(study), "--remote", "--out", str(out), "--poll", "0.3"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "4 jobs in 2 groups; 0 already done, 4 to run on the service" in captured.err
    assert "[4/4 jobs; " in captured.err and "report: " in captured.out
    remote = json.loads((out / "remote.json").read_text())
    assert len(remote["sweeps"]) == 1 and len(remote["jobs"]) == 4
    with Client(live_service.url, key) as client:
        [sweep] = client.sweeps()
        assert sweep["id"] == remote["sweeps"][0]
        assert sweep["grid"] == {"optimizer.lr": [0.05, 0.3], "seed": [1, 2]}
        with (out / "runs.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert [r["status"] for r in rows] == ["succeeded"] * 4
        for row in rows:  # each row is the service's job: its last metric point
            last = client.metrics(remote["jobs"][row["job"]])[-1]
            assert float(row["test_accuracy"]) == last["test_accuracy"]
            assert float(row["sim_time_ns"]) > 0
    with (out / "summary.csv").open() as f:
        summary = [r for r in csv.DictReader(f) if r["metric"] == "test_accuracy"]
    for group in summary:
        values = [
            float(r["test_accuracy"]) for r in rows if r["optimizer.lr"] == group["optimizer.lr"]
        ]
        assert float(group["mean"]) == pytest.approx(sum(values) / 2)
    assert "| lr=0.3 > lr=0.05 |" in (out / "report.md").read_text()

    # resume: a collected run lost -> fetched again from its job; nothing queued again
    lost = rows[1]["job"]
    shutil.rmtree(out / "runs" / lost)
    assert main(argv) == 0
    assert "3 already done, 1 to run on the service" in capsys.readouterr().err
    assert json.loads((out / "remote.json").read_text()) == remote
    assert (out / "runs" / lost / "result.json").is_file()
    with Client(live_service.url, key) as client:
        assert len(client.sweeps()) == 1 and len(list(client.jobs())) == 4

    # the comparison tools pool the sweep's seeds: mean ± CI per learning rate
    report = run_json(
        capsys, "compare", sweep["id"], "--group-seeds", "--plot", str(tmp_path / "g.png")
    )
    groups = report["groups"]  # type: ignore[index]
    assert [(g["group"], g["n"]) for g in groups] == [
        ("optimizer.lr=0.05", 2),
        ("optimizer.lr=0.3", 2),
    ]
    for group, lr in zip(groups, ("0.05", "0.3"), strict=True):
        values = [float(r["test_accuracy"]) for r in rows if r["optimizer.lr"] == lr]
        assert group["test_accuracy"]["mean"] == pytest.approx(sum(values) / 2)
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    by_lr = run_json(
        capsys,
        "compare",
        sweep["id"],
        "--group-by",
        "optimizer.lr",
        "--plot",
        str(tmp_path / "b.png"),
    )
    assert [g["jobs"] for g in by_lr["groups"]] == [g["jobs"] for g in groups]  # type: ignore[index]
    assert main(["compare", sweep["id"], "--group-by", "optimizer.lrr"]) == 2
    assert "--group-by: no job's spec has optimizer.lrr" in capsys.readouterr().err


PARTED = """
name: parted
spec:
  model: {hidden: [16]}
  training: {steps: 10, micro_batch_size: 8, eval_every: 5}
seeds: [1, 2]
parts:
  - name: lr
    grid: {optimizer.lr: [0.05, 0.3]}
    comparisons:
      - name: "L: larger steps"
        claims:
          - {kind: trend, x: optimizer.lr, expect: greater}
  - name: kinds
    factors:
      weights:
        - {name: digital, overrides: {analog.enabled: false, optimizer.algorithm: sgd}}
        - {name: analog, overrides: {}}
      depth:
        - {name: one, value: 1, overrides: {pipeline.stages: 1}}
        - {name: two, value: 2, overrides: {pipeline.stages: 2}}
    comparisons:
      - name: "K: analog against digital"
        claims:
          - {a: {weights: analog}, b: {weights: digital}, test: paired}
"""


def test_a_study_that_lost_the_answer_to_its_sweep_resumes_without_a_second_sweep(
    tmp_path: Path,
    live_service: LiveService,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The service made the sweep but its answer never arrived (a read timeout, or the
    study killed before remote.json was written): run again, the study sends the same
    Idempotency-Key, gets that sweep back and queues nothing twice."""
    key = live_service.new_user("lost-answer")
    monkeypatch.setenv("AIMC_API_KEY", key)
    study = spec_file(tmp_path, STUDY, "study.yaml")
    out = tmp_path / "out"
    argv = ["study", str(study), "--remote", "--out", str(out), "--poll", "0.3"]
    made = Client.sweep

    def answer_lost(self: Client, *args: Any, **kwargs: Any) -> dict[str, Any]:
        made(self, *args, **kwargs)
        raise ServiceUnavailable(0, "Service unreachable", "read timeout")

    monkeypatch.setattr(Client, "sweep", answer_lost)
    assert main(argv) == 3
    assert "run the same command again to resume" in capsys.readouterr().err
    assert json.loads((out / "remote.json").read_text())["sweeps"] == []
    monkeypatch.setattr(Client, "sweep", made)
    assert main(argv) == 0
    remote = json.loads((out / "remote.json").read_text())
    with Client(live_service.url, key) as client:
        [sweep] = client.sweeps()
        assert remote["sweeps"] == [sweep["id"]]
        assert len(list(client.jobs())) == 4
        assert sorted(remote["jobs"].values()) == sorted(j["id"] for j in sweep["jobs"])


def test_a_study_with_parts_and_factors_runs_remote_as_one_sweep_per_level(
    tmp_path: Path,
    live_service: LiveService,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = live_service.new_user("parted")
    monkeypatch.setenv("AIMC_API_KEY", key)
    study = spec_file(tmp_path, PARTED, "parted.yaml")
    out = tmp_path / "out"
    argv = ["study", str(study), "--remote", "--out", str(out), "--poll", "0.3"]
    assert main(argv) == 0
    assert "12 jobs in 6 groups in 2 parts; 0 already done" in capsys.readouterr().err
    lr = json.loads((out / "lr" / "remote.json").read_text())
    kinds = json.loads((out / "kinds" / "remote.json").read_text())
    assert (len(lr["sweeps"]), len(kinds["sweeps"])) == (1, 4)  # a sweep per level pair
    with Client(live_service.url, key) as client:
        assert len(client.sweeps()) == 5 and len(list(client.jobs())) == 12
        job = client.get(kinds["jobs"]["digital_two_seed=2"])
        spec = job["spec"]
        assert (spec["analog"]["enabled"], spec["pipeline"]["stages"], spec["seed"]) == (
            False,
            2,
            2,
        )
    for part, jobs in (("lr", 4), ("kinds", 8)):
        with (out / part / "runs.csv").open() as f:
            assert [r["status"] for r in csv.DictReader(f)] == ["succeeded"] * jobs
    report = (out / "report.md").read_text()
    verdicts = report.split("## Verdicts")[1].split("## Part")[0]
    assert "| L: larger steps |" in verdicts and "slope = " in verdicts
    assert verdicts.count("| K: analog against digital |") == 2  # depth one and two
