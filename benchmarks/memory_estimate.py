"""The admission's memory estimate (aimc_spec.resources) against measured peaks.

Run: python benchmarks/memory_estimate.py [--steps 20] [--json]

Each spec runs through the engine in a process forked from one that imported torch and
the engine (as a worker's job process is), with a checkpoint taken as the worker
takes them; its peak is the process's high-water resident size (VmHWM) less what it
held when forked, the memory the job itself took. Prints, per model kind and update
mode, the estimate, the measured peak and their ratio (the admission wants it within
1.5 either way); with --json, one line {case: [estimate, measured]} in bytes
(tests/engine/test_memory_estimate.py reads it). Forked from this fresh process, where
no torch op ran: a process forked after torch ran ops can hang (worker/app.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

CASES: dict[str, dict[str, Any]] = {
    "mlp expected": {"model": {"hidden": [2048, 2048]}},
    "mlp pulsed": {"model": {"hidden": [2048, 2048]}, "analog": {"update": "pulsed"}},
    "mlp rounded": {"model": {"hidden": [2048, 2048]}, "analog": {"update": "rounded"}},
    "mlp tiki_taka": {"model": {"hidden": [2048, 2048]}, "optimizer": {"algorithm": "tiki_taka"}},
    "mlp digital": {"model": {"hidden": [2048, 2048]}, "optimizer": {"algorithm": "sgd"}},
    "mlp one_sided": {
        "model": {"hidden": [2048, 2048]},
        "analog": {"unit_cell": {"kind": "one_sided", "refresh_every": 1}},
    },
    "mlp vector4": {
        "model": {"hidden": [2048, 2048]},
        "analog": {"unit_cell": {"kind": "vector", "devices": 4}},
    },
    "mlp async_stash": {
        "model": {"hidden": [2048, 2048]},
        "pipeline": {"stages": 3, "schedule": "async_stash"},
    },
    "mlp gpipe": {
        "model": {"hidden": [2048, 2048]},
        "pipeline": {"stages": 3, "schedule": "gpipe", "micro_batches": 8},
    },
    "cnn expected": {"model": {"kind": "cnn", "channels": [64, 128], "fc": 512}},
    "cnn pulsed": {
        "model": {"kind": "cnn", "channels": [64, 128], "fc": 512},
        "analog": {"update": "pulsed"},
    },
    "cnn rounded": {
        "model": {"kind": "cnn", "channels": [64, 128], "fc": 512},
        "analog": {"update": "rounded"},
    },
    "cnn digital": {
        "model": {"kind": "cnn", "channels": [64, 128], "fc": 512},
        "optimizer": {"algorithm": "sgd"},
    },
    "resnet expected": {"model": {"kind": "resnet", "channels": [64, 128]}},
    "resnet pulsed": {
        "model": {"kind": "resnet", "channels": [64, 128]},
        "analog": {"update": "pulsed"},
    },
    "resnet rounded": {
        "model": {"kind": "resnet", "channels": [64, 128]},
        "analog": {"update": "rounded"},
    },
    "resnet digital": {
        "model": {"kind": "resnet", "channels": [64, 128]},
        "optimizer": {"algorithm": "sgd"},
    },
}


def vm(field: str) -> int:
    """A /proc/self/status size, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(spec_data: dict[str, Any]) -> int:
    """The peak bytes a forked process took to run the spec."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 1
        try:
            from aimc_engine.runner import run
            from aimc_engine.training import Callbacks
            from aimc_spec.spec import parse_spec

            start = vm("VmRSS")
            run(parse_spec(spec_data), Callbacks(on_checkpoint=lambda _: None, checkpoint_every=5))
            os.write(write, str(vm("VmHWM") - start).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    out = os.read(read, 64)
    os.waitpid(pid, 0)
    return int(out or b"-1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="one JSON line, in bytes")
    parser.add_argument("--cases", default="", help="comma-separated names' prefixes (all)")
    args = parser.parse_args()
    import torch  # noqa: F401  (the worker imports it before forking its jobs)

    import aimc_engine.runner  # noqa: F401
    from aimc_spec.cost import data_shape
    from aimc_spec.resources import resources
    from aimc_spec.spec import parse_spec

    if not args.json:
        print(f"{'case':18s} {'estimate MiB':>13s} {'measured MiB':>13s} {'ratio':>6s}")
    worst = 1.0
    found: dict[str, list[int]] = {}
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    for name, case in CASES.items():
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        spec_data = {**case, "training": {"steps": args.steps, "eval_every": args.steps}}
        spec = parse_spec(spec_data)
        shape = data_shape(spec, None)
        assert shape is not None
        estimate = resources(spec, *shape).peak_bytes
        measured = measure(spec_data)
        ratio = estimate / measured
        worst = max(worst, ratio, 1 / ratio)
        found[name] = [estimate, measured]
        if not args.json:
            print(f"{name:18s} {estimate / 2**20:13.1f} {measured / 2**20:13.1f} {ratio:6.2f}")
    print(json.dumps(found) if args.json else f"worst factor: {worst:.2f}")
    return 0 if worst <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
