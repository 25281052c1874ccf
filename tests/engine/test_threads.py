"""The thread policy (aimc_engine/threads.py): threads from the work per operation and the
caller's cores, explicit settings win, OpenMP waits passively when set before torch."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from aimc_engine import threads
from aimc_engine.errors import RunError
from aimc_engine.idle_cores import IdleCores, Reading
from aimc_engine.pipeline.schedule import BACKWARD, FORWARD, UPDATE, Action
from aimc_engine.pipeline.stage_process import StageRun
from aimc_engine.runner import Callbacks, run
from aimc_engine.threads import (
    CROSSOVER_MACS,
    THREADS_ENV,
    LoadFollowing,
    Threads,
    ThreadSettingError,
    choose_threads,
    cores_share,
    explicit_threads,
    follow_load,
    follows_load,
    largest_product,
    policy_threads,
    threads_for_idle,
    threads_per_stage,
)
from aimc_spec.spec import parse_spec

TINY = {
    "dataset": {"name": "synthetic", "synthetic": {"n_train": 64, "n_test": 32, "features": 8}},
    "model": {"kind": "mlp", "hidden": [16]},
    "training": {"steps": 4, "micro_batch_size": 8, "eval_every": 4},
}


@pytest.fixture
def no_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.fixture
def two_cores() -> Any:
    """The caller gives the run two cores (torch's thread count), restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_small_work_runs_on_one_thread_and_large_work_on_the_cores_given() -> None:
    assert choose_threads(CROSSOVER_MACS - 1, cores=16) == 1
    assert choose_threads(CROSSOVER_MACS, cores=16) == 2
    assert choose_threads(3 * CROSSOVER_MACS, cores=16) == 4
    assert choose_threads(1000 * CROSSOVER_MACS, cores=16) == 16  # never above the share
    assert choose_threads(1000 * CROSSOVER_MACS, cores=1) == 1


def test_an_explicit_setting_wins_over_the_work_and_the_share() -> None:
    assert choose_threads(0, cores=2, explicit=3) == 3
    assert explicit_threads({"OMP_NUM_THREADS": "3"}) == 3
    assert explicit_threads({"OMP_NUM_THREADS": "4,2"}) == 4  # OpenMP's nested list
    assert explicit_threads({THREADS_ENV: "2", "OMP_NUM_THREADS": "5"}) == 2
    assert explicit_threads({"OMP_NUM_THREADS": ""}) is None
    assert explicit_threads({}) is None


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_setting_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ThreadSettingError, match=f"{THREADS_ENV}: '{value}' .* or 'auto'"):
        explicit_threads({THREADS_ENV: value})
    with pytest.raises(ThreadSettingError, match="OMP_NUM_THREADS: 'auto'"):
        explicit_threads({"OMP_NUM_THREADS": "auto"})  # auto is aimc's, not OpenMP's


def test_auto_follows_the_load_and_sets_no_count() -> None:
    assert follows_load({THREADS_ENV: "auto"}) and follows_load({THREADS_ENV: " AUTO "})
    assert not follows_load({THREADS_ENV: "2"}) and not follows_load({})
    # AIMC_THREADS is aimc's own setting: its auto wins over OMP_NUM_THREADS too
    assert explicit_threads({THREADS_ENV: "auto", "OMP_NUM_THREADS": "3"}) is None


@pytest.mark.parametrize(
    ("idle", "most", "threads"),
    [(2.0, 2, 2), (1.8, 2, 2), (1.75, 2, 2), (1.7, 2, 1), (1.0, 2, 1), (0.0, 2, 1),
     (3.9, 8, 4), (3.7, 8, 3), (7.9, 4, 4), (2.0, 1, 1)],
)  # fmt: skip
def test_a_further_thread_needs_three_quarters_of_a_further_idle_core(
    idle: float, most: int, threads: int
) -> None:
    assert threads_for_idle(idle, most) == threads


