"""The store (aimc_store) against a real Redis, resource by resource: typed records,
state changes, metrics, artifacts inline and in the artifact store, users, datasets,
sweeps and the scripts that must be atomic. No worker runs here."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from aimc_spec.vocabulary import TERMINAL
from aimc_store.keys import Keys, hash_key
from aimc_store.records import Dataset, Job, StateChange, SweepMember, User, decode_point
from aimc_store.settings import StoreSettings
from aimc_store.stats import DURATION_BUCKETS_S
from aimc_store.store import JobStore

INFO = {"n_train": 40, "n_test": 10, "sample_shape": [8, 8], "classes": 10, "x_dtype": "float32"}


@pytest.fixture
def store(plain_store: JobStore) -> JobStore:
    return plain_store


# keys and settings ---------------------------------------------------------------------
def test_keys_keep_the_layout_existing_data_was_written_in() -> None:
    keys = Keys("aimc:")
    assert keys("job", "j1", "metrics") == "aimc:job:j1:metrics"
    assert keys.slot_keys("u") == [
        "aimc:user:u:in:running",
        "aimc:user:u:in:retrying",
        "aimc:user:u:parked",
    ]
    assert keys.job_keys("j1", ["a.png"])[:2] == ["aimc:job:j1", "aimc:job:j1:artifact:a.png"]
    assert "aimc:job:j1:checkpoint" in keys.job_keys("j1", [])
    assert keys.artifact_folder("j1") == "aimc/j1" and Keys(":").artifact_folder("j") == "aimc/j"
    assert hash_key("k") == "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a"


def test_store_settings_read_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("AIMC_KEY_PREFIX", "env:")
    monkeypatch.setenv("AIMC_ARTIFACT_DIR", str(tmp_path))
    monkeypatch.setenv("AIMC_DATASET_DIRS", f"{tmp_path}: :/data")
    settings = StoreSettings()
    assert settings.redis_url == redis_url and settings.key_prefix == "env:"
    assert settings.dataset_roots() == (tmp_path, Path("/data"))
    store = JobStore.from_settings(settings)
    assert store.p == "env:" and store.artifact_dir == tmp_path
    assert store.retention_s == settings.retention_seconds
    assert store.inline_max_bytes == settings.artifact_inline_max_bytes


# jobs ----------------------------------------------------------------------------------
def test_a_created_job_reads_back_as_a_typed_record(store: JobStore) -> None:
    spec = {"name": "typed", "seed": 3, "training": {"steps": 5}}
    job_id = store.jobs.create("ann", spec)
    job = store.jobs.get(job_id)
    assert isinstance(job, Job)
    assert (job.id, job.owner, job.name, job.spec, job.state) == (
        job_id,
        "ann",
        "typed",
        spec,
        "queued",
    )
    assert (job.progress, job.attempts, job.resumes) == (0.0, 0, 0)
    assert job.started is job.finished is job.result is job.error is job.sweep is None
    assert abs(job.created - time.time()) < 60 and not job.ended
    assert store.jobs.get("no-such-job") is None


def test_state_changes_record_events_times_and_counts(store: JobStore) -> None:
    job_id = store.jobs.create("bea", {"name": "s"})
    store.jobs.set_state(job_id, "running", worker="host:1")
    running = store.jobs.get(job_id)
    assert running is not None and running.state == "running" and running.worker == "host:1"
    assert running.started is not None and running.finished is None
    assert store.jobs.add_attempt(job_id) == 1 and store.jobs.add_attempt(job_id) == 2
    store.jobs.set_progress(job_id, 0.25)
    store.jobs.set_result(job_id, {"status": "succeeded", "updates": 7})
    store.jobs.put_checkpoint(job_id, b"state")
    store.jobs.set_state(job_id, "succeeded", error="")
    job = store.jobs.get(job_id)
    assert job is not None and job.ended and job.state in TERMINAL
    assert job.finished is not None and job.finished >= job.started  # type: ignore[operator]
    assert (job.attempts, job.progress, job.error) == (2, 0.25, None)  # "" reads as no error
    assert job.result == {"status": "succeeded", "updates": 7}
    assert store.jobs.checkpoint(job_id) is None  # a finished job is never resumed
    events = store.jobs.events(job_id)
    assert [e.state for e in events] == ["queued", "running", "succeeded"]
    assert all(isinstance(e, StateChange) for e in events)
    assert events[0].t <= events[1].t <= events[2].t


def test_an_unknown_state_is_refused_naming_the_allowed_ones(store: JobStore) -> None:
    job_id = store.jobs.create("cy", {})
    with pytest.raises(ValueError, match="unknown job state 'done'; one of queued"):
        store.jobs.set_state(job_id, "done")
    assert store.jobs.get(job_id).state == "queued"  # type: ignore[union-attr]


def test_transitions_and_duration_histogram(store: JobStore) -> None:
    job_id = store.jobs.create("dan", {})
    store.jobs.set_state(job_id, "running", started=time.time() - 7)
    store.jobs.set_state(job_id, "failed", error="boom")
    assert store.stats.transitions() == {"queued": 1, "running": 1, "failed": 1}
    failed = store.stats.durations()["failed"]
    assert failed["+Inf"] == 1 and 7 <= failed["sum"] < 60
    assert set(failed) == {f"{b:g}" for b in DURATION_BUCKETS_S if b >= 7} | {"+Inf", "sum"}
    assert failed["15"] == 1 and failed["86400"] == 1  # cumulative: every bound above 7 s
    assert store.jobs.get(job_id).error == "boom"  # type: ignore[union-attr]


def test_queue_depth_counts_the_celery_list(store: JobStore) -> None:
    queue = store.key("a-queue")
    assert store.stats.queue_depth(queue) == 0
    store.r.rpush(queue, "m1", "m2")
    assert store.stats.queue_depth(queue) == 2


def test_finished_jobs_expire_with_the_retention_and_delete_removes_all(store: JobStore) -> None:
    kept = JobStore(
        store.r, store.p, retention_s=120, artifact_dir=store.artifact_dir, inline_max_bytes=64
    )
    job_id = kept.jobs.create("eve", {})
    kept.artifacts.put(job_id, "small.txt", b"1")
    kept.artifacts.put(job_id, "big.bin", b"x" * 100)
    assert kept.r.ttl(kept.key("job", job_id)) == -1  # unfinished jobs never expire
    kept.jobs.set_state(job_id, "cancelled")
    for key in (kept.key("job", job_id), kept.key("job", job_id, "artifact", "small.txt")):
        assert 0 < kept.r.ttl(key) <= 120
    folder = kept.artifact_dir / kept.keys.artifact_folder(job_id)  # type: ignore[operator]
    assert (folder / "big.bin").is_file()
    kept.jobs.delete(job_id)
    assert kept.jobs.get(job_id) is None and not folder.exists()
    assert not kept.r.exists(kept.key("job", job_id, "artifact", "small.txt"))
    assert kept.r.zscore(kept.key("user", "eve", "jobs"), job_id) is None


def test_idempotency_keys_remember_the_body_and_job(store: JobStore) -> None:
    assert store.jobs.idempotent("fay", "k1") is None
    store.jobs.remember_idempotent("fay", "k1", "digest", "job-1", 60)
    assert store.jobs.idempotent("fay", "k1") == ("digest", "job-1")
    assert store.jobs.idempotent("gus", "k1") is None  # per user
    assert 0 < store.r.ttl(store.key("idem", "fay", hash_key("k1"))) <= 60


# metrics and events --------------------------------------------------------------------
def test_metrics_in_order_since_a_step_and_the_latest(store: JobStore) -> None:
    job_id = store.jobs.create("hal", {})
    assert store.metrics.latest(job_id) is None and store.metrics.last_step(job_id) == -1
    for step in (0, 5, 10):
        assert store.metrics.add(job_id, {"step": step, "test_loss": 1.0 / (step + 1)})
    assert not store.metrics.add(job_id, {"step": 10, "test_loss": 9.0})  # a retried write
    assert not store.metrics.add(job_id, {"step": 3})  # behind the newest
    assert [m["step"] for m in store.metrics.points(job_id)] == [0, 5, 10]
    assert [m["step"] for m in store.metrics.points(job_id, since_step=0)] == [5, 10]
    assert store.metrics.points(job_id, since_step=10) == []
    assert store.metrics.latest(job_id) == {"step": 10, "test_loss": 1.0 / 11}
    assert store.metrics.last_step(job_id) == 10


def test_one_decoder_reads_both_shapes_of_a_stream_entry() -> None:
    point = {"step": 4, "test_loss": 0.5}
    raw = json.dumps(point).encode()
    assert decode_point({b"m": raw}) == point  # redis-py's XRANGE
    assert decode_point([b"m", raw]) == point  # a Lua script's flat reply


# checkpoints, locks, heartbeats, cancel ------------------------------------------------
def test_lock_heartbeat_cancel_and_checkpoint(store: JobStore) -> None:
    job_id = store.jobs.create("ian", {})
    assert store.leases.take_lock(job_id, "w1", 10) and not store.leases.take_lock(job_id, "w2", 10)
    assert not store.leases.alive(job_id)
    assert store.leases.beat(job_id, "w1", 10) and store.leases.alive(job_id)
    store.leases.release_lock(job_id, "w2")  # not the holder: kept
    assert store.r.get(store.key("job", job_id, "lock")) == b"w1"
    store.leases.release_lock(job_id, "w1")
    assert store.leases.take_lock(job_id, "w2", 10)
    assert not store.jobs.cancel_requested(job_id)
    store.jobs.request_cancel(job_id)
    assert store.jobs.cancel_requested(job_id)
    store.jobs.put_checkpoint(job_id, b"\x00blob")
    store.jobs.mark_resumed(job_id)
    assert store.jobs.checkpoint(job_id) == b"\x00blob"
    assert store.jobs.get(job_id).resumes == 1  # type: ignore[union-attr]


def test_a_lost_running_job_is_requeued_once(store: JobStore) -> None:
    job_id = store.jobs.create("jo", {})
    store.jobs.set_state(job_id, "running")
    assert store.leases.live_jobs() == [job_id]
    store.leases.beat(job_id, "w1", 10)
    assert not store.leases.requeue_if_lost(job_id)  # its worker beats
    store.r.delete(store.key("job", job_id, "lock"), store.key("job", job_id, "heartbeat"))
    assert store.leases.requeue_if_lost(job_id)
    assert not store.leases.requeue_if_lost(job_id)  # once
    assert store.jobs.get(job_id).state == "retrying"  # type: ignore[union-attr]
    assert store.jobs.count_in("jo", "retrying") == 1 and store.jobs.count_in("jo", "running") == 0
    assert store.leases.live_jobs() == [job_id] and store.leases.queued_jobs() == []
    assert not store.leases.requeue_if_lost("no-such-job")


# artifacts -----------------------------------------------------------------------------
def test_small_artifacts_stay_in_redis_big_ones_go_to_files(store: JobStore) -> None:
    job_id = store.jobs.create("kay", {})
    store.artifacts.put(job_id, "result.json", b"{}")
    store.artifacts.put(job_id, "weights.bin", b"w" * 65)  # over the 64-byte inline limit
    assert store.artifacts.names(job_id) == ["result.json", "weights.bin"]
    assert store.artifacts.find(job_id, "result.json") == b"{}"
    relative = store.artifacts.find(job_id, "weights.bin")
    assert relative == f"{store.keys.artifact_folder(job_id)}/weights.bin"
    assert store.artifacts.read(job_id, "weights.bin") == b"w" * 65
    assert not store.r.exists(store.key("job", job_id, "artifact", "weights.bin"))
    assert (
        store.artifacts.find(job_id, "nope") is None
        and store.artifacts.read(job_id, "nope") is None
    )
    assert store.artifact_dir is not None
    (store.artifact_dir / str(relative)).unlink()  # removed outside the service
    assert store.artifacts.find(job_id, "weights.bin") == relative  # still listed...
    assert store.artifacts.read(job_id, "weights.bin") is None  # ...but gone


def test_without_an_artifact_store_everything_stays_in_redis(store: JobStore) -> None:
    inline = JobStore(store.r, store.p, inline_max_bytes=4)
    job_id = inline.jobs.create("lou", {})
    inline.artifacts.put(job_id, "big.bin", b"0123456789")
    assert inline.artifacts.find(job_id, "big.bin") == b"0123456789"
    assert inline.artifacts.remove_expired_files() == []


def test_expired_jobs_artifact_files_are_removed(store: JobStore) -> None:
    job_id = store.jobs.create("max", {})
    store.artifacts.put(job_id, "big.bin", b"x" * 100)
    assert store.artifacts.remove_expired_files() == []  # the job is still kept
    store.r.delete(store.key("job", job_id))  # as the retention's expiry does
    assert store.artifacts.remove_expired_files() == [job_id]
    assert store.artifacts.read(job_id, "big.bin") is None


# users ---------------------------------------------------------------------------------
def test_users_keys_are_hashed_rotated_and_revoked(store: JobStore) -> None:
    created = store.users.create("nina")
    assert created is not None
    user_id, key = created
    assert store.users.create("nina") is None  # names are unique
    assert key.startswith("aimc_") and not store.r.exists(store.key("key", key))
    assert store.r.get(store.key("key", hash_key(key))) == user_id.encode()
    user = store.users.get(user_id)
    assert isinstance(user, User) and user.name == "nina" and user.id == user_id
    assert [u.name for u in store.users.all()] == ["nina"]
    new_key = store.users.rotate_key(user_id)
    assert new_key is not None and new_key != key
    assert not store.r.exists(store.key("key", hash_key(key)))  # the old key stops at once
    assert (
        store.users.rotate_key("no-such-user") is None and store.users.get("no-such-user") is None
    )
    queued = store.jobs.create(user_id, {})
    assert store.users.delete(user_id) and not store.users.delete(user_id)
    assert store.users.all() == [] and not store.r.exists(store.key("key", hash_key(new_key)))
    assert store.jobs.get(queued).state == "cancelled"  # type: ignore[union-attr]
    assert store.users.create("nina") is not None  # the name is free again


# datasets ------------------------------------------------------------------------------
def test_datasets_are_typed_listed_and_deleted(store: JobStore) -> None:
    first = store.datasets.put("olga", "digits", b"npz-bytes", INFO)
    second = store.datasets.put("olga", "more", b"more", INFO)
    record = store.datasets.get(first)
    assert record == Dataset(
        id=first,
        owner="olga",
        name="digits",
        created=record.created,  # type: ignore[union-attr]
        bytes=9,
        n_train=40,
        n_test=10,
        sample_shape=[8, 8],
        classes=10,
        x_dtype="float32",
    )
    assert store.datasets.read(first) == b"npz-bytes"
    assert store.datasets.ids("olga") == [second, first]  # newest first
    assert store.datasets.ids("pam") == []
    store.datasets.delete(first, "olga")
    assert store.datasets.get(first) is None and store.datasets.read(first) is None
    assert store.datasets.ids("olga") == [second]


# sweeps --------------------------------------------------------------------------------
def test_a_sweep_marks_its_jobs_and_ends_when_they_all_have(store: JobStore) -> None:
    jobs = [store.jobs.create("quinn", {"seed": s}) for s in (1, 2, 3)]
    members = [SweepMember(j, {"seed": s}) for j, s in zip(jobs, (1, 2, 3), strict=True)]
    sweep_id = store.sweeps.create("quinn", "seeds", {"seed": [1, 2, 3]}, members)
    sweep = store.sweeps.get(sweep_id)
    assert sweep is not None and sweep.members == members and sweep.grid == {"seed": [1, 2, 3]}
    assert (sweep.owner, sweep.name) == ("quinn", "seeds") and sweep_id.startswith("sw_")
    assert all(store.jobs.get(j).sweep == sweep_id for j in jobs)  # type: ignore[union-attr]
    assert store.sweeps.ids("quinn") == [sweep_id] and store.sweeps.get("no-such") is None
    assert store.sweeps.member_states(sweep) == ["queued"] * 3 and not store.sweeps.ended(sweep)
    store.jobs.set_state(jobs[0], "succeeded")
    store.jobs.set_state(jobs[1], "failed")
    assert not store.sweeps.ended(sweep)
    store.jobs.set_state(jobs[2], "cancelled")
    store.jobs.delete(jobs[1])  # a deleted (or expired) member counts as ended
    assert store.sweeps.member_states(sweep) == ["succeeded", "expired", "cancelled"]
    assert store.sweeps.ended(sweep)


def test_a_sweep_is_admitted_whole_or_not_at_all(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """admit_sweep queues the jobs and records their sweep in one transaction: jobs, each
    marked as the sweep's, in the live sets the limits and the reaper read. A failure
    before the transaction reaches Redis (here in recording the sweep, as a Redis gone
    halfway would) leaves no job queued without its sweep."""
    points = [({"name": f"s [{seed}]", "seed": seed}, {"seed": seed}) for seed in (1, 2)]
    made, jobs = store.sweeps.admit("sven", "seeds", {"seed": [1, 2]}, points)
    sweep = store.sweeps.get(made.id)
    assert sweep == made  # the record returned is the one stored
    assert sweep is not None and [m.job for m in sweep.members] == [j.id for j in jobs]
    assert [m.overrides for m in sweep.members] == [{"seed": 1}, {"seed": 2}]
    for job in jobs:
        stored = store.jobs.get(job.id)
        assert stored is not None and (stored.state, stored.sweep) == ("queued", made.id)
        assert stored.spec == job.spec and stored.name == job.name
    assert store.jobs.count_in("sven", "queued") == 2 and set(store.leases.queued_jobs()) >= {
        j.id for j in jobs
    }

    def redis_gone(*_: object) -> str:
        raise ConnectionError("Redis went away")

    monkeypatch.setattr(store.sweeps, "_record", redis_gone)
    with pytest.raises(ConnectionError):
        store.sweeps.admit("tess", "seeds", {"seed": [1, 2]}, points)
    assert store.jobs.count_in("tess", "queued") == 0 and store.sweeps.ids("tess") == []


def test_the_sweep_plot_is_kept_once(store: JobStore) -> None:
    kept = JobStore(store.r, store.p, retention_s=300)
    sweep_id = kept.sweeps.create("rita", "s", {}, [])
    assert kept.sweeps.plot(sweep_id) is None and not kept.sweeps.has_plot(sweep_id)
    assert kept.sweeps.finish(sweep_id, b"\x89PNG first")
    assert not kept.sweeps.finish(sweep_id, b"\x89PNG second")  # a second worker's: dropped
    assert kept.sweeps.plot(sweep_id) == b"\x89PNG first" and kept.sweeps.has_plot(sweep_id)
    assert 0 < kept.r.ttl(kept.key("sweep", sweep_id)) <= 300  # expires with the jobs
    assert 0 < kept.r.ttl(kept.key("sweep", sweep_id, "plot")) <= 300


def test_asking_for_a_sweep_plot_is_throttled(store: JobStore) -> None:
    assert store.sweeps.ask_for_plot("sw_x", 60)
    assert not store.sweeps.ask_for_plot("sw_x", 60)
    assert store.sweeps.ask_for_plot("sw_y", 60)  # per sweep
    assert 0 < store.r.ttl(store.key("sweep", "sw_x", "plot_asked")) <= 60


# the scripts' atomic limits --------------------------------------------------------------
def test_claim_slot_is_counted_per_owner(store: JobStore) -> None:
    assert store.leases.claim_slot("kim", "a", 2) and store.leases.claim_slot("kim", "b", 2)
    assert store.leases.claim_slot("kim", "a", 2)  # a redelivered job keeps its slot
    assert not store.leases.claim_slot("kim", "c", 2) and not store.leases.claim_slot("kim", "d", 2)
    assert store.leases.claim_slot("lee", "e", 2)  # another user's slots are their own
    assert store.leases.free_slots("kim", 2) == []
    store.r.srem(f"{store.p}user:kim:in:running", "a", "b")
    assert store.leases.free_slots("kim", 2) == ["c", "d"]  # oldest first, then the list is empty
    assert store.leases.free_slots("kim", 2) == []


def test_queued_count_follows_state_changes(store: JobStore) -> None:
    jobs = [store.jobs.create("ivy", {"name": "q"}) for _ in range(3)]
    assert store.jobs.count_in("ivy", "queued") == 3
    store.jobs.set_state(jobs[0], "running")
    store.jobs.set_state(jobs[1], "cancelled")
    assert store.jobs.count_in("ivy", "queued") == 1
    assert store.jobs.count_in("ivy", "running") == 1
    store.jobs.delete(jobs[2])
    store.jobs.set_state(jobs[0], "succeeded")
    assert store.jobs.count_in("ivy", "queued") == 0 == store.jobs.count_in("ivy", "running")


def test_admit_job_creates_only_under_the_queued_limit(store: JobStore) -> None:
    first = store.jobs.admit("nia", {"name": "a"}, 2)
    assert first is not None and store.jobs.get(first.id) == first  # what was stored
    assert store.jobs.admit("nia", {"name": "b"}, 2) is not None
    assert store.jobs.admit("nia", {"name": "c"}, 2) is None  # two queued: the limit
    assert store.jobs.count_in("nia", "queued") == 2
    store.jobs.set_state(first.id, "running")
    assert store.jobs.admit("nia", {"name": "d"}, 2) is not None  # room again


def test_a_job_hash_without_an_owner_is_no_job(plain_store: JobStore) -> None:
    """A worker's late write (its progress) to a job deleted meanwhile leaves a hash of
    one field: it reads as no job, not a KeyError (a 500 at GET /v1/jobs/ID)."""
    job_id = plain_store.jobs.create("wes", {})
    plain_store.jobs.delete(job_id)
    plain_store.jobs.set_progress(job_id, 0.5)
    assert plain_store.jobs.get(job_id) is None
