"""Many jobs at once: `aimc sweep` (a grid of overrides on one spec) and `aimc compare`
(final metrics side by side, curves overlaid, or pooled into groups over seeds)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from aimc_cli.remote.common import EXIT_JOB_FAILED, EXIT_OK, AddCommand, print_json, remote
from aimc_client import Client
from aimc_spec.spec import SpecError
from aimc_spec.vocabulary import JobState
from aimc_study.comparison import (
    Run,
    final_metrics,
    format_grouped_table,
    format_table,
    group_runs,
)
from aimc_study.plots import plot_grouped, plot_overlay


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
            print_json(sweep)
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
    plot = plot_path(args, f"sweep-{sweep['id']}.png")
    plot.write_bytes(client.sweep_plot(sweep["id"]))
    if args.json:
        print_json({**sweep, "plot_file": str(plot)})
    else:
        print(_sweep_rows(sweep))
        print(f"overlay plot: {plot}")
    succeeded = all(j["state"] == JobState.SUCCEEDED for j in sweep["jobs"])
    return EXIT_OK if succeeded else EXIT_JOB_FAILED


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
    plot = plot_path(args, "compare.png")
    plot.write_bytes(plot_overlay(series, f"{len(ids)} jobs"))
    if args.json:
        print_json({"jobs": rows, "plot_file": str(plot)})
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
    plot = plot_path(args, "compare.png")
    series = [(label, [r.points for r in members]) for label, members in groups]
    plot.write_bytes(plot_grouped(series, f"{len(ids)} jobs in {len(groups)} groups"))
    table, rows = format_grouped_table(groups)
    if args.json:
        print_json({"groups": rows, "plot_file": str(plot)})
    else:
        print(table)
        print(f"plot (mean and 95% CI band per group): {plot}")
    return EXIT_OK


DEFAULT_OUT = "runs"  # where plots go unless --out says: beside `aimc run`'s runs/latest


def plot_path(args: argparse.Namespace, name: str) -> Path:
    """Where a command's plot goes: --plot as given, else OUT/name (OUT made if missing)."""
    if args.plot:
        return Path(args.plot)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out / name


def add_sweep_commands(add: AddCommand) -> None:
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
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"folder --wait saves the overlay plot in, as sweep-ID.png (default {DEFAULT_OUT}/)",
    )
    p.add_argument("--plot", help="the plot's file instead (a path; overrides --out)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between checks")
    p = add(
        "compare", cmd_compare, "final metrics of jobs side by side and their loss curves overlaid"
    )
    p.add_argument(
        "ids", nargs="+", metavar="ID", help="job ids, or a sweep id (sw_...) for all its jobs"
    )
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"folder the plot is saved in, as compare.png (default {DEFAULT_OUT}/)",
    )
    p.add_argument("--plot", help="the plot's file instead (a path; overrides --out)")
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