@pytest.mark.parametrize(
    ("idle", "current", "threads"),
    [(1.6, 2, 2), (1.5, 2, 2), (1.49, 2, 1), (1.0, 2, 1), (1.6, 1, 1), (1.8, 1, 2),
     (2.6, 4, 2), (2.8, 4, 3), (3.5, 4, 4), (0.2, 4, 1)],
)  # fmt: skip
def test_a_thread_is_kept_until_its_core_is_less_than_half_idle(
    idle: float, current: int, threads: int
) -> None:
    assert threads_for_idle(idle, 4, current) == threads


class ScriptedLoad(IdleCores):
    """The idle cores each look reports, in order (the readings' arithmetic is
    test_idle_cores.py's): what LoadFollowing does with them is tested here."""

    def __init__(self, idles: list[float]) -> None:
        super().__init__({0, 1})
        self.idles = iter(idles)

    def available(self) -> bool:
        return True

    def read(self) -> Reading:
        return Reading(time.monotonic(), 0.0, 0.0)

    def between(self, before: Reading, after: Reading) -> float:
        return next(self.idles)


def test_load_following_looks_again_only_after_its_interval(
    two_cores: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    following = LoadFollowing(2, ScriptedLoad([2.0, 0.9, 2.0, 1.6, 1.2]))
    with caplog.at_level(logging.INFO, logger="aimc_engine.threads"):
        assert following.start() == torch.get_num_threads() == 2
    assert "auto: 2 threads (2.00 cores idle, at most 2)" in caplog.text  # what it chose
    following.retune()  # too soon: no look, the count stays
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "RETUNE_S", 0.0)
    following.retune()
    assert torch.get_num_threads() == 1  # another process took a core
    following.retune()
    assert torch.get_num_threads() == 2 and following.counts == [2, 1, 2]
    following.retune()  # others took less than half a core: the count holds
    following.retune()
    assert torch.get_num_threads() == 1 and following.counts == [2, 1, 2, 1]


