"""`aimc study STUDY.yaml --out DIR`: run every job of a study, here in parallel processes or
on the service as sweeps, then write its report.

Each job ends as a folder DIR/runs/<job>/ holding result.json and metrics.jsonl (and, run
here, the engine's artifacts). The folder is written under a temporary name and renamed
when complete, so a folder with a result.json is a finished job: an interrupted study
(Ctrl-C, a lost machine) run again with the same command runs only what is missing. A
remote study remembers its job ids in DIR/remote.json, so a resumed one waits for the jobs
already queued instead of queuing them again.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import multiprocessing
import os
import shlex
import shutil
import sys
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from aimc_spec.progress import Progress, format_seconds
from aimc_spec.spec import JobSpec, SpecError
from aimc_spec.study import Study, StudyJob, StudyPlan, load_plan
from aimc_spec.study_report import read_result, summary_table, write_plan_report
from aimc_spec.sweep import MAX_SWEEP_JOBS

EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2, 3
PARTIAL = ".partial"  # suffix of a run folder being written


def _same_spec(result: dict[str, Any], spec: JobSpec) -> bool:
    """Whether a finished run was of this spec (names aside: the service names sweep jobs)."""
    ran = dict(result.get("spec") or {})
    want = json.loads(json.dumps(spec.normalised()))
    ran.pop("name", None)
    want.pop("name", None)
    return ran == want


def finished(runs_dir: Path, job: StudyJob) -> bool:
    result = read_result(runs_dir / job.label)
    return result is not None and _same_spec(result, job.spec)


def commit_folder(partial: Path, final: Path) -> None:
    """Make a completely written run folder the job's folder (a rename: all or nothing)."""
    if final.exists():
        shutil.rmtree(final)  # a run of an older version of the study
    partial.rename(final)


class StudyProgress:
    """Jobs done of the study and the ETA (from this session's pace), as a bar on a
    terminal and a line per finished job elsewhere."""

    def __init__(self, total: int, done: int) -> None:
        self.bar = Progress(sys.stderr)
        self.total, self.done, self.start_done = total, done, done
        self.start = time.perf_counter()

    def job_done(self, job: StudyJob, status: str, accuracy: float | None) -> None:
        self.done += 1
        ran = self.done - self.start_done
        elapsed = time.perf_counter() - self.start
        eta = elapsed / ran * (self.total - self.done)
        acc = f" test_accuracy {accuracy:.4f}" if accuracy is not None else ""
        text = f"{self.done}/{self.total} jobs; {job.label} {status}{acc}"
        if self.bar.tty:
            self.bar.draw(self.done / self.total, text, eta, last=self.done == self.total)
        else:
            print(f"[{text}] ETA {format_seconds(eta)}", file=sys.stderr, flush=True)


# local -------------------------------------------------------------------------------------
def _init_worker() -> None:
    """One torch thread per process: N jobs in N processes share the cores without
    oversubscribing them (set before torch is imported in the fresh process)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    import torch

    torch.set_num_threads(1)


def run_job(spec: JobSpec, runs_dir: str, label: str) -> tuple[str, float | None]:
    """Run one job through the engine into runs_dir/label (in a worker process); its
    status and final test accuracy. A spec the engine refuses (RunError) is a failed job."""
    from aimc_engine.artifacts import append_metrics_jsonl, write_run
    from aimc_engine.runner import Callbacks, RunError, run

    final = Path(runs_dir) / label
    partial = final.with_name(label + PARTIAL)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    jsonl = partial / "metrics.jsonl"
    try:
        output = run(spec, Callbacks(on_metrics=lambda m: append_metrics_jsonl(jsonl, m)))
    except RunError as exc:
        result = {"status": "failed", "error": str(exc), "spec": spec.normalised()}
        (partial / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        commit_folder(partial, final)
        return "failed", None
    write_run(partial, output.result, output.metrics, output.model, output.timeline)
    commit_folder(partial, final)
    return str(output.result["status"]), output.result["final"]["test_accuracy"]


def run_local(pending: list[tuple[StudyJob, Path]], workers: int, progress: StudyProgress) -> int:
    """The pending jobs (each with its runs folder) in `workers` spawned processes;
    EXIT_JOB_FAILED if any failed."""
    code = EXIT_OK
    context = multiprocessing.get_context("spawn")  # no forked torch state in the children
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        futures: dict[Future[tuple[str, float | None]], StudyJob] = {
            pool.submit(run_job, job.spec, str(runs_dir), job.label): job
            for job, runs_dir in pending
        }
        try:
            remaining: Iterable[Future[tuple[str, float | None]]] = futures
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in done:
                    job = futures[future]
                    try:
                        status, accuracy = future.result()
                    except Exception as exc:  # a crash in the job: report, carry on
                        status, accuracy = f"crashed ({type(exc).__name__}: {exc})", None
                    if status != "succeeded":
                        code = EXIT_JOB_FAILED
                    progress.job_done(job, status, accuracy)
        except KeyboardInterrupt:
            # stop the jobs in flight now (their folders stay .partial and are removed on
            # resume); ProcessPoolExecutor has no public way to do so before Python 3.14
            for process in list(pool._processes.values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return code


# remote ------------------------------------------------------------------------------------
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
                    found[label] = "expired"
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

    def step(self, waiting: dict[str, StudyJob], progress: StudyProgress) -> int:
        """One round: queue what is not queued, collect what has ended (removed from
        `waiting`); EXIT_JOB_FAILED if one of them failed."""
        from aimc_spec.vocabulary import TERMINAL

        code = EXIT_OK
        self.submit(list(waiting.values()))
        for label, state in self.states(list(waiting)).items():
            if state == "expired":  # deleted or expired before it was collected: again
                del self.ids[label]
                self.save()
            elif state in TERMINAL:
                status, accuracy = self.collect(waiting[label])
                if status != "succeeded":
                    code = EXIT_JOB_FAILED
                progress.job_done(waiting.pop(label), status, accuracy)
        return code


def run_remote(
    remotes: list[tuple[RemoteStudy, list[StudyJob]]], poll_s: float, progress: StudyProgress
) -> int:
    """Every study's pending jobs on the service, all queued at once, collected as they end."""
    code = EXIT_OK
    waiting = [(remote, {j.label: j for j in pending}) for remote, pending in remotes]
    while any(jobs for _, jobs in waiting):
        for remote, jobs in waiting:
            if jobs and remote.step(jobs, progress) != EXIT_OK:
                code = EXIT_JOB_FAILED
        if any(jobs for _, jobs in waiting):
            time.sleep(poll_s)
    return code


