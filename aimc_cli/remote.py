"""The service commands of `aimc` (submit, jobs, status, watch, metrics, cancel, download,
sweep, compare, datasets), all on aimc_client.Client.

Tables for people, `--json` for scripts. Exit codes: 0 done (and, where a job is waited
for, it succeeded); 1 a job failed or was cancelled; 2 invalid input (spec, grid, file:
one `field: message` line per fault); 3 the service refused or could not be reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import yaml

from aimc_client import ApiError, Client, InvalidError
from aimc_spec.comparison import (
    Run,
    final_metrics,
    format_grouped_table,
    format_table,
    group_runs,
    plot_grouped,
    plot_overlay,
    text_table,
)
from aimc_spec.progress import Progress, format_seconds
from aimc_spec.spec import SpecError
from aimc_spec.vocabulary import TERMINAL

EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2, 3
Command = Callable[[argparse.Namespace, Client], int]


def _problems(problems: list[tuple[str, str]]) -> None:
    for loc, msg in problems:
        print(f"{loc}: {msg}" if loc else msg, file=sys.stderr)


def remote(command: Command) -> Callable[[argparse.Namespace], int]:
    """Give the command a Client and turn errors into messages and exit codes."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            with Client(args.url, args.api_key) as client:
                return command(args, client)
        except SpecError as exc:
            _problems(exc.problems)
            return EXIT_BAD_INPUT
        except InvalidError as exc:
            print(f"{exc.status} {exc.title}", file=sys.stderr)
            _problems(exc.problems)
            return EXIT_BAD_INPUT
        except ApiError as exc:
            print(f"aimc: {exc}", file=sys.stderr)
            return EXIT_SERVICE
        except BrokenPipeError:
            raise  # stdout's reader left: main() ends quietly
        except OSError as exc:  # a file to read or write
            print(f"aimc: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(
                "\ninterrupted; the service carries on (aimc status / aimc cancel)", file=sys.stderr
            )
            return 130

    return run


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _exit_for(state: str) -> int:
    return EXIT_OK if state == "succeeded" else EXIT_JOB_FAILED


def _summary(job: dict[str, Any]) -> str:
    """One line on a job's outcome: state, final metrics or its error."""
    m = job.get("latest_metrics") or {}
    parts = [f"job {job['id']} {job['state']}"]
    if m:
        parts.append(f"test_loss {m['test_loss']:.4f} test_accuracy {m['test_accuracy']:.4f}")
    if job.get("error"):
        parts.append(f"error: {job['error']}")
    return "; ".join(parts)


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
        _print_json(job) if args.json else print(f"queued job {job['id']} ({job['name']})")
        return EXIT_OK
    if not args.json:
        print(f"queued job {job['id']} ({job['name']}); waiting (Ctrl-C leaves it running)")
    job = client.wait(job["id"], on_progress=None if args.json else JobProgress(), poll_s=args.poll)
    _print_json(job) if args.json else print(_summary(job))
    return _exit_for(job["state"])


@remote
def cmd_jobs(args: argparse.Namespace, client: Client) -> int:
    jobs = []
    for job in client.jobs(state=args.state, name=args.name):
        jobs.append(job)
        if len(jobs) >= args.limit:
            break
    if args.json:
        _print_json(jobs)
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
                _when(job["created"]),
            ]
        )
    print(text_table(["id", "name", "state", "progress", "test_accuracy", "created"], rows))
    return EXIT_OK


@remote
def cmd_status(args: argparse.Namespace, client: Client) -> int:
    job = client.get(args.id)
    if args.json:
        _print_json(job)
        return EXIT_OK
    eta = job.get("eta_seconds")
    fields = [
        ("id", job["id"]),
        ("name", job["name"]),
        ("state", job["state"]),
        ("progress", f"{job['progress']:.1%}"),
        ("eta", format_seconds(eta) if eta is not None else "-"),
        ("attempts", job["attempts"]),
        ("created", _when(job["created"])),
        ("started", _when(job.get("started"))),
        ("finished", _when(job.get("finished"))),
    ]
    if job.get("error"):
        fields.append(("error", job["error"]))
    for key, value in (job.get("latest_metrics") or {}).items():
        fields.append((key, value))
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key.ljust(width)}  {value}")
    return EXIT_OK


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
    return _exit_for(state)


