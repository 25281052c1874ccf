"""The `aimc` command line: run a job locally, validate a spec."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from aimc_engine.spec import JobSpec, SpecError, load_spec_file

EXIT_BAD_SPEC = 2


def _load(path: str) -> JobSpec | None:
    try:
        return load_spec_file(path)
    except SpecError as exc:
        for loc, msg in exc.problems:
            print(f"{loc}: {msg}" if loc else msg, file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    spec = _load(args.spec)
    if spec is None:
        return EXIT_BAD_SPEC
    print(yaml.safe_dump(spec.normalised(), sort_keys=False), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    spec = _load(args.spec)
    if spec is None:
        return EXIT_BAD_SPEC
    from aimc_engine.artifacts import append_metrics_jsonl, write_run
    from aimc_engine.progress import Progress
    from aimc_engine.runner import Callbacks, RunError, run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "metrics.jsonl"
    jsonl.unlink(missing_ok=True)
    progress = Progress(sys.stderr) if not args.quiet else None

    def on_metrics(record: dict) -> None:
        append_metrics_jsonl(jsonl, record)
        if progress:
            progress.on_metrics(record)

    callbacks = Callbacks(
        on_metrics=on_metrics, on_progress=progress.on_progress if progress else None
    )
    try:
        output = run(spec, callbacks)
    except RunError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_SPEC
    write_run(out, output.result, output.metrics, output.model, output.timeline)
    result = output.result
    print(json.dumps({"status": result["status"], "final": result["final"], "out": str(out)}))
    if result["status"] != "succeeded":
        print(result["error"] or result["status"], file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aimc", description="Simulate training on analog in-memory computing hardware."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train a job locally and write its results to --out")
    p.add_argument("spec", help="job spec, YAML or JSON")
    p.add_argument("--out", default="runs/latest", help="output folder (default runs/latest)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help="print the normalised spec, or its problems (exit 2)")
    p.add_argument("spec", help="job spec, YAML or JSON")
    p.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
