"""The service commands of `aimc` (submit, jobs, status, watch, metrics, cancel, download,
sweep, compare, datasets), all on aimc_client.Client.

Tables for people, `--json` for scripts. Exit codes: 0 done (and, where a job is waited
for, it succeeded); 1 a job failed or was cancelled; 2 invalid input (spec, grid, file:
one `field: message` line per fault); 3 the service refused or could not be reached.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from aimc_cli.remote.jobs import add_job_commands
from aimc_cli.remote.sweeps import add_sweep_commands
from aimc_cli.remote.users import add_user_commands


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

    add_job_commands(add)
    add_sweep_commands(add)
    add_user_commands(sub, add)
