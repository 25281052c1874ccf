"""The admission's memory estimate (aimc_spec.resources) is within a factor 1.5 of the
peak a job's process really takes, for every model kind, every update mode and the
schedules that hold more (async_stash, gpipe): benchmarks/memory_estimate.py runs each
in a process forked as a worker forks its jobs, from a fresh interpreter (forking this
one, where torch already ran ops, can hang)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_the_estimate_is_within_1_5_of_the_measured_peak() -> None:
    script = ROOT / "benchmarks" / "memory_estimate.py"
    out = subprocess.run(
        [sys.executable, str(script), "--steps", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    found = json.loads(out.stdout.splitlines()[-1])
    for kind in ("mlp", "cnn", "resnet"):  # every kind in every update mode
        for mode in ("expected", "pulsed", "rounded", "digital"):
            assert f"{kind} {mode}" in found
    assert {"mlp tiki_taka", "mlp async_stash", "mlp gpipe", "mlp one_sided"} <= set(found)
    assert "mlp vector4" in found
    ratios = {name: estimate / measured for name, (estimate, measured) in found.items()}
    assert all(1 / 1.5 <= r <= 1.5 for r in ratios.values()), ratios
