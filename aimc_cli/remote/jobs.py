"""The commands on one job: submit (and wait), jobs, status, watch, metrics, cancel,
download; and the live view of a job being waited for."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from aimc_cli.progress import Progress, format_seconds
from aimc_cli.remote.common import (
    EXIT_OK,
    AddCommand,
    exit_for,
    print_json,
    remote,
    when,
)
from aimc_client import Client
from aimc_spec.energy import format_energy
from aimc_spec.vocabulary import TERMINAL, JobState
from aimc_study.comparison import text_table


def _summary(job: dict[str, Any]) -> str:
    """One line on a job's outcome: state, final metrics or its error."""
    m = job.get("latest_metrics") or {}
    parts = [f"job {job['id']} {job['state']}"]
    if m:
        parts.append(f"test_loss {m['test_loss']:.4f} test_accuracy {m['test_accuracy']:.4f}")
    if job.get("error"):
        parts.append(f"error: {job['error']}")
    return "; ".join(parts)


# a running job reads its cancel flag every half second (worker), so it ends within a
# second or two; the wait is bounded in case no worker is there to stop it
CANCEL_WAIT_S = 30.0
CANCEL_POLL_S = 0.25


class JobProgress:
    """The live view of a waited-for job: a bar with loss, accuracy and ETA on a terminal;
    a line per state change and per new metric point elsewhere."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr  # looked up now: tests swap sys.stderr
        self.bar = Progress(self.stream, tty=tty)
        self.state = ""
        self.step = -1

    def __call__(self, job: dict[str, Any]) -> None:
        m = job.get("latest_metrics") or {}
        if not self.bar.tty:
            changed = job["state"] != self.state
            ended = job["state"] in TERMINAL
            if changed and not ended:
                print(f"state {job['state']}", file=self.stream)
            if m and m["step"] != self.step:
                self.bar.on_metrics(m)
            if changed and ended:  # after the last point, as the job wrote them
                print(f"state {job['state']}", file=self.stream)
        else:
            text = job["state"]
            if m:
                text += f" loss {m['train_loss']:.4f} acc {m['test_accuracy']:.3f}"
            self.bar.draw(job["progress"], text, job.get("eta_seconds"))
            if job["state"] in TERMINAL:
                self.stream.write("\n")
        self.state, self.step = job["state"], m.get("step", self.step)


@remote
def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    job = client.submit(args.spec)
    if not args.wait:
        print_json(job) if args.json else print(f"queued job {job['id']} ({job['name']})")
        return EXIT_OK
    if not args.json:
        print(f"queued job {job['id']} ({job['name']}); waiting (Ctrl-C leaves it running)")
    job = client.wait(job["id"], on_progress=None if args.json else JobProgress(), poll_s=args.poll)
    print_json(job) if args.json else print(_summary(job))
    return exit_for(job["state"])


@remote
def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    jobs = []
    for job in client.jobs(state=args.state, name=args.name):
        jobs.append(job)
        if len(jobs) >= args.limit:
            break
    if args.json:
        print_json(jobs)
        return EXIT_OK
    rows = []
    for job in jobs:
        m = job.get("latest_metrics") or {}
        acc = f"{m['test_accuracy']:.4f}" if m else "-"
        rows.append(
            [
                job["id"],
                job["name"][:40],
                job["state"],
                f"{job['progress']:.0%}",
                acc,
                when(job["created"]),
            ]
        )
    print(text_table(["id", "name", "state", "progress", "test_accuracy", "created"], rows))
    return EXIT_OK


@remote
def cmd_status(args: argparse.Namespace, client: Client) -> int:
    job = client.get(args.id)
    if args.json:
        print_json(job)
        return EXIT_OK
    eta = job.get("eta_seconds")
    fields = [
        ("id", job["id"]),
        ("name", job["name"]),
        ("state", job["state"]),
        ("progress", f"{job['progress']:.1%}"),
        ("eta", format_seconds(eta) if eta is not None else "-"),
        ("attempts", job["attempts"]),
        ("created", when(job["created"])),
        ("started", when(job.get("started"))),
        ("finished", when(job.get("finished"))),
    ]
    if job.get("error"):
        fields.append(("error", job["error"]))
    for key, value in (job.get("latest_metrics") or {}).items():
        shown = format_energy(value) if key == "energy_pj" and value is not None else value
        fields.append(("energy_so_far" if key == "energy_pj" else key, shown))
    if job["state"] == JobState.SUCCEEDED:
        fields += energy_fields(client.result(args.id).get("energy"))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    return EXIT_OK


def energy_fields(energy: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """A finished job's energy estimate as status lines (docs/energy.md)."""
    if not energy:
        return []
    kinds = ", ".join(
        f"{kind} {format_energy(pj)}" for kind, pj in energy["by_kind_pj"].items() if pj
    )
    fields: list[tuple[str, Any]] = [
        ("energy", f"{format_energy(energy['total_pj'])} ({kinds})"),
        ("energy/sample", format_energy(energy["per_sample_pj"] or 0.0)),
    ]
    if energy.get("digital_over_analog") is not None:
        fields.append(("digital/analog", f"{energy['digital_over_analog']:.3g}x (GPU estimate)"))
    if energy.get("not_counted"):
        fields.append(("not_counted", ", ".join(energy["not_counted"])))
    target = energy.get("to_target")
    if target:
        reached = (
            f"{format_energy(target['energy_pj'])} at step {target['step']}"
            if target["reached"]
            else "not reached"
        )
        fields.append((f"to {target['target_accuracy']:.0%}", reached))
    return fields