def test_an_auto_run_changes_its_threads_with_the_load_and_restores_the_callers(
    no_explicit: None, two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = ScriptedLoad([2.0, 0.9, 0.9, 2.0, 0.9])
    monkeypatch.setenv(THREADS_ENV, "auto")
    monkeypatch.setattr(threads, "IdleCores", lambda: load)
    monkeypatch.setattr(threads, "quota_cores", lambda: None)
    monkeypatch.setattr(threads, "RETUNE_S", 0.0)
    monkeypatch.setattr(threads, "IDLE_CROSSOVER_MACS", 1)  # TINY is worth two threads
    seen: list[int] = []
    done = run(
        parse_spec(TINY), Callbacks(on_progress=lambda *_: seen.append(torch.get_num_threads()))
    )
    assert seen == [1, 1, 2, 1] and torch.get_num_threads() == 2  # the caller's again
    assert done.result["threads"] == [2, 1, 2, 1]  # what the run ran on, in its result


class NoProcStat(ScriptedLoad):
    def available(self) -> bool:
        return False


@pytest.mark.parametrize("why", ["no_proc_stat", "quota_of_one_core"])
def test_auto_falls_back_without_proc_stat_and_never_passes_the_quota(
    why: str, no_explicit: None, two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(THREADS_ENV, "auto")
    monkeypatch.setattr(threads, "IDLE_CROSSOVER_MACS", 1)
    monkeypatch.setattr(threads, "CROSSOVER_MACS", 1)  # the fixed policy's choice: 2
    if why == "no_proc_stat":
        monkeypatch.setattr(threads, "IdleCores", lambda: NoProcStat([]))  # a look would fail
        monkeypatch.setattr(threads, "quota_cores", lambda: None)
    else:
        monkeypatch.setattr(threads, "IdleCores", lambda: ScriptedLoad([]))
        monkeypatch.setattr(threads, "quota_cores", lambda: 1)
    with policy_threads(1000) as chosen:
        assert chosen.following is None
        assert chosen.count == torch.get_num_threads() == (2 if why == "no_proc_stat" else 1)


def test_an_auto_run_too_small_for_two_threads_never_looks(
    no_explicit: None, two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(THREADS_ENV, "auto")
    monkeypatch.setattr(threads, "IdleCores", lambda: ScriptedLoad([]))  # a look would fail
    seen: list[int] = []
    run(parse_spec(TINY), Callbacks(on_progress=lambda *_: seen.append(torch.get_num_threads())))
    assert set(seen) == {1}


def test_each_stage_of_a_processes_job_gets_its_share_and_under_auto_a_most(
    no_explicit: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(4)  # the caller's cores: a share of two for each of two stages
    try:
        monkeypatch.setattr(threads, "quota_cores", lambda: None)
        assert threads_per_stage(2, 0) == (1, 0)  # fixed: one thread, no following
        assert threads_per_stage(2, 10**12) == (2, 0)
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert threads_per_stage(2, 0) == (3, 0)  # an explicit count wins, in stages too
        monkeypatch.setenv(THREADS_ENV, "auto")
        assert threads_per_stage(2, 0) == (1, 1)  # too small to follow the load
        assert threads_per_stage(2, threads.IDLE_CROSSOVER_MACS) == (1, 2)
        assert threads_per_stage(4, 10**12) == (1, 1)  # a share of one core each
        monkeypatch.setattr(threads, "quota_cores", lambda: 2)  # the quota is split too
        assert threads_per_stage(2, 10**12) == (2, 1)  # (the first: the fixed policy's)
        assert threads_per_stage(1, 10**12) == (4, 2)
    finally:
        torch.set_num_threads(before)


def test_follow_load_looks_only_where_two_threads_could_pay_and_it_can_see(
    two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "IdleCores", lambda: ScriptedLoad([]))  # a look would fail
    assert follow_load(1, fallback=2) == Threads(1) and torch.get_num_threads() == 1
    monkeypatch.setattr(threads, "IdleCores", lambda: NoProcStat([]))
    assert follow_load(2, fallback=2) == Threads(2) and torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "IdleCores", lambda: ScriptedLoad([1.0]))
    chosen = follow_load(2, fallback=2)
    assert chosen.count == torch.get_num_threads() == 1 and chosen.following is not None


class Looks:
    """A stage's LoadFollowing that records after which action it was asked to look."""

    def __init__(self, stage: SimpleNamespace) -> None:
        self.stage, self.after = stage, []

    def retune(self) -> None:
        self.after.append((self.stage.executed, dict(self.stage.compute_s)))


def test_a_stage_looks_at_the_load_after_each_update_outside_its_timing() -> None:
    stage = SimpleNamespace(
        first=True, last=True, done=0, executed=0, train_wait_s=0.0, lr=lambda j: 0.1,
        compute_s=dict.fromkeys((FORWARD, BACKWARD, UPDATE), 0.0),
        traffic=SimpleNamespace(wait_s=0.0), _forward=lambda j: None,
        compute=SimpleNamespace(backward=lambda j, g: None, update=lambda j, lr: None),
    )  # fmt: skip
    stage.following = Looks(stage)
    for j in range(2):
        for kind in (FORWARD, BACKWARD, UPDATE):
            StageRun._execute(stage, Action(0, kind, j))  # type: ignore[arg-type]
    # once per update, after it: the update's time was booked before the look
    assert [executed for executed, _ in stage.following.after] == [3, 6]
    assert all(timed[UPDATE] > 0 for _, timed in stage.following.after)


def test_the_stages_of_an_auto_processes_job_follow_the_load(
    no_explicit: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    monkeypatch.setenv(THREADS_ENV, "auto")
    monkeypatch.setattr(threads, "IDLE_CROSSOVER_MACS", 1)  # TINY is worth two threads
    monkeypatch.setattr(threads, "quota_cores", lambda: None)
    if not IdleCores().available():
        pytest.skip("no /proc/stat to see the load by")
    pipeline = {"stages": 2, "schedule": "async", "executor": "processes"}
    try:
        done = run(parse_spec({**TINY, "pipeline": pipeline}))
    finally:
        torch.set_num_threads(before)
    assert done.result["status"] == "succeeded"
    for stage in done.result["processes"]:  # each stage read the machine's load itself
        assert stage["threads"] and set(stage["threads"]) <= {1, 2}


def test_the_share_divides_the_cores_this_process_may_use() -> None:
    cores = len(os.sched_getaffinity(0))
    assert cores_share() == cores
    assert cores_share(cores) == 1
    assert cores_share(10 * cores) == 1  # never none


def test_largest_product_counts_the_biggest_layer() -> None:
    mlp = parse_spec(
        {"model": {"kind": "mlp", "hidden": [32, 16]}, "training": {"micro_batch_size": 4}}
    )
    assert largest_product(mlp, (20,)) == 4 * 20 * 32
    cnn = parse_spec(
        {"model": {"kind": "cnn", "channels": [4], "fc": 8}, "training": {"micro_batch_size": 2}}
    )
    # 5x5 conv, 1 -> 4 channels, padded: 8x8 outputs of 25 multiply-adds per channel
    assert largest_product(cnn, (1, 8, 8)) == 2 * 8 * 8 * 4 * 25


def test_policy_threads_sets_the_choice_and_restores_the_callers(
    no_explicit: None, two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with policy_threads(0) as chosen:
        assert chosen.count == torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with policy_threads(10**12) as chosen:
        assert chosen.count == torch.get_num_threads() == 2
        assert chosen.following is None
    monkeypatch.setenv(THREADS_ENV, "1")
    with policy_threads(10**12) as chosen:
        assert chosen.count == 1


def test_a_run_trains_on_the_policys_threads(
    no_explicit: None, two_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    callbacks = Callbacks(on_progress=lambda *_: seen.append(torch.get_num_threads()))
    run(parse_spec(TINY), callbacks)
    assert set(seen) == {1} and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    seen.clear()
    run(parse_spec(TINY), callbacks)
    assert set(seen) == {2}


def test_a_run_given_a_bad_thread_setting_fails_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(RunError, match=THREADS_ENV):
        run(parse_spec(TINY))


def openmp_environment(code: str, **env: str) -> str:
    """What OpenMP reports it read (OMP_DISPLAY_ENV) in a fresh Python running `code`.
    Its OMP_WAIT_POLICY line reads PASSIVE for an unset policy too; the spin count
    before a waiting thread sleeps tells them apart (0 only when passive)."""
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "OMP_DISPLAY_ENV": "verbose", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr + done.stdout


PASSIVE_FIRST = (
    "from aimc_engine.threads import passive_openmp as p; r = p(); import torch; print(r)"
)


def test_openmp_waits_passively_when_asked_before_torch_loads() -> None:
    shown = openmp_environment(PASSIVE_FIRST)
    assert "GOMP_SPINCOUNT = '0'" in shown and "True" in shown
    # torch's own default spins first: the setting is what changed it
    assert "GOMP_SPINCOUNT = '0'" not in openmp_environment("import torch")


def test_auto_threads_spin_as_torchs_own() -> None:
    shown = openmp_environment(PASSIVE_FIRST, AIMC_THREADS="auto")
    assert "GOMP_SPINCOUNT = '0'" not in shown and "True" in shown


def test_a_wait_policy_the_user_set_wins() -> None:
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in openmp_environment(
        PASSIVE_FIRST, OMP_WAIT_POLICY="active"
    )


def test_asking_after_torch_loaded_says_it_came_too_late() -> None:
    code = "import torch; from aimc_engine.threads import passive_openmp as p; print(p())"
    assert "False" in openmp_environment(code)
