"""A study run on the service: its missing jobs queued as sweeps (cut to the size the
service takes), their states polled, and each ended job collected into its run folder.

A remote study remembers its job ids in DIR/remote.json, so a resumed one waits for the
jobs already queued instead of queuing them again. The client is imported when a study
runs remotely, so local studies never load it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from aimc_spec.sweep import MAX_SWEEP_JOBS
from aimc_spec.vocabulary import TERMINAL, JobState
from aimc_study.plan import Study, StudyJob
from aimc_study.runs import PARTIAL, commit_folder


class JobsDone(Protocol):
    """Told of each job as it ends (the CLI's progress bar)."""

    def job_done(self, job: StudyJob, status: str, accuracy: float | None) -> None: ...


def split_grid(grid: dict[str, list[Any]], limit: int) -> list[dict[str, list[Any]]]:
    """The grid cut into grids of at most `limit` combinations (halving the longest list
    until each piece fits), so a study larger than one sweep becomes several."""
    size = 1
    for values in grid.values():
        size *= len(values)
    if size <= limit:
        return [grid]
    key = max(grid, key=lambda k: len(grid[k]))
    half = len(grid[key]) // 2
    return [
        *split_grid({**grid, key: grid[key][:half]}, limit),
        *split_grid({**grid, key: grid[key][half:]}, limit),
    ]


def _member_key(levels: dict[str, str], overrides: dict[str, Any]) -> str:
    return json.dumps([levels, overrides], sort_keys=True)


def _job_key(study: Study, job: StudyJob) -> str:
    levels = {k: v for k, v in job.factors.items() if k in study.levels}
    overrides = {k: v for k, v in job.factors.items() if k not in study.levels}
    return _member_key(levels, {**overrides, "seed": job.seed})


class RemoteStudy:
    """Queue the study's missing jobs as sweeps and collect each as it ends.

    Every request that queues work carries an Idempotency-Key made of this output
    folder's nonce (kept in remote.json before the first request) and what it queues:
    a study stopped between the service's answer and remote.json's update (a crash, a
    lost answer) sends the same request again when resumed and gets the same sweep or
    job back, not a second one (within the service's 24 h of keeping keys)."""

    def __init__(self, study: Study, out: Path, client: Any) -> None:
        self.study, self.out, self.client = study, out, client
        self.state_path = out / "remote.json"
        state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.ids: dict[str, str] = state.get("jobs", {})  # job label -> service job id
        self.sweeps: list[str] = state.get("sweeps", [])
        self.nonce: str = state.get("nonce") or uuid.uuid4().hex
        self.chunk = MAX_SWEEP_JOBS  # jobs per sweep; halved while the service says too many
        if "nonce" not in state:
            self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        body = {
            "url": self.client.url,
            "nonce": self.nonce,
            "sweeps": self.sweeps,
            "jobs": self.ids,
        }
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(self.state_path)

    def key(self, *what: Any) -> str:
        """The Idempotency-Key of the request that queues `what` from this folder."""
        return "study-" + hashlib.sha256(json.dumps([self.nonce, *what]).encode()).hexdigest()[:40]

    def submit(self, pending: list[StudyJob]) -> None:
        """Queue what has no job id yet: each variant as sweeps (its grid and seeds cut to
        the size the service takes) whose jobs are all still to queue, single jobs for the
        rest (a resumed study missing a few). A full queue (429) defers the rest to the
        next round, after jobs have left the queue; a sweep over the service's per-request
        limit is cut smaller."""
        from aimc_client import InvalidError, RateLimitError

        todo = {j.label: j for j in pending if j.label not in self.ids}
        by_key = {_job_key(self.study, j): j for j in todo.values()}
        try:
            for part in self.study.parts:
                grid = {**part.grid, "seed": self.study.seeds}
                for piece in split_grid(grid, self.chunk):
                    keys = [
                        _member_key(part.levels, dict(zip(piece, values, strict=True)))
                        for values in itertools.product(*piece.values())
                    ]
                    if not all(k in by_key and by_key[k].label in todo for k in keys):
                        continue
                    name = self.study.name + (f" {part.variant}" if part.variant else "")
                    key = self.key("sweep", name, part.base, piece)  # the whole body
                    sweep = self.client.sweep(
                        part.base, piece, name=name[:100], idempotency_key=key
                    )
                    self.sweeps.append(sweep["id"])
                    for member in sweep["jobs"]:
                        job = by_key[_member_key(part.levels, member["overrides"])]
                        self.ids[job.label] = member["id"]
                        del todo[job.label]
                    self.save()
            for job in list(todo.values()):
                key = self.key("job", job.label, job.spec.normalised())  # the whole body
                made = self.client.submit(job.spec, idempotency_key=key)
                self.ids[job.label] = made["id"]
                del todo[job.label]
                self.save()
        except RateLimitError:
            return
        except InvalidError as exc:
            if exc.title != "Too many jobs" or self.chunk == 1:
                raise
            self.chunk = max(1, self.chunk // 2)
            self.submit(pending)

    def states(self, labels: list[str]) -> dict[str, str]:
        """label -> state of each job, from the sweeps (a request each) and single jobs."""
        from aimc_client import NotFoundError

        by_id = {job_id: label for label, job_id in self.ids.items() if label in labels}
        found: dict[str, str] = {}
        for sweep_id in self.sweeps:
            try:
                sweep = self.client.get_sweep(sweep_id)
            except NotFoundError:
                continue
            for member in sweep["jobs"]:
                if member["id"] in by_id:
                    found[by_id[member["id"]]] = member["state"]
        for job_id, label in by_id.items():
            if label not in found:
                try:
                    found[label] = self.client.get(job_id)["state"]
                except NotFoundError:
                    found[label] = JobState.EXPIRED
        return found

    def collect(self, job: StudyJob) -> tuple[str, float | None]:
        """Fetch an ended job's result and metric points into its run folder."""
        from aimc_client import ConflictError

        job_id = self.ids[job.label]
        info = self.client.get(job_id)
        try:
            result = self.client.result(job_id)
        except ConflictError:  # ended without a result (cancelled, or the engine raised)
            result = {"status": info["state"], "error": info.get("error"), "spec": info["spec"]}
        points = self.client.metrics(job_id)
        final = self.out / "runs" / job.label
        partial = final.with_name(job.label + PARTIAL)
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        (partial / "metrics.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
        (partial / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        commit_folder(partial, final)
        accuracy = (result.get("final") or {}).get("test_accuracy")
        return str(result["status"]), accuracy

    def step(self, waiting: dict[str, StudyJob], progress: JobsDone) -> bool:
        """One round: queue what is not queued, collect what has ended (removed from
        `waiting`); False if one of them failed."""
        ok = True
        self.submit(list(waiting.values()))
        for label, state in self.states(list(waiting)).items():
            if state == JobState.EXPIRED:  # deleted or expired before it was collected: again
                del self.ids[label]
                self.save()
            elif state in TERMINAL:
                status, accuracy = self.collect(waiting[label])
                if status != JobState.SUCCEEDED:
                    ok = False
                progress.job_done(waiting.pop(label), status, accuracy)
        return ok


def run_remote(
    remotes: list[tuple[RemoteStudy, list[StudyJob]]], poll_s: float, progress: JobsDone
) -> bool:
    """Every study's pending jobs on the service, all queued at once, collected as they end;
    False if one of them failed."""
    ok = True
    waiting = [(remote, {j.label: j for j in pending}) for remote, pending in remotes]
    while any(jobs for _, jobs in waiting):
        for remote, jobs in waiting:
            if jobs and not remote.step(jobs, progress):
                ok = False
        if any(jobs for _, jobs in waiting):
            time.sleep(poll_s)
    return ok
