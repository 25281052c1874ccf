"""The account commands: `aimc users` (with the admin key) and `aimc datasets` (a user's
uploaded .npz files)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from aimc_cli.remote.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    AddCommand,
    print_json,
    remote,
    when,
)
from aimc_client import Client
from aimc_spec.spec import SpecError
from aimc_study.comparison import text_table


def _dataset_rows(datasets: list[dict[str, Any]]) -> str:
    rows = [
        [
            d["id"],
            d["name"],
            str(d["n_train"]),
            str(d["n_test"]),
            "x".join(map(str, d["sample_shape"])),
            str(d["classes"]),
            when(d["created"]),
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
    print_json(result) if args.json else print(text)
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
            print_json(users)
        else:
            rows = [[u["id"], u["name"], when(u["created"])] for u in users]
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
                print_json({"deleted": found["id"]})
            else:
                print(f"deleted user {found['name']} ({found['id']}); their key is revoked")
            return EXIT_OK
        user = client.rotate_key(found["id"])
    if args.json:
        print_json(user)
    else:
        print(f"user {user['name']} ({user['id']}); their API key, shown once:")
        print(f"export AIMC_API_KEY={user['api_key']}")
    return EXIT_OK


def add_user_commands(sub: Any, add: AddCommand) -> None:
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
