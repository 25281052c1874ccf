"""Idle cores from /proc/stat (aimc_engine/idle_cores.py): others' load is the busy
time of our cores less our own CPU time, per wall second."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aimc_engine.idle_cores import IdleCores, Reading, quota_cores

# two cores of four: user nice system idle iowait irq softirq steal guest guest_nice
STAT = """cpu  999 0 0 999 0 0 0 0 0 0
cpu0 {a} 1 2 500 7 3 4 5 6 0
cpu1 100 0 0 500 0 0 0 0 0 0
cpu2 {c} 0 0 500 0 0 0 0 0 0
cpu3 100 0 0 500 0 0 0 0 0 0
intr 12345
"""


def test_a_reading_sums_the_busy_fields_of_our_cores_only(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT.format(a=10, c=20))
    idle = IdleCores({0, 2}, stat)
    # cpu0: user 10 + nice 1 + system 2 + irq 3 + softirq 4 + steal 5 (idle, iowait and
    # guest 6, already inside user, are not added); cpu2: user 20
    assert idle.read().busy == pytest.approx((25 + 20) * idle.tick)
    stat.write_text(STAT.format(a=110, c=20))
    assert idle.read().busy == pytest.approx((125 + 20) * idle.tick)


def test_idle_cores_are_the_cores_less_others_load() -> None:
    idle = IdleCores({0, 1})
    # 2 s: our cores were busy 3 core-seconds, 1.2 of them ours: others 0.9 of a core
    assert idle.between(Reading(10.0, 5.0, 40.0), Reading(12.0, 6.2, 43.0)) == pytest.approx(1.1)
    # our own two spinning threads are not someone else's load
    assert idle.between(Reading(0.0, 0.0, 0.0), Reading(1.0, 2.0, 2.0)) == pytest.approx(2.0)
    # clock ticks round: never below none or above all
    assert idle.between(Reading(0.0, 0.0, 0.0), Reading(1.0, 0.0, 2.3)) == 0.0
    assert idle.between(Reading(0.0, 1.0, 0.0), Reading(1.0, 1.5, 0.2)) == 2.0


def test_this_machines_cores_count_our_own_work_as_busy() -> None:
    """On the real /proc/stat: while this process spins, our cores' busy time grows by
    at least the CPU time we used (less a clock tick per core for rounding)."""
    idle = IdleCores()
    if not idle.available():
        pytest.skip("no /proc/stat")
    first = time.monotonic()
    before = idle.read()
    while time.process_time() - before.own < 0.3:
        pass
    after = idle.read()
    last = time.monotonic()
    rounding = len(idle.cpus) * idle.tick
    busy = after.busy - before.busy
    assert busy >= after.own - before.own - rounding
    # and no more than all our cores for the whole time: idle time is not counted busy.
    # The time is the clock around both readings: a reading's own clock is taken after
    # /proc/stat is read, and a busy machine may preempt us in between.
    assert busy <= (last - first) * len(idle.cpus) + rounding


def test_without_proc_stat_or_with_a_core_it_lacks_it_says_so(tmp_path: Path) -> None:
    assert not IdleCores({0}, tmp_path / "absent").available()
    stat = tmp_path / "stat"
    stat.write_text(STAT.format(a=10, c=20))
    assert IdleCores({0, 3}, stat).available()
    # LXCFS renumbers the cores of a container: our core 7 has no line, its load unseen
    assert not IdleCores({0, 7}, stat).available()


@pytest.mark.parametrize(
    ("text", "cores"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1),
     ("200000 100000\n", 2), ("garbage\n", None)],
)  # fmt: skip
def test_a_cgroup_quota_rounds_up_to_whole_cores(
    tmp_path: Path, text: str, cores: int | None
) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text)
    assert quota_cores(cpu_max, tmp_path / "no v1") == cores
    assert quota_cores(tmp_path / "absent", tmp_path / "no v1") is None


@pytest.mark.parametrize(
    ("quota", "period", "cores"),
    [("-1", "100000", None), ("150000", "100000", 2), ("50000", "100000", 1),
     ("garbage", "100000", None), ("150000", "0", None), ("150000", None, None)],
)  # fmt: skip
def test_a_cgroup_v1_quota_counts_where_there_is_no_v2_file(
    tmp_path: Path, quota: str, period: str | None, cores: int | None
) -> None:
    (tmp_path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    if period is not None:
        (tmp_path / "cpu.cfs_period_us").write_text(f"{period}\n")
    assert quota_cores(tmp_path / "no cpu.max", tmp_path) == cores
    # a v2 file, where there is one, is the one that counts
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert quota_cores(tmp_path / "cpu.max", tmp_path) is None
