"""GPU check: every update mode, IO model, schedule and model kind on CUDA, against the CPU.

Run: python benchmarks/gpu_check.py [--steps 20] [--device cuda] [--cases mlp,digits,cnn,resnet]

1. Agreement. Each configuration trains `--steps` micro-batches of the digits set
   through `run(spec)` on the CPU and on the GPU from the same seed. Deterministic
   configurations (perfect IO, the expected update, no cycle-to-cycle noise) must
   end with the same weights to float tolerance (the devices sum in different
   orders, so not bit for bit); noisy ones draw from different generators, so they
   must agree in distribution: the final test loss within 15%, and, tile by tile,
   the mean and spread of many updates of each mode within a few standard errors.
2. Speed. One training step of the engine vs the same network in plain torch on
   the GPU (engine_speed.py's cases, interleaved, synchronised), printed as ratios.
3. Stages as processes over NCCL (`pipeline.executor: processes`, one GPU per stage):
   gpipe and async on 2 processes against the same runs simulated on the GPU and on
   the CPU (weights within float tolerance for the expected update, test loss within
   15% for noisy ones), and the async / gpipe wall-clock speedup. Needs 2 GPUs (NCCL
   takes one per rank); with fewer it says so and skips.

Exits with status 2 and a message when torch sees no CUDA device. `--device cpu`
runs the same code CPU against CPU: a dry run of the script, not a check.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from engine_speed import CASES, VARIANTS, make_batches, torch_twin  # benchmarks/, beside this
from torch import Tensor

from aimc_engine.algorithms import Algorithm
from aimc_engine.models import build_model
from aimc_engine.runner import run
from aimc_engine.tiles import AnalogTile, TileConfig
from aimc_spec.spec import AnalogSpec, parse_spec

NOISY_IO = {"perfect": False}  # the IO defaults: DAC, ADC, output noise, both managements
MODELS = {
    "mlp": {"kind": "mlp", "hidden": [32]},
    "cnn": {"kind": "cnn", "channels": [4, 8], "fc": 16},
    "resnet": {"kind": "resnet", "channels": [4, 8]},
}
SCHEDULES = ["sequential", "gpipe", "1f1b", "async", "async_stash"]


def job(device: str, model: dict, update: str, io: dict, schedule: str, steps: int) -> dict:
    stages = 1 if schedule == "sequential" else 2
    return {
        "device": device,
        "dataset": {"name": "digits"},
        "model": model,
        "analog": {"update": update, "io": io},
        "optimizer": {"lr": 0.05},
        "training": {"steps": steps, "micro_batch_size": 8, "eval_every": steps},
        "pipeline": {"stages": stages, "schedule": schedule, "micro_batches": 2},
    }


def deterministic(update: str, io: dict) -> bool:
    return update == "expected" and io.get("perfect", True)


def agreement(device: str, steps: int) -> list[str]:
    """Train each configuration on both devices; return the failures (empty: all agree)."""
    configs = [
        (kind, update, io, "sequential")
        for kind in MODELS
        for update in ("expected", "rounded", "pulsed")
        for io in ({"perfect": True}, NOISY_IO)
    ]
    configs += [
        ("mlp", u, io, s)
        for s in SCHEDULES[1:]
        for u, io in (("expected", {}), ("pulsed", NOISY_IO))
    ]
    failures = []
    for kind, update, io, schedule in configs:
        outs = [
            run(parse_spec(job(where, MODELS[kind], update, io, schedule, steps)))
            for where in ("cpu", device)
        ]
        name = (
            f"{kind:6} {update:8} {'perfect' if io.get('perfect', True) else 'noisy':7} {schedule}"
        )
        cpu_loss, dev_loss = (o.metrics[-1]["test_loss"] for o in outs)
        if deterministic(update, io):
            worst = max(
                float((a.tile.weight - b.tile.weight.cpu()).abs().max())
                for a, b in zip(
                    outs[0].model.weight_layers, outs[1].model.weight_layers, strict=True
                )
            )
            ok = worst < 1e-4
            verdict = f"weights max |diff| {worst:.2e}"
        else:
            ok = abs(dev_loss - cpu_loss) <= 0.15 * abs(cpu_loss)
            verdict = f"test loss cpu {cpu_loss:.4f} {device} {dev_loss:.4f}"
        print(f"  {name:40} {'ok  ' if ok else 'FAIL'} {verdict}", flush=True)
        if not ok:
            failures.append(name)
    return failures


def nccl_stages(device: str, steps: int) -> list[str]:
    """Part 3: the processes executor on one GPU per stage (NCCL) against simulated runs."""
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if gpus < 2:
        print(f"  skipped: NCCL needs a GPU per stage, 2 here, and torch sees {gpus}")
        return []
    failures = []
    seconds = {}
    for schedule in ("gpipe", "async"):
        for update, io in (("expected", {}), ("pulsed", NOISY_IO)):
            base = job("cuda", MODELS["mlp"], update, io, schedule, steps * 10)
            nccl = {
                **base,
                "pipeline": {
                    **base["pipeline"],
                    "executor": "processes",
                    "devices": ["cuda:0", "cuda:1"],
                },
            }
            outs = [run(parse_spec(s)) for s in ({**base, "device": "cpu"}, base, nccl)]
            name = f"nccl {schedule:6} {update:8}"
            losses = [o.metrics[-1]["test_loss"] for o in outs]
            if deterministic(update, io):
                worst = max(
                    float((a - b.cpu()).abs().max())
                    for a, b in zip(
                        outs[0].model.state_dict().values(),
                        outs[2].model.state_dict().values(),
                        strict=True,
                    )
                )
                ok, verdict = worst < 1e-4, f"weights max |diff| vs cpu {worst:.2e}"
            else:
                ok = abs(losses[2] - losses[0]) <= 0.15 * abs(losses[0])
                verdict = f"test loss cpu {losses[0]:.4f} cuda {losses[1]:.4f} nccl {losses[2]:.4f}"
            print(f"  {name:40} {'ok  ' if ok else 'FAIL'} {verdict}", flush=True)
            if not ok:
                failures.append(name)
            seconds[(schedule, update)] = outs[2].result["wall_seconds"]
    for update in ("expected", "pulsed"):
        ratio = seconds[("gpipe", update)] / seconds[("async", update)]
        print(f"  {update}: async / gpipe wall-clock speedup on 2 GPUs {ratio:.2f}x")
    return failures


def update_statistics(device: str, update: str, trials: int = 200) -> tuple[Tensor, Tensor]:
    """(mean, std) over `trials` of one update of a fresh tile, per element."""
    analog = AnalogSpec(update=update, device={"states": 200, "c2c_noise": 0.3})
    where = torch.device(device)
    g = torch.Generator(device=where).manual_seed(1)
    tile = AnalogTile(16, 24, TileConfig(analog, torch.Generator().manual_seed(0), g, where))
    start = tile.weight.clone()
    data = torch.Generator().manual_seed(2)
    x = torch.rand(8, 24, generator=data).to(where)
    d = (torch.randn(8, 16, generator=data) * 0.2).to(where)
    outcomes = []
    for _ in range(trials):
        tile.weight = start.clone()
        tile.update(x, d, 0.1)
        outcomes.append((tile.weight - start).cpu())
    runs = torch.stack(outcomes)
    return runs.mean(0), runs.std(0)


def distribution_checks(device: str) -> list[str]:
    failures = []
    for update in ("expected", "rounded", "pulsed"):
        (m_cpu, s_cpu), (m_dev, s_dev) = (update_statistics(w, update) for w in ("cpu", device))
        stderr = (s_cpu.square() + s_dev.square()).sqrt() / 200**0.5
        mean_ok = bool(((m_cpu - m_dev).abs() <= 5 * stderr + 1e-6).all())
        spread_ok = (
            abs(float(s_dev.mean()) - float(s_cpu.mean())) <= 0.1 * float(s_cpu.mean()) + 1e-7
        )
        ok = mean_ok and spread_ok
        print(
            f"  one update, {update:8}: mean within 5 s.e. {mean_ok}, spread within 10% {spread_ok}"
        )
        if not ok:
            failures.append(f"update statistics {update}")
    return failures


def timed(step: Callable[[int], None], device: torch.device, per_block: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(per_block):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / per_block


def build_on(device: torch.device, shape: tuple[int, ...], model_spec: dict, variant: dict):
    """The engine's model and algorithm for `variant`, its tiles on `device`."""
    optimizer = {"lr": 0.01, **variant.get("optimizer", {})}
    spec = parse_spec({**variant, "model": model_spec, "optimizer": optimizer})
    noise = torch.Generator(device=device).manual_seed(0)
    config = TileConfig(spec.analog, torch.Generator().manual_seed(0), noise, device)
    model = build_model(spec, shape, 10, config)
    return model, Algorithm(spec, model, config)


