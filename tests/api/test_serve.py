"""`aimc serve` end to end: private Redis, API and a worker, supervised, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from aimc_cli.remote.users import data_dir
from service.serve import free_port
from tests.conftest import ROOT


def worker_pid(parent: int) -> int | None:
    """The celery worker started by `aimc serve` (a direct child of it)."""
    out = subprocess.run(
        ["pgrep", "-P", str(parent), "-f", "celery"], capture_output=True, text=True
    ).stdout.split()
    return int(out[0]) if out else None


def wait_for_end(base: str, job_id: str, auth: dict[str, str]) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth).json()["state"]
        if state in ("succeeded", "failed", "cancelled"):
            return str(state)
        time.sleep(0.3)
    return str(state)


def check_private_redis(data: Path, started: str) -> None:
    """The Redis `aimc serve` started: it refuses a client without the password, listens
    on loopback only, has not the password on its command line; the data folder is
    0700 and every file kept there 0600."""
    password = (data / "redis_password").read_text().strip()
    assert password and password not in started
    port = int(started.split("Redis at redis://127.0.0.1:")[1].split("/")[0])
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port).ping()
    r = redis.Redis(port=port, password=password)
    assert r.config_get("bind")["bind"] == "127.0.0.1"
    assert r.config_get("protected-mode")["protected-mode"] == "yes"
    # bounded, and full means refusing writes, never evicting a job record
    assert r.config_get("maxmemory")["maxmemory"] == str(1024**3)
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    cmdline = Path(f"/proc/{r.info('server')['process_id']}/cmdline").read_bytes()
    assert password.encode() not in cmdline
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    kept = [data / "admin_key", data / "redis_password", *(data / "redis").rglob("*")]
    assert any(p.name.endswith(".aof") for p in kept)  # the append-only file is there
    for path in kept:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_the_data_folder_is_the_flag_else_aimc_data_dir_else_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIMC_DATA_DIR", str(tmp_path / "env"))
    assert data_dir("/srv/flag") == Path("/srv/flag")
    assert data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("AIMC_DATA_DIR")
    assert data_dir(None) == Path("~/.aimc").expanduser()


def test_serve_runs_a_job_restarts_a_dead_worker_and_stops_cleanly(tmp_path: Path) -> None:
    """...with its data folder from AIMC_DATA_DIR (no --data-dir: it was ignored, so two
    servers shared ~/.aimc), and a private Redis on loopback with a password kept beside
    the admin key, every file it keeps its owner's alone."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "AIMC_ADMIN_KEY")}
    env["AIMC_DATA_DIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aimc_cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []  # the supervisor's own lines; children print theirs too
        while len(lines) < 2:
            line = proc.stdout.readline()
            assert line, "aimc serve exited early"
            if line.startswith("aimc serve:"):
                lines.append(line)
        assert f"API on http://127.0.0.1:{port}" in lines[0], lines
        assert f"dashboard at http://127.0.0.1:{port}/ui/" in lines[0], lines
        admin = (tmp_path / "admin_key").read_text().strip()
        assert admin in lines[1]
        base = f"http://127.0.0.1:{port}"
        key = httpx.post(
            f"{base}/v1/users", json={"name": "u"}, headers={"Authorization": f"Bearer {admin}"}
        ).json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/ui/").headers["content-type"].startswith("text/html")
        job = httpx.post(
            f"{base}/v1/jobs", json={"training": {"steps": 10, "eval_every": 5}}, headers=auth
        ).json()
        assert wait_for_end(base, job["id"], auth) == "succeeded"
        check_private_redis(tmp_path, lines[0])
        # kill -9 the worker: the supervisor starts another, which runs the next job
        old_worker = worker_pid(proc.pid)
        os.kill(old_worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and worker_pid(proc.pid) in (None, old_worker):
            time.sleep(0.3)
        assert worker_pid(proc.pid) not in (None, old_worker)
        job = httpx.post(
            f"{base}/v1/jobs", json={"training": {"steps": 5, "eval_every": 5}}, headers=auth
        ).json()
        assert wait_for_end(base, job["id"], auth) == "succeeded"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "aimc serve: stopped" in out
