"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine in CI)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from tests.conftest import PACKAGES

ROOT = Path(__file__).resolve().parent.parent


def test_compose_services_commands_env_and_volumes() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "api", "worker"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in compose["volumes"]
    api, worker = services["api"], services["worker"]
    assert api["command"][:2] == ["uvicorn", "service.app:create_app"]
    assert worker["command"][:4] == ["celery", "-A", "worker.app", "worker"]
    for svc in (api, worker):
        assert svc["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc["build"] == "."
    assert "ports" not in worker  # workers scale: no fixed host port
    # the host's thread setting reaches the jobs (empty: the default policy)
    assert worker["environment"]["AIMC_THREADS"] == "${AIMC_THREADS:-}"
    for svc in (api, worker):  # one artifact store, shared
        assert svc["environment"]["AIMC_ARTIFACT_DIR"] == "/artifacts"
        assert "artifacts:/artifacts" in svc["volumes"]
    assert "artifacts" in compose["volumes"]
    assert "8000:8000" in api["ports"]


def test_dockerfile_installs_cpu_torch_first_and_copies_the_packages() -> None:
    text = (ROOT / "Dockerfile").read_text()
    torch_line = text.index("torch==2.13.0")
    assert torch_line < text.index("RUN pip install .")
    for package in PACKAGES:
        assert f"COPY {package} {package}" in text
        assert (ROOT / package / "__init__.py").exists()
    assert "USER aimc" in text
    assert "gcc libc6-dev" in text  # the workers build the C update kernels


def test_the_c_update_kernels_ship_with_the_package() -> None:
    """A wheel (pip install ., the Dockerfile) must carry update_kernels.c."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    assert "*.c" in package_data["aimc_engine"]
    assert (ROOT / "aimc_engine" / "update_kernels.c").exists()