@remote
def cmd_metrics(args: argparse.Namespace, client: Client) -> int:
    if args.csv:
        print(client.metrics_csv(args.id, since=args.since), end="")
        return EXIT_OK
    points = client.metrics(args.id, since=args.since)
    if args.json:
        _print_json(points)
        return EXIT_OK
    columns = ["step", "samples", "train_loss", "test_loss", "test_accuracy", "sim_time_ns"]
    rows = [[_cell(p.get(c)) for c in columns] for p in points]
    print(text_table(columns, rows))
    return EXIT_OK


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "-" if value is None else str(value)


@remote
def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    job = client.cancel(args.id)
    _print_json(job) if args.json else print(f"job {job['id']} {job['state']}")
    return EXIT_OK


@remote
def cmd_download(args: argparse.Namespace, client: Client) -> int:
    out = Path(args.out or f"aimc-{args.id}")
    paths = client.download(args.id, out, args.name or None)
    if args.json:
        _print_json([str(p) for p in paths])
    else:
        for path in paths:
            print(path)
    return EXIT_OK


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """--grid KEY=V1,V2 ... -> {KEY: [V1, V2]}; each value read as YAML (300 -> int)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise SpecError(
                [("--grid", f"{item!r}: write KEY=V1,V2 (e.g. pipeline.schedule=gpipe,async)")]
            )
        try:
            grid[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
        except yaml.YAMLError as exc:
            raise SpecError([("--grid", f"{item!r}: {exc}")]) from None
    return grid


def _sweep_rows(sweep: dict[str, Any]) -> str:
    keys = list(sweep["grid"])
    rows = [
        {"job": j["id"], "state": j["state"], **{k: j["overrides"][k] for k in keys}, **j["final"]}
        for j in sweep["jobs"]
    ]
    return format_table(rows, ["job", "state", *keys])


@remote
def cmd_sweep(args: argparse.Namespace, client: Client) -> int:
    sweep = client.sweep(args.spec, parse_grid(args.grid), name=args.name)
    if not args.wait:
        if args.json:
            _print_json(sweep)
        else:
            print(f"sweep {sweep['id']}: {len(sweep['jobs'])} jobs queued")
            print(_sweep_rows(sweep))
        return EXIT_OK
    last: dict[str, int] = {}

    def report(s: dict[str, Any]) -> None:
        nonlocal last
        if s["states"] != last and not args.json:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(s["states"].items()))
            print(f"sweep {s['id']}: {counts}", file=sys.stderr)
        last = s["states"]

    sweep = client.wait_sweep(sweep["id"], on_progress=report, poll_s=args.poll)
    plot = Path(args.plot or f"sweep-{sweep['id']}.png")
    plot.write_bytes(client.sweep_plot(sweep["id"]))
    if args.json:
        _print_json({**sweep, "plot_file": str(plot)})
    else:
        print(_sweep_rows(sweep))
        print(f"overlay plot: {plot}")
    return EXIT_OK if all(j["state"] == "succeeded" for j in sweep["jobs"]) else EXIT_JOB_FAILED


@remote
def cmd_compare(args: argparse.Namespace, client: Client) -> int:
    ids: list[str] = []
    for ident in args.ids:  # a sweep id stands for all its jobs
        ids += (
            [j["id"] for j in client.get_sweep(ident)["jobs"]]
            if ident.startswith("sw_")
            else [ident]
        )
    if args.group_by is not None or args.group_seeds:
        return _compare_groups(args, client, ids)
    rows, series = [], []
    for job_id in ids:
        job = client.get(job_id)
        points = client.metrics(job_id)
        rows.append(
            {"job": job_id, "name": job["name"], "state": job["state"], **final_metrics(points)}
        )
        series.append((f"{job['name']} ({job_id[:8]})", points))
    plot = Path(args.plot)
    plot.write_bytes(plot_overlay(series, f"{len(ids)} jobs"))
    if args.json:
        _print_json({"jobs": rows, "plot_file": str(plot)})
    else:
        print(format_table(rows, ["job", "name", "state"]))
        print(f"overlay plot: {plot}")
    return EXIT_OK


def _compare_groups(args: argparse.Namespace, client: Client, ids: list[str]) -> int:
    """Jobs pooled into groups (by --group-by spec paths, or replicates differing only in
    seed): final metrics as mean ± 95% CI, curves as means with CI bands."""
    runs = [Run(job_id, client.get(job_id)["spec"], client.metrics(job_id)) for job_id in ids]
    by = [k.strip() for k in args.group_by.split(",") if k.strip()] if args.group_by else None
    try:
        groups = group_runs(runs, by)
    except KeyError as exc:
        raise SpecError([("--group-by", str(exc.args[0]))]) from None
    plot = Path(args.plot)
    series = [(label, [r.points for r in members]) for label, members in groups]
    plot.write_bytes(plot_grouped(series, f"{len(ids)} jobs in {len(groups)} groups"))
    table, rows = format_grouped_table(groups)
    if args.json:
        _print_json({"groups": rows, "plot_file": str(plot)})
    else:
        print(table)
        print(f"plot (mean and 95% CI band per group): {plot}")
    return EXIT_OK


def _dataset_rows(datasets: list[dict[str, Any]]) -> str:
    rows = [
        [
            d["id"],
            d["name"],
            str(d["n_train"]),
            str(d["n_test"]),
            "x".join(map(str, d["sample_shape"])),
            str(d["classes"]),
            _when(d["created"]),
        ]
        for d in datasets
    ]
    return text_table(["id", "name", "n_train", "n_test", "sample", "classes", "uploaded"], rows)


@remote
def cmd_datasets(args: argparse.Namespace, client: Client) -> int:
    result: Any
    if args.action == "list":
        result = client.datasets()
        text = _dataset_rows(result)
    elif not args.file:
        what = (
            ("FILE", "the .npz file to send")
            if args.action == "upload"
            else ("ID", "the dataset id")
        )
        raise SpecError([(what[0], f"datasets {args.action} needs {what[1]}")])
    elif args.action == "upload":
        result = client.upload_dataset(args.file, name=args.name)
        text = _dataset_rows([result])
        text += f"\nuse it with  dataset: {{name: uploaded, id: {result['id']}}}"
    else:
        client.delete_dataset(args.file)
        result = {"deleted": args.file}
        text = f"deleted {args.file}"
    _print_json(result) if args.json else print(text)
    return EXIT_OK


def data_dir(given: str | None) -> Path:
    """Where `aimc serve` keeps its data and admin key: --data-dir, else $AIMC_DATA_DIR
    (the service's own setting, so two servers with different ones never share a
    folder), else ~/.aimc."""
    return Path(given or os.environ.get("AIMC_DATA_DIR") or "~/.aimc").expanduser()


def admin_key(args: argparse.Namespace) -> str | None:
    """--admin-key, else $AIMC_ADMIN_KEY, else the key `aimc serve` keeps in its data dir."""
    if args.admin_key or os.environ.get("AIMC_ADMIN_KEY"):
        return str(args.admin_key or os.environ["AIMC_ADMIN_KEY"])
    kept = data_dir(args.data_dir) / "admin_key"
    return kept.read_text().strip() if kept.is_file() else None


def cmd_users(args: argparse.Namespace) -> int:
    """Manage users with the admin key (no user key involved, so not `remote`)."""
    key = admin_key(args)
    if key is None:
        print(
            "aimc users: no admin key; pass --admin-key, set AIMC_ADMIN_KEY, or run on the "
            "machine of `aimc serve` (it keeps the key in --data-dir)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if args.action != "list" and not args.name:
        print(f"aimc users {args.action}: name the user (NAME or id)", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.api_key = key
    return remote(_users)(args)


def _find_user(client: Client, name_or_id: str) -> dict[str, Any] | None:
    return next((u for u in client.users() if name_or_id in (u["name"], u["id"])), None)


def _users(args: argparse.Namespace, client: Client) -> int:
    if args.action == "create":
        user = client.create_user(args.name)
    elif args.action == "list":
        users = client.users()
        if args.json:
            _print_json(users)
        else:
            rows = [[u["id"], u["name"], _when(u["created"])] for u in users]
            print(text_table(["id", "name", "created"], rows))
        return EXIT_OK
    else:
        found = _find_user(client, args.name)
        if found is None:
            print(f"aimc users {args.action}: no user {args.name!r}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if args.action == "delete":
            client.delete_user(found["id"])
            if args.json:
                _print_json({"deleted": found["id"]})
            else:
                print(f"deleted user {found['name']} ({found['id']}); their key is revoked")
            return EXIT_OK
        user = client.rotate_key(found["id"])
    if args.json:
        _print_json(user)
    else:
        print(f"user {user['name']} ({user['id']}); their API key, shown once:")
        print(f"export AIMC_API_KEY={user['api_key']}")
    return EXIT_OK


def add_remote_commands(sub: Any) -> None:
    """The service commands, each with --url, --api-key and --json."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the service (default $AIMC_URL, else http://127.0.0.1:8000)")
    common.add_argument("--api-key", help="your API key (default $AIMC_API_KEY)")
    common.add_argument("--json", action="store_true", help="JSON output for scripts")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

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
    p.add_argument("--since", type=int, default=-1, help="only points with step > SINCE")
    p = add("cancel", cmd_cancel, "cancel a job (a queued one never starts)")
    p.add_argument("id")
    p = add("download", cmd_download, "save a job's artifacts (weights, metrics, plots)")
    p.add_argument("id")
    p.add_argument("--out", help="directory (default aimc-ID)")
    p.add_argument("--name", action="append", help="only this artifact (repeatable)")
    p = add("sweep", cmd_sweep, "one job per combination of --grid values applied to SPEC")
    p.add_argument("spec", help="the base YAML or JSON job spec")
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="a dotted spec path and its values, e.g. pipeline.schedule=gpipe,async (repeatable)",
    )
    p.add_argument("--name", default="sweep", help="names the sweep and its jobs")
    p.add_argument(
        "--wait", action="store_true", help="wait for every job, then print the comparison"
    )
    p.add_argument("--plot", help="where --wait saves the overlay plot (default sweep-ID.png)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between checks")
    p = add(
        "compare", cmd_compare, "final metrics of jobs side by side and their loss curves overlaid"
    )
    p.add_argument(
        "ids", nargs="+", metavar="ID", help="job ids, or a sweep id (sw_...) for all its jobs"
    )
    p.add_argument("--plot", default="compare.png", help="overlay plot file (default compare.png)")
    p.add_argument(
        "--group-seeds",
        action="store_true",
        help="pool jobs whose specs differ only in seed: mean ± 95%% CI over them",
    )
    p.add_argument(
        "--group-by",
        metavar="KEY[,KEY]",
        help="pool jobs by the values of these dotted spec paths (e.g. pipeline.schedule)",
    )
    p = sub.add_parser(
        "users",
        help="create, list or delete users, or rotate a user's API key (needs the admin key)",
        description="Manage users with the admin key: create NAME (names are unique), list, "
        "rotate NAME (a new key; the old one is refused at once), delete NAME.",
    )
    p.add_argument("action", choices=["create", "list", "rotate", "delete"])
    p.add_argument("name", nargs="?", help="create: who the key is for; rotate, delete: name or id")
    p.add_argument("--url", help="the service (default $AIMC_URL, else http://127.0.0.1:8000)")
    p.add_argument("--admin-key", help="default $AIMC_ADMIN_KEY, else DATA_DIR/admin_key")
    p.add_argument(
        "--data-dir", help="where `aimc serve` keeps its key (default $AIMC_DATA_DIR, else ~/.aimc)"
    )
    p.add_argument("--json", action="store_true", help="JSON output for scripts")
    p.set_defaults(func=cmd_users)
    p = add("datasets", cmd_datasets, "upload, list or delete your .npz datasets")
    p.add_argument("action", choices=["upload", "list", "delete"])
    p.add_argument("file", nargs="?", help="upload: the .npz file; delete: the dataset id")
    p.add_argument("--name", help="upload: a name (default the file's stem)")
