"""The command line tells a new user the next step (issue 22, item 8): how to pass a key
after a 401, where the service was looked for when none answered, the state a cancelled
job reaches, where plots go, and whether `metrics --since` is inclusive. Against a live
API and worker, as a user meets them."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

import aimc_client.client
from aimc_cli import main
from aimc_client import Client
from tests.conftest import LiveService

TINY = "training: {steps: 20, micro_batch_size: 8, eval_every: 10}\nmodel: {hidden: [16]}\n"


@pytest.fixture(scope="module")
def key(live_service: LiveService) -> str:
    return live_service.new_user("next-step")


@pytest.fixture(autouse=True)
def service_env(monkeypatch: pytest.MonkeyPatch, live_service: LiveService, key: str) -> None:
    monkeypatch.setenv("AIMC_URL", live_service.url)
    monkeypatch.setenv("AIMC_API_KEY", key)


def spec_file(tmp_path: Path, text: str = TINY) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def test_a_401_without_a_key_says_how_to_pass_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIMC_API_KEY")
    assert main(["jobs"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("aimc: 401 ")
    assert "no API key was sent: pass --api-key KEY or set AIMC_API_KEY=KEY" in err
    assert "`aimc users create NAME`" in err


def test_a_refused_key_says_which_was_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIMC_API_KEY", "not-a-key")
    assert main(["jobs"]) == 3
    assert "the service refused this API key (from --api-key or AIMC_API_KEY)" in (
        capsys.readouterr().err
    )
    monkeypatch.delenv("AIMC_API_KEY")
    assert main(["jobs", "--api-key", "not-a-key"]) == 3
    assert "refused this API key" in capsys.readouterr().err
    assert main(["users", "list", "--admin-key", "not-the-admin"]) == 3
    assert "the admin key was refused: pass the one `aimc serve` printed" in (
        capsys.readouterr().err
    )


def free_port() -> int:
    """A local port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_service_names_the_url_and_suggests_aimc_serve(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(aimc_client.client, "MAX_WAIT_S", 0.0)  # retry without the pauses
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AIMC_URL", url)
    assert main(["status", "some-job"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"aimc: no service answered at {url} (")
    assert "start one on this machine with `aimc serve`, or point --url or AIMC_URL" in err
    assert "aimc: 0" not in err and " 0 " not in err


def test_cancel_prints_the_state_the_job_reaches(
    live_service: LiveService, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cancelled while it runs: the answer to the cancel says `running`, the job then
    stops at its next check, and that is the state printed. Far too long to end first."""
    spec = {"training": {"steps": 200_000, "micro_batch_size": 8, "eval_every": 50_000}}
    with Client(live_service.url, key) as client:
        job_id = client.submit(spec)["id"]
        deadline = time.monotonic() + 90
        while (job := client.get(job_id))["progress"] == 0:
            assert job["state"] in ("queued", "running") and time.monotonic() < deadline
            time.sleep(0.1)
    assert main(["cancel", job_id]) == 0
    assert capsys.readouterr().out == f"job {job_id} cancelled\n"


def test_sweep_and_compare_write_plots_under_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out names the folder; without it, plots go to runs/, never loose in the current
    directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = spec_file(tmp_path)
    argv = ["sweep", str(spec), "--grid", "optimizer.lr=0.05,0.2", "--wait", "--poll", "0.3"]
    assert main([*argv, "--out", str(tmp_path / "plots"), "--json"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    plot = tmp_path / "plots" / f"sweep-{sweep['id']}.png"
    assert sweep["plot_file"] == str(plot) and plot.read_bytes()[:4] == b"\x89PNG"
    ids = [j["id"] for j in sweep["jobs"]]
    assert main(["compare", *ids, "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", sweep["id"]]) == 0
    assert f"overlay plot: {Path('runs') / 'compare.png'}" in capsys.readouterr().out
    assert [p.name for p in work.iterdir()] == ["runs"]
    assert (work / "runs" / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_metrics_since_is_exclusive_as_its_help_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["metrics", "--help"])
    assert "step > SINCE (exclusive" in " ".join(capsys.readouterr().out.split())
    assert main(["submit", str(spec_file(tmp_path)), "--wait", "--poll", "0.2", "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["id"]
    assert main(["metrics", job_id, "--json"]) == 0
    steps = [p["step"] for p in json.loads(capsys.readouterr().out)]
    assert len(steps) >= 2
    assert main(["metrics", job_id, "--since", str(steps[0]), "--json"]) == 0
    assert [p["step"] for p in json.loads(capsys.readouterr().out)] == steps[1:]


STUDY = """
name: next-step-study
spec: {model: {hidden: [16]}, training: {steps: 20, micro_batch_size: 8, eval_every: 10}}
grid: {optimizer.lr: [0.05, 0.3]}
"""


def test_a_remote_study_says_the_same_and_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aimc study --remote` meets the service through its own path (aimc_study.remote):
    its errors read as the other commands' do, then say how to resume."""
    study = tmp_path / "study.yaml"
    study.write_text(STUDY)
    argv = ["study", str(study), "--remote", "--out", str(tmp_path / "out"), "--poll", "0.2"]
    monkeypatch.delenv("AIMC_API_KEY")
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "no API key was sent: pass --api-key KEY or set AIMC_API_KEY=KEY" in err
    assert err.rstrip().endswith("aimc: run the same command again to resume")
    monkeypatch.setattr(aimc_client.client, "MAX_WAIT_S", 0.0)
    url = f"http://127.0.0.1:{free_port()}"
    assert main([*argv, "--url", url]) == 3
    err = capsys.readouterr().err
    assert f"aimc: no service answered at {url} (" in err and "`aimc serve`" in err
