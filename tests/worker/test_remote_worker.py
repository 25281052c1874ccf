"""A worker on "another host": its own network namespace (a veth link to the API's host,
where the machine allows it), its own HOME, TMPDIR and data dir, a private /tmp, and
Redis over TCP as its only link to the service. Jobs on uploaded datasets, artifacts,
cancel and resuming from a checkpoint after the worker dies all work with no shared
filesystem: the API's data (under /tmp) is invisible to the worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aimc_client import Client
from aimc_store.store import JobStore
from service.serve import free_port, redis_binary, wait_for_port, worker_command
from service.settings import Settings
from tests.conftest import ROOT, serving, stop_process
from tests.engine.test_datasets import save_npz
from tests.worker.test_restarts import descendants

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

ADMIN = "remote-admin"


def _run(*argv: str) -> bool:
    """True if the command ran and succeeded (False where the tool is missing)."""
    try:
        return subprocess.run(argv, capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        return False


@dataclass
class Network:
    """Where the remote worker reaches Redis: a veth pair into a namespace of its own
    (`netns` set), else this host's loopback."""

    redis_host: str
    netns: str | None


@pytest.fixture
def network() -> Iterator[Network]:
    tag = uuid.uuid4().hex[:6]
    netns, host_end, ns_end = f"aimc-{tag}", f"av{tag}a", f"av{tag}b"
    subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
    made = (
        os.geteuid() == 0
        and shutil.which("ip") is not None
        and _run("ip", "netns", "add", netns)
        and _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        and _run("ip", "link", "set", ns_end, "netns", netns)
        and _run("ip", "addr", "add", f"{subnet}.1/24", "dev", host_end)
        and _run("ip", "link", "set", host_end, "up")
        and _run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{subnet}.2/24", "dev", ns_end)
        and _run("ip", "netns", "exec", netns, "ip", "link", "set", ns_end, "up")
    )
    try:
        if made:
            yield Network(f"{subnet}.1", netns)
        else:
            print("no network namespace on this machine: the remote worker shares loopback")
            yield Network("127.0.0.1", None)
    finally:
        _run("ip", "link", "del", host_end)
        _run("ip", "netns", "del", netns)


