"""A digest of the numbers of every preset, device model and example: for refactors.

Run: python benchmarks/numbers_digest.py before.json   (then again after the change)
     diff before.json after.json

Each case trains 12 micro-batches (one torch thread) and hashes its final weights and
metric points (wall clock left out). A refactor that must not change results (the
device families' package, for one) leaves every digest as it was.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from aimc_engine.runner import RunOutput, run
from aimc_spec.presets import PRESETS
from aimc_spec.spec import parse_spec, read_spec_file

ROOT = Path(__file__).resolve().parent.parent


def digest(out: RunOutput) -> str:
    h = hashlib.sha256()
    for k, v in sorted(out.model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(
        json.dumps(
            [{k: v for k, v in m.items() if k != "wall_s"} for m in out.metrics], sort_keys=True
        ).encode()
    )
    return h.hexdigest()[:16]


def cases() -> dict[str, dict[str, Any]]:
    short = {"training": {"steps": 12, "micro_batch_size": 8, "eval_every": 6}}
    cases: dict[str, dict[str, Any]] = {}
    for preset in PRESETS:
        for update in ("expected", "rounded", "pulsed"):
            cases[f"preset-{preset}-{update}"] = {
                "device": "cpu",
                "dataset": {"name": "digits"},
                "model": {"hidden": [16]},
                "analog": {
                    "device": {"preset": preset},
                    "update": update,
                    "io": {"perfect": False},
                },
                **short,
            }
    for model in ("ideal", "constant_step", "linear", "softbounds", "power", "exp", "exp_step"):
        for update in ("expected", "rounded", "pulsed"):
            dev = {"model": model, "c2c_noise": 0.2, "d2d_variation": 0.1, "up_down": 0.05}
            if model == "linear":
                dev["d2d_gamma"] = 0.05
            cases[f"model-{model}-{update}"] = {
                "device": "cpu",
                "dataset": {"name": "digits"},
                "model": {"hidden": [16]},
                "analog": {"device": dev, "update": update},
                **short,
            }
            cases[f"model-{model}-{update}-tt"] = {
                **cases[f"model-{model}-{update}"],
                "optimizer": {
                    "algorithm": "tiki_taka",
                    "tiki_taka": {"reference": "symmetric_point"},
                },
            }
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        d = read_spec_file(path)
        d["training"] = {**d.get("training", {}), **short["training"]}
        d.get("training", {}).pop("epochs", None)
        d["device"] = "cpu"
        cases["example-" + path.name] = d
    return cases


def main() -> None:
    torch.set_num_threads(1)
    res = {}
    for name, spec in cases().items():
        try:
            res[name] = digest(run(parse_spec(spec)))
        except Exception as exc:  # a case that cannot run is a digest of its error
            res[name] = f"error {type(exc).__name__}: {exc}"[:200]
    Path(sys.argv[1]).write_text(json.dumps(res, indent=1) + "\n")
    failed = sum(v.startswith("error") for v in res.values())
    print(f"{len(res)} cases, {failed} failed to run; digests in {sys.argv[1]}")


if __name__ == "__main__":
    main()