@remote
def cmd_watch(args: argparse.Namespace, client: Client) -> int:
    state = client.get(args.id)["state"]
    lines = Progress(sys.stdout, tty=False)
    for event in client.stream(args.id):
        if args.json:
            print(json.dumps({"event": event.kind, "data": event.data}), flush=True)
        elif event.kind == "state":
            print(f"state {event.data['state']}", flush=True)
        else:
            lines.on_metrics(event.data)
        if event.kind == "state":
            state = event.data["state"]
    return exit_for(state)


@remote
def cmd_metrics(args: argparse.Namespace, client: Client) -> int:
    if args.csv:
        print(client.metrics_csv(args.id, since=args.since), end="")
        return EXIT_OK
    points = client.metrics(args.id, since=args.since)
    if args.json:
        print_json(points)
        return EXIT_OK
    columns = ["step", "samples", "train_loss", "test_loss", "test_accuracy", "sim_time_ns"]
    rows = [[_cell(p.get(c)) for c in columns] for p in points]
    print(text_table(columns, rows))
    return EXIT_OK


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)


@remote
def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    """Cancel, then wait (up to --wait seconds) for the state the job reaches: a running
    job stops at its next check, so the answer to the cancel still says `running`."""
    job = client.cancel(args.id)
    if job["state"] not in TERMINAL and args.wait > 0:
        try:
            job = client.wait(args.id, poll_s=CANCEL_POLL_S, timeout_s=args.wait)
        except TimeoutError:
            job = client.get(args.id)
    if args.json:
        print_json(job)
    elif job["state"] in TERMINAL:
        print(f"job {job['id']} {job['state']}")
    else:
        print(
            f"job {job['id']} {job['state']}: cancel requested; it stops at its next check "
            f"(aimc status {job['id']})"
        )
    return EXIT_OK


@remote
def cmd_download(args: argparse.Namespace, client: Client) -> int:
    out = Path(args.out or f"aimc-{args.id}")
    paths = client.download(args.id, out, args.name or None)
    if args.json:
        print_json([str(p) for p in paths])
    else:
        for path in paths:
            print(path)
    return EXIT_OK


def add_job_commands(add: AddCommand) -> None:
    p = add("submit", cmd_submit, "queue a job spec on the service")
    p.add_argument("spec", help="YAML or JSON job spec (validated here first)")
    p.add_argument(
        "--wait",
        action="store_true",
        help="show progress until the job ends; exit 0 only if it succeeded",
    )
    p.add_argument("--poll", type=float, default=1.0, help="seconds between progress checks")
    p = add("jobs", cmd_jobs, "list your jobs, newest first")
    p.add_argument("--state", help="only jobs in this state")
    p.add_argument("--name", help="only jobs with this name")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p = add("status", cmd_status, "one job: state, progress, ETA, latest metrics")
    p.add_argument("id")
    p = add("watch", cmd_watch, "follow a job's states and metric points live until it ends")
    p.add_argument("id")
    p = add("metrics", cmd_metrics, "a job's metric points")
    p.add_argument("id")
    p.add_argument("--csv", action="store_true", help="CSV (the columns of metrics.csv)")
    p.add_argument(
        "--since",
        type=int,
        default=-1,
        help="only points with step > SINCE (exclusive: --since 100 starts after step 100; "
        "default -1, every point)",
    )
    p = add("cancel", cmd_cancel, "cancel a job (a queued one never starts) and print its end")
    p.add_argument("id")
    p.add_argument(
        "--wait",
        type=float,
        default=CANCEL_WAIT_S,
        metavar="SECONDS",
        help=f"how long to wait for a running job to stop (default {CANCEL_WAIT_S:g}; 0: not)",
    )
    p = add("download", cmd_download, "save a job's artifacts (weights, metrics, plots)")
    p.add_argument("id")
    p.add_argument("--out", help="directory (default aimc-ID)")
    p.add_argument("--name", action="append", help="only this artifact (repeatable)")