@dataclass
class Remote:
    url: str  # the API, on this host
    admin: str
    store: JobStore
    network: Network
    redis_url: str  # as the remote worker sees it
    home: Path
    prefix: str
    procs: list[subprocess.Popen[bytes]]

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A worker in the namespace with a private /tmp and its own HOME/TMPDIR/data."""
        for d in ("home", "tmp", "data"):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "HOME": str(self.home / "home"),
            "TMPDIR": str(self.home / "tmp"),
            "MPLCONFIGDIR": str(self.home / "home" / ".mpl"),
            "AIMC_DATA_DIR": str(self.home / "data"),
            "REDIS_URL": self.redis_url,
            "AIMC_KEY_PREFIX": self.prefix,
            "AIMC_FUSE": os.environ.get("AIMC_FUSE", "0"),  # as the suite (conftest)
        }  # no AIMC_ARTIFACT_DIR: it does not share the API's store; artifacts go to Redis
        celery = [*worker_command(), "--without-gossip", "--without-mingle", "-n", "remote@%h"]
        inner = " ".join(celery)
        # a private /tmp hides the API's files; not where the checkout or its Python live
        # under /tmp themselves (a clone there would vanish for the worker)
        ours = [ROOT.resolve(), Path(sys.executable).resolve(), Path(sys.prefix).resolve()]
        private_tmp = not any(p.is_relative_to("/tmp") for p in ours)
        if private_tmp and os.geteuid() == 0 and _run("unshare", "-m", "true"):
            argv = ["unshare", "-m", "--propagation", "private"]
            argv += ["sh", "-c", f"mount -t tmpfs tmpfs /tmp && exec {inner}"]
        else:
            argv = ["sh", "-c", f"exec {inner}"]
        if self.network.netns:
            argv = ["ip", "netns", "exec", self.network.netns, *argv]
        proc = subprocess.Popen(argv, cwd=self.home, env=env)
        self.procs.append(proc)
        return proc


@pytest.fixture
def remote(tmp_path: Path, network: Network) -> Iterator[Remote]:

    from service.app import create_app

    port = free_port()
    bind = ["--bind", "127.0.0.1"] + ([network.redis_host] if network.netns else [])
    password = uuid.uuid4().hex  # Redis reachable beyond loopback: with a password
    server = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            *bind,
            "--requirepass",
            password,
            "--dir",
            str(tmp_path),
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    prefix = f"remote-{uuid.uuid4().hex[:6]}:"
    local_url = f"redis://:{password}@127.0.0.1:{port}/0"
    settings = Settings(
        redis_url=local_url,
        key_prefix=prefix,
        admin_key=ADMIN,
        artifact_dir=tmp_path / "api-artifacts",
        data_dir=tmp_path / "api-data",
    )
    try:
        with serving(create_app(settings)) as api_url:
            env = Remote(
                api_url,
                ADMIN,
                JobStore.from_url(local_url, prefix),
                network,
                f"redis://:{password}@{network.redis_host}:{port}/0",
                tmp_path / "remote-host",
                prefix,
                [],
            )
            try:
                yield env
            finally:
                for proc in env.procs:
                    stop_process(proc)
    finally:
        server.terminate()
        server.wait()


def _until(what: str, check: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)


def test_worker_on_another_host_runs_uploads_artifacts_cancel_and_resume(
    remote: Remote, tmp_path: Path
) -> None:
    worker = remote.start_worker()
    with Client(remote.url, remote.admin) as admin:
        key = admin.create_user("faraway")["api_key"]
    client = Client(remote.url, key)
    # an uploaded dataset reaches the worker through Redis; artifacts come back the same way
    upload = client.upload_dataset(save_npz(tmp_path / "mine.npz"))
    spec = {
        "dataset": {"name": "uploaded", "id": upload["id"]},
        "training": {"steps": 20, "micro_batch_size": 4, "eval_every": 10},
    }
    job = client.wait(client.submit(spec)["id"], timeout_s=180)
    assert job["state"] == "succeeded", job
    [weights] = client.download(job["id"], tmp_path / "out", ["weights.safetensors"])
    assert weights.stat().st_size > 0
    assert remote.store.r.exists(
        remote.store.key("job", job["id"], "artifact", "weights.safetensors")
    )
    assert not (tmp_path / "api-artifacts").exists()  # nothing written where the API looks
    # cancel reaches it
    long = {"training": {"steps": 100_000, "micro_batch_size": 8, "eval_every": 1000}}
    job_id = client.submit(long)["id"]
    _until("running", lambda: client.get(job_id)["state"] == "running")
    client.cancel(job_id)
    assert client.wait(job_id, timeout_s=60)["state"] == "cancelled"
    # the worker host dies mid-job: the reaper queues the job again and a new worker
    # there resumes it from the checkpoint kept in Redis
    steps, every = 1500, 100
    resumable = {"training": {"steps": steps, "micro_batch_size": 8, "eval_every": every}}
    job_id = client.submit(resumable)["id"]
    _until("a checkpoint", lambda: remote.store.jobs.checkpoint(job_id) is not None, 180)
    for pid in [worker.pid, *descendants(worker.pid)]:
        os.kill(pid, signal.SIGKILL)
    worker.wait()
    remote.start_worker()
    final = client.wait(job_id, timeout_s=300)
    assert final["state"] == "succeeded", final
    assert [m["step"] for m in client.metrics(job_id)] == list(range(0, steps + 1, every))
    record = remote.store.r.hgetall(remote.store.key("job", job_id))
    assert int(record[b"resumes"]) == 1 and int(record[b"attempts"]) == 2
    client.close()
