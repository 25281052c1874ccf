"""`aimc study STUDY.yaml --out DIR`: run every job of a study, here in parallel processes or
on the service as sweeps, then write its report.

Each job ends as a folder DIR/runs/<job>/ (aimc_study.runs), so an interrupted study
(Ctrl-C, a lost machine) run again with the same command runs only what is missing. The
study itself (format, remote running, report) is aimc_study; this module adds what
needs a terminal or the engine: the progress bar and the local worker processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from aimc_cli.progress import Progress, format_seconds
from aimc_cli.remote.common import explain
from aimc_engine.threads import cores_share
from aimc_spec.slots import slots_for
from aimc_spec.spec import JobSpec, SpecError
from aimc_spec.vocabulary import JobState
from aimc_study.plan import Study, StudyJob, StudyPlan, load_plan
from aimc_study.remote import RemoteStudy, run_remote
from aimc_study.report import write_plan_report
from aimc_study.runs import PARTIAL, commit_folder, finished
from aimc_study.tables import summary_table

EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2, 3


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
STOP_WAIT_S = 5.0  # how long a job may take to end on SIGTERM before it is killed


def run_job(spec: JobSpec, runs_dir: str, label: str, cores: int) -> tuple[str, float | None]:
    """Run one job through the engine into runs_dir/label (in a worker process) on at
    most `cores` cores, its share of the machine (the engine's thread policy picks its
    threads within it, aimc_engine/threads.py); its status and final test accuracy. A
    spec the engine refuses (RunError) is a failed job."""
    import torch

    from aimc_engine.artifacts import append_metrics_jsonl, write_run
    from aimc_engine.runner import Callbacks, RunError, run

    torch.set_num_threads(cores)

    final = Path(runs_dir) / label
    partial = final.with_name(label + PARTIAL)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    jsonl = partial / "metrics.jsonl"
    try:
        output = run(spec, Callbacks(on_metrics=lambda m: append_metrics_jsonl(jsonl, m)))
    except RunError as exc:
        result = {"status": JobState.FAILED, "error": str(exc), "spec": spec.normalised()}
        (partial / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        commit_folder(partial, final)
        return JobState.FAILED, None
    write_run(partial, output.result, output.metrics, output.model, output.timeline)
    commit_folder(partial, final)
    return str(output.result["status"]), output.result["final"]["test_accuracy"]


def run_local(pending: list[tuple[StudyJob, Path]], workers: int, progress: StudyProgress) -> int:
    """The pending jobs (each with its runs folder) in `workers` spawned processes, never
    more processes at once than `workers`: a job whose stages run as processes takes one
    slot per stage (aimc_spec.slots, as on a worker host), so a wall-clock comparison is
    not run beside other jobs on the same cores. EXIT_JOB_FAILED if any failed."""
    code = EXIT_OK
    waiting = list(pending)
    context = multiprocessing.get_context("spawn")  # no forked torch state in the children
    share = cores_share(workers)  # each slot's cores: N jobs never oversubscribe them
    # not `with`: after a Ctrl-C the pool must not be waited for (its shutdown joins a
    # manager thread that a killed worker can leave blocked), only its workers ended
    pool = ProcessPoolExecutor(workers, mp_context=context)
    running: dict[Future[tuple[str, float | None]], tuple[StudyJob, int]] = {}

    def start_what_fits() -> None:
        used = sum(slots for _, slots in running.values())
        while waiting:
            job, runs_dir = waiting[0]
            need = min(slots_for(job.spec), workers)
            if running and used + need > workers:
                return
            waiting.pop(0)
            future = pool.submit(run_job, job.spec, str(runs_dir), job.label, need * share)
            running[future] = (job, need)
            used += need

    try:
        start_what_fits()
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                job, _ = running.pop(future)
                try:
                    status, accuracy = future.result()
                except Exception as exc:  # a crash in the job: report, carry on
                    status, accuracy = f"crashed ({type(exc).__name__}: {exc})", None
                if status != JobState.SUCCEEDED:
                    code = EXIT_JOB_FAILED
                progress.job_done(job, status, accuracy)
            start_what_fits()
    except KeyboardInterrupt:
        # stop the jobs in flight now (their folders stay .partial and are removed on
        # resume); ProcessPoolExecutor has no public way to do so before Python 3.14.
        # Each is waited for, and killed if SIGTERM has not ended it, so that the
        # pool's shutdown finds only dead workers and returns at once.
        processes = list(pool._processes.values())
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(STOP_WAIT_S)
            if process.is_alive():
                process.kill()
                process.join()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
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
        sys.stderr.flush()
        # the jobs are ended; exit without the interpreter's joins of the pool's threads,
        # which a killed worker can leave waiting for ever
        os._exit(130)
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
            return EXIT_OK if run_remote(remotes, args.poll, progress) else EXIT_JOB_FAILED
    except InvalidError as exc:
        print(f"{exc.status} {exc.title}", file=sys.stderr)
        for loc, msg in exc.problems:
            print(f"{loc}: {msg}" if loc else msg, file=sys.stderr)
        return EXIT_SERVICE
    except ApiError as exc:
        print(explain(exc, args), file=sys.stderr)
        print("aimc: run the same command again to resume", file=sys.stderr)
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
        default=cores_share(),
        help="parallel processes here (default: one per core this process may use)",
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