def steps_of(model: torch.nn.Module, update: Callable[[], None], batches: list) -> Callable:
    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        F.cross_entropy(model(x), y).backward()
        update()

    return step


def speed_case(device: torch.device, case: str, shape: tuple[int, ...], spec: dict, batch: int):
    batches = [(x.to(device), y.to(device)) for x, y in make_batches(shape, batch)]
    twin = torch_twin(build_on(device, shape, spec, VARIANTS["sgd (digital)"])[0]).to(device)
    opt = torch.optim.SGD(twin.parameters(), lr=0.01)

    def torch_update() -> None:
        opt.step()
        opt.zero_grad()

    torch_step = steps_of(twin, torch_update, batches)
    for k, (name, variant) in enumerate(VARIANTS.items()):
        model, algo = build_on(device, shape, spec, variant)
        aimc_step = steps_of(model, lambda algo=algo: algo.step(0.01), batches)
        for fn in (torch_step, aimc_step):  # warm-up (and compile)
            timed(fn, device, 10)
        times: list[list[float]] = [[], []]
        for _ in range(7):  # interleaved blocks, the fastest of each side
            for fn, out in zip((torch_step, aimc_step), times, strict=True):
                out.append(timed(fn, device, 10))
        base, t = min(times[0]), min(times[1])
        if k == 0:
            print(f"{case:32} {'plain torch nn + optim.SGD':32} {base * 1e3:9.3f} {1.0:8.2f}")
        print(f"{'':32} {name:32} {t * 1e3:9.3f} {t / base:8.2f}", flush=True)


def speed(device: torch.device, wanted: set[str]) -> None:
    print(f"\n{'case':32} {'variant':32} {'ms/step':>9} {'x torch':>8}")
    for case, (key, shape, model_spec, batch, _) in CASES.items():
        if key in wanted:
            speed_case(device, case, shape, model_spec, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20, help="micro-batches per agreement run")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--cases", default="mlp,digits,cnn,resnet", help="speed cases")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: torch sees no CUDA device here, so there is nothing to check. "
            "Run this on a machine with an NVIDIA GPU and a CUDA build of torch "
            f"(this torch is {torch.__version__}).",
            file=sys.stderr,
        )
        sys.exit(2)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    print(f"torch {torch.__version__} on {name}\n")
    print(f"agreement with the CPU ({args.steps} micro-batches):")
    failures = agreement(args.device, args.steps)
    failures += distribution_checks(args.device)
    speed(device, set(args.cases.split(",")))
    print("\nstages as processes over NCCL:")
    failures += nccl_stages(args.device, args.steps)
    if failures:
        print(f"\n{len(failures)} disagreement(s): {', '.join(failures)}")
        sys.exit(1)
    print("\nall configurations agree with the CPU")


if __name__ == "__main__":
    main()
