"""What every service command shares: a Client built from --url and --api-key, errors
turned into messages and exit codes, and the output helpers."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from aimc_client import ApiError, AuthError, Client, InvalidError, Unreachable
from aimc_spec.spec import SpecError
from aimc_spec.vocabulary import JobState

EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT, EXIT_SERVICE = 0, 1, 2, 3
Command = Callable[[argparse.Namespace, Client], int]
# adds a service command's parser (with --url, --api-key and --json): name, function, help
AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def print_problems(problems: list[tuple[str, str]]) -> None:
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
            print_problems(exc.problems)
            return EXIT_BAD_INPUT
        except InvalidError as exc:
            print(f"{exc.status} {exc.title}", file=sys.stderr)
            print_problems(exc.problems)
            return EXIT_BAD_INPUT
        except ApiError as exc:
            print(explain(exc, args), file=sys.stderr)
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


def explain(exc: ApiError, args: argparse.Namespace) -> str:
    """The error as `aimc: ...` lines, with the next step where there is one to take: how
    to pass a key after a 401, where the service was looked for when none answered."""
    if isinstance(exc, Unreachable):
        return (
            f"aimc: no service answered at {exc.url} ({exc.reason})\n"
            "aimc: start one on this machine with `aimc serve`, or point --url or AIMC_URL "
            "at a running one"
        )
    lines = [f"aimc: {exc}"]
    if isinstance(exc, AuthError):
        lines.append(f"aimc: {_key_hint(args)}")
    return "\n".join(lines)


def _key_hint(args: argparse.Namespace) -> str:
    if hasattr(args, "admin_key"):  # `aimc users`: the admin key, not a user's
        return (
            "the admin key was refused: pass the one `aimc serve` printed with --admin-key or "
            "AIMC_ADMIN_KEY, or run on its machine (it keeps the key in --data-dir)"
        )
    if args.api_key or os.environ.get("AIMC_API_KEY"):
        return (
            "the service refused this API key (from --api-key or AIMC_API_KEY): check it, or "
            "have an admin make a new one with `aimc users rotate NAME`"
        )
    return (
        "no API key was sent: pass --api-key KEY or set AIMC_API_KEY=KEY; an admin makes "
        "one with `aimc users create NAME`"
    )


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def exit_for(state: str) -> int:
    return EXIT_OK if state == JobState.SUCCEEDED else EXIT_JOB_FAILED
