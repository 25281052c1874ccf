"""The suite's Redis is a server it started itself, never one that was already there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis


def test_the_tests_redis_is_a_child_of_this_session(redis_url: str) -> None:
    """Unless AIMC_TEST_REDIS_URL names one, the Redis every test uses is a redis-server
    this pytest process started (its parent), not one listening on 6379 already."""
    if os.environ.get("AIMC_TEST_REDIS_URL"):
        pytest.skip("AIMC_TEST_REDIS_URL chose the Redis explicitly")
    info = redis.Redis.from_url(redis_url).info("server")
    status = Path(f"/proc/{info['process_id']}/status").read_text()
    parent = next(line for line in status.splitlines() if line.startswith("PPid:"))
    assert int(parent.split()[1]) == os.getpid()
    assert info["tcp_port"] != 6379 or redis_url.endswith(":6379/0")