# the command -------------------------------------------------------------------------------
def cmd_study(args: argparse.Namespace) -> int:
    try:
        plan = load_plan(args.study, quick=args.quick)
    except SpecError as exc:
        for loc, msg in exc.problems:
            print(f"{loc}: {msg}" if loc else msg, file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.jobs < 1:
        print("--jobs: must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.out)
    pending: list[tuple[StudyJob, Path]] = []
    by_study: list[tuple[Study, list[StudyJob]]] = []
    for study in plan.studies:
        runs_dir = plan.folder(out, study) / "runs"
        runs_dir.mkdir(parents=True, exist_ok=True)
        for stale in runs_dir.glob("*" + PARTIAL):  # left by an interrupted run
            shutil.rmtree(stale)
        todo = [j for j in study.jobs if not finished(runs_dir, j)]
        pending += [(j, runs_dir) for j in todo]
        by_study.append((study, todo))
    done = plan.jobs - len(pending)
    where = "on the service" if args.remote else f"in {min(args.jobs, len(pending) or 1)} processes"
    parts = f" in {len(plan.studies)} parts" if plan.parted else ""
    groups = sum(len(s.groups) for s in plan.studies)
    print(
        f"study {plan.file.name}: {plan.jobs} jobs in {groups} groups{parts}; "
        f"{done} already done, {len(pending)} to run {where}",
        file=sys.stderr,
    )
    progress = StudyProgress(plan.jobs, done)
    try:
        code = EXIT_OK
        if pending and args.remote:
            code = _run_remote(plan, out, args, by_study, progress)
        elif pending:
            code = run_local(pending, min(args.jobs, len(pending)), progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; run the same command again to resume ({out})", file=sys.stderr)
        return 130
    if code == EXIT_SERVICE:
        return code
    flags = [*(["--quick"] if args.quick else []), *(["--remote"] if args.remote else [])]
    jobs = ["--jobs", str(args.jobs)] if not args.remote else []
    report = ["--report", args.report] if args.report else []
    command = shlex.join(["aimc", "study", args.study, *flags, "--out", args.out, *jobs, *report])
    found = write_plan_report(plan, out, command, Path(args.report) if args.report else None)
    for study, records in found:
        metric = study.file.comparisons[0].metric if study.file.comparisons else "test_accuracy"
        if plan.parted:
            print(study.name)
        print(summary_table(study, records, metric))
    print(f"report: {out / 'report.md'}" + (f" and {args.report}" if args.report else ""))
    return code


def _run_remote(
    plan: StudyPlan,
    out: Path,
    args: argparse.Namespace,
    by_study: list[tuple[Study, list[StudyJob]]],
    progress: StudyProgress,
) -> int:
    from aimc_client import ApiError, Client, InvalidError

    try:
        with Client(args.url, args.api_key) as client:
            remotes = [
                (RemoteStudy(study, plan.folder(out, study), client), todo)
                for study, todo in by_study
                if todo
            ]
            return run_remote(remotes, args.poll, progress)
    except InvalidError as exc:
        print(f"{exc.status} {exc.title}", file=sys.stderr)
        for loc, msg in exc.problems:
            print(f"{loc}: {msg}" if loc else msg, file=sys.stderr)
        return EXIT_SERVICE
    except ApiError as exc:
        print(f"aimc: {exc}; run the same command again to resume", file=sys.stderr)
        return EXIT_SERVICE


def add_study_command(sub: Any) -> None:
    text = (
        "run a study (a base spec x grid x variants x seeds), here or on the service, "
        "and write its report with confidence intervals; resumes where it stopped"
    )
    p = sub.add_parser("study", help=text, description=text)
    p.add_argument("study", help="the study file (YAML or JSON)")
    p.add_argument("--out", required=True, help="folder for runs/, report.md, CSVs, figures")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel processes here (default: one per core)",
    )
    p.add_argument("--quick", action="store_true", help="the study's `quick:` form (CI)")
    p.add_argument(
        "--report",
        help="also write the report here (e.g. docs/reproduction.md), its figures copied "
        "beside it into <name>-figures/",
    )
    p.add_argument("--remote", action="store_true", help="run the jobs on the service as sweeps")
    p.add_argument("--url", help="the service (default $AIMC_URL, else http://127.0.0.1:8000)")
    p.add_argument("--api-key", help="your API key (default $AIMC_API_KEY)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between checks (remote)")
    p.set_defaults(func=cmd_study)
