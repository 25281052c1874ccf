"""The `aimc` command: the engine's commands (run, validate, schedule), `serve`, and the
service commands (submit, jobs, status, watch, metrics, cancel, download, sweep,
compare, datasets), and `study` (many jobs with seeds, here or on the service).

A package of its own so that the engine knows nothing of the service and the
service's dependencies load only for the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys

from aimc_cli.local import add_engine_commands
from aimc_cli.remote import add_remote_commands
from aimc_cli.remote.users import data_dir
from aimc_cli.study import add_study_command
from aimc_engine.threads import passive_openmp


def cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import serve

    if args.workers < 1:
        print("--workers: must be at least 1", file=sys.stderr)
        return 2
    return serve(args.host, args.port, args.workers, data_dir(args.data_dir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aimc", description="Simulate training on analog in-memory computing hardware."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_engine_commands(sub)
    p = sub.add_parser(
        "serve",
        help="the whole service on this machine: API, workers and (if REDIS_URL is "
        "unset) a private Redis; Ctrl-C stops it",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="worker processes (one job each)")
    p.add_argument(
        "--data-dir",
        help="Redis data, artifacts and the admin key (default $AIMC_DATA_DIR, else ~/.aimc)",
    )
    p.set_defaults(func=cmd_serve)
    add_remote_commands(sub)
    add_study_command(sub)
    return parser


EXIT_BROKEN_PIPE = 128 + 13  # as a tool killed by SIGPIPE: the reader stopped reading


def main(argv: list[str] | None = None) -> int:
    # before any command imports torch: OpenMP reads its wait policy once, at load
    # (aimc_engine/threads.py); `aimc run`, a study's processes and `aimc serve`'s
    # children inherit it
    passive_openmp()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # `aimc status ID | head -3`: the reader has what it wanted. End quietly: point
        # stdout at /dev/null so the interpreter's final flush cannot complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
