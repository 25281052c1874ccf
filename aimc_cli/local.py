"""The local commands of `aimc`: run a job here, validate a spec, show a schedule.

They use the engine, which the CLI may import and which knows nothing of the CLI (its
terminal progress bar is aimc_cli.progress).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from aimc_spec.configs import CONFIGS, closest_configs, find_config
from aimc_spec.spec import JobSpec, SpecError, load_spec_file
from aimc_spec.vocabulary import JobState

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
    config = find_config(spec.analog.config) if spec.analog.config else None
    if config is not None:  # what the configuration set, before the spec as it runs
        print(f"# analog.config {config.name} ({config.alias}): {config.summary}")
        print("# sets the following, under what the spec itself gives:")
        for line in yaml.safe_dump(config.spec, sort_keys=False).splitlines():
            print(f"#   {line}")
    print(yaml.safe_dump(spec.normalised(), sort_keys=False), end="")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    """The configurations `analog.config` takes, a line each; or one's expansion."""
    if args.name:
        config = find_config(args.name)
        if config is None:
            near = closest_configs(args.name)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            print(f"no configuration {args.name!r}{hint}", file=sys.stderr)
            return EXIT_BAD_SPEC
        print(f"# {config.name} ({config.alias}): {config.summary}")
        print(yaml.safe_dump(config.spec, sort_keys=False), end="")
        return 0
    width = max(len(c.name) for c in CONFIGS.values())
    for c in CONFIGS.values():
        print(f"{c.name:{width}s}  {c.alias:30s}  {c.summary}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    spec = _load(args.spec)
    if spec is None:
        return EXIT_BAD_SPEC
    from aimc_cli.progress import Progress
    from aimc_engine.artifacts import append_metrics_jsonl, write_run
    from aimc_engine.pipeline.torchrun import torchrun_rank
    from aimc_engine.runner import Callbacks, RunError, run

    out = Path(args.out)
    rank = torchrun_rank()
    progress = Progress(sys.stderr) if not args.quiet else None
    if rank is None or rank[0] == 0:  # under torchrun, rank 0 alone writes the folder
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    try:
        if rank is not None:  # one stage of a run across processes or hosts
            return _torchrun_stage(spec, out, progress)

        def on_metrics(record: dict) -> None:
            append_metrics_jsonl(out / "metrics.jsonl", record)
            if progress:
                progress.on_metrics(record)

        callbacks = Callbacks(
            on_metrics=on_metrics, on_progress=progress.on_progress if progress else None
        )
        output = run(spec, callbacks)
    except RunError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_BAD_SPEC
    write_run(out, output.result, output.metrics, output.model, output.timeline)
    return _report(output.result, out)


def _torchrun_stage(spec: JobSpec, out: Path, progress: object) -> int:
    """`aimc run` under torchrun: this process runs stage RANK; rank 0 writes --out."""
    import torch

    from aimc_engine.artifacts import write_run
    from aimc_engine.pipeline.launch import whole_model
    from aimc_engine.pipeline.serial import from_bytes
    from aimc_engine.pipeline.torchrun import run_torchrun_rank
    from aimc_engine.runner import prepare_data

    output = run_torchrun_rank(spec, out, progress)
    if output is None:
        return 0
    data = prepare_data(spec, torch.device("cpu"), None)
    model = whole_model(spec, data, from_bytes(output["state"]))
    write_run(out, output["result"], output["metrics"], model, output["timeline"])
    return _report(output["result"], out)


def _report(result: dict[str, Any], out: Path) -> int:
    """Print the run's outcome; the exit status of `aimc run`."""
    print(json.dumps({"status": result["status"], "final": result["final"], "out": str(out)}))
    if result["status"] != JobState.SUCCEEDED:
        print(result["error"] or result["status"], file=sys.stderr)
        return 1
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    spec = _load(args.spec)
    if spec is None:
        return EXIT_BAD_SPEC
    from aimc_engine.pipeline.schedule import build_schedule, format_grid
    from aimc_engine.pipeline.stages import split_units
    from aimc_engine.pipeline.timeline import (
        Tally,
        iter_replay,
        latency_durations,
        summarise,
        unit_duration,
    )

    p = spec.pipeline
    group = p.group
    n = args.microbatches or 2 * max(p.micro_batches, p.stages)
    n = max(group, n // group * group)
    counts = spec.model.layers_per_unit
    ranges = split_units([float(c) for c in counts], p.stages)
    layers = [sum(counts[i] for i in r) for r in ranges]
    schedule = build_schedule(p.schedule, p.stages, n, p.micro_batches)
    print(format_grid(schedule, args.actions))
    for s, r in enumerate(ranges):
        print(
            f"stage {s}: units {r.start}..{r.stop - 1} of the {spec.model.kind}, {layers[s]} layers"
        )
    timed_by = {
        "unit time (F = B = 1, no update cost)": unit_duration,
        "latency model": latency_durations(
            layers, spec.training.micro_batch_size, schedule.group, p.latency_ns
        ),
    }
    for label, duration in timed_by.items():
        t = summarise(schedule, Tally.of(iter_replay(schedule, duration), p.stages), n)
        print(
            f"{label}: makespan {t.makespan_ns:g}, bubble {t.bubble_fraction:.3f}, "
            f"utilisation {[round(u, 3) for u in t.utilisation]}, staleness {t.staleness}"
        )
    return 0


def add_engine_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """run, schedule, validate: commands that need no service."""
    p = sub.add_parser("run", help="train a job locally and write its results to --out")
    p.add_argument("spec", help="job spec, YAML or JSON")
    p.add_argument("--out", default="runs/latest", help="output folder (default runs/latest)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("schedule", help="print the pipeline schedule of a spec as a grid")
    p.add_argument("spec", help="job spec, YAML or JSON")
    p.add_argument("--actions", type=int, default=24, help="actions shown per stage")
    p.add_argument("--microbatches", type=int, default=0, help="micro-batches to schedule")
    p.set_defaults(func=cmd_schedule)
    p = sub.add_parser("validate", help="print the normalised spec, or its problems (exit 2)")
    p.add_argument("spec", help="job spec, YAML or JSON")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("configs", help="list aihwkit's training configurations (analog.config)")
    p.add_argument("name", nargs="?", help="print this configuration's part of a job spec")
    p.set_defaults(func=cmd_configs)
