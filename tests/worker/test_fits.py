"""A worker refuses, before it starts, a job whose estimated peak memory passes its
allowance per job or the memory its machine has available (worker/fits.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aimc_spec.resources import resources
from aimc_spec.spec import parse_spec
from worker.fits import available_bytes, misfit

BIG = parse_spec({"model": {"hidden": [4096, 4096]}, "training": {"steps": 3}})
SMALL = parse_spec({"training": {"steps": 3}})


def meminfo(tmp_path: Path, available_kib: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(
        f"MemTotal:       24000000 kB\nMemFree:         1000 kB\n"
        f"MemAvailable:   {available_kib} kB\nBuffers:  10 kB\n"
    )
    return path


def test_available_memory_is_read_from_meminfo(tmp_path: Path) -> None:
    assert available_bytes(meminfo(tmp_path, 2048)) == 2048 * 1024
    assert available_bytes(tmp_path / "absent") is None


def test_a_job_over_the_workers_allowance_is_refused_naming_both(tmp_path: Path) -> None:
    plenty = meminfo(tmp_path, 64 * 2**20)
    need = resources(BIG, 1438, (1, 8, 8)).peak_bytes / 2**20
    said = misfit(BIG, None, allowance_mib=int(need) - 1, meminfo=plenty)
    assert said is not None
    assert f"{need:.0f} MiB" in said and f"limit of {int(need) - 1} MiB" in said
    assert "AIMC_JOB_MAX_MEMORY_MIB" in said
    assert misfit(BIG, None, allowance_mib=int(need) + 1, meminfo=plenty) is None


def test_a_job_over_the_machines_available_memory_is_refused(tmp_path: Path) -> None:
    need = resources(SMALL, 1438, (1, 8, 8)).peak_bytes
    short = meminfo(tmp_path, need // 1024 - 1)
    said = misfit(SMALL, None, allowance_mib=4096, meminfo=short)
    assert said is not None and "available now" in said
    assert (
        misfit(SMALL, None, allowance_mib=4096, meminfo=meminfo(tmp_path, need // 1024 + 1)) is None
    )


def test_an_uploaded_dataset_is_sized_from_its_header(tmp_path: Path) -> None:
    data = tmp_path / "up.npz"
    x = np.zeros((5000, 3, 32, 32), np.float32)
    np.savez(
        data,
        x_train=x,
        y_train=np.zeros(5000, np.int64),
        x_test=x[:10],
        y_test=np.zeros(10, np.int64),
    )
    spec = parse_spec({"dataset": {"name": "uploaded", "id": "d1"}, "training": {"steps": 3}})
    need = resources(spec, 5000, (3, 32, 32)).peak_bytes
    plenty = meminfo(tmp_path, 64 * 2**20)
    assert misfit(spec, data, allowance_mib=need // 2**20 - 1, meminfo=plenty) is not None
    assert misfit(spec, data, allowance_mib=need // 2**20 + 1, meminfo=plenty) is None
    # a file whose header cannot be read is left to the job's own checks
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert misfit(spec, tmp_path / "bad.npz", allowance_mib=1, meminfo=plenty) is None
