"""Engine speed: one training step of aimc vs a plain torch.nn + torch.optim.SGD step.

Run: python benchmarks/engine_speed.py [--threads 1,2] [--steps 200] [--cases mlp,cnn]
     python benchmarks/engine_speed.py --small     (issue 24: small layers, run loop)
(AIMC_FUSE=0 times the update chains as torch ops instead of the C kernels.)

Both sides run in this process on the same data, one step = forward, loss,
backward, update. The torch baseline is the same network built from torch's own
nn.Linear / nn.Conv2d (`torch_twin`). Prints ms per step and the ratio to plain
torch for each algorithm / update mode, then where a pulsed step spends its time.
`--small` times the training loop of `aimc run` instead (`Training.run_action`): every device
preset on the digits MLP beside aihwkit 1.2, and the CNN against a plain torch loop.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aimc_engine import native
from aimc_engine.algorithms import Algorithm
from aimc_engine.datasets import Dataset, load_dataset
from aimc_engine.fused import ENV, fusion_enabled
from aimc_engine.layers import AnalogConv2d, AnalogLinear
from aimc_engine.models import build_model
from aimc_engine.pulses import draw_pulse_trains, pulse_train_counts
from aimc_engine.runner import prepare_data
from aimc_engine.tiles import TileConfig
from aimc_engine.training import GRAD_SAMPLES, Callbacks, Training
from aimc_spec.presets import PRESETS
from aimc_spec.spec import parse_spec

# name -> (short key for --cases, input shape, model spec, batch, steps per timing)
CASES: dict[str, tuple[str, tuple[int, ...], dict, int, int]] = {
    "mlp 784-256-128-10, b=64": ("mlp", (784,), {"kind": "mlp", "hidden": [256, 128]}, 64, 1),
    "digits mlp 64-128-64-10, b=10": ("digits", (64,), {"kind": "mlp", "hidden": [128, 64]}, 10, 1),
    # convolutional cases take ~20x longer per step: fewer steps per timing
    "cnn 3x32x32 [16,32] fc128, b=32": (
        "cnn",
        (3, 32, 32),
        {"kind": "cnn", "channels": [16, 32], "fc": 128},
        32,
        10,
    ),
    "resnet 3x32x32 [16,32], b=32": (
        "resnet",
        (3, 32, 32),
        {"kind": "resnet", "channels": [16, 32]},
        32,
        10,
    ),
}
VARIANTS = {
    "sgd (digital)": {"analog": {"enabled": False}, "optimizer": {"algorithm": "sgd"}},
    "analog_sgd expected": {"analog": {"update": "expected"}},
    "analog_sgd rounded": {"analog": {"update": "rounded"}},
    "analog_sgd pulsed BL31": {"analog": {"update": "pulsed"}},
    "analog_sgd pulsed BL31 no-mgmt": {"analog": {"update": "pulsed", "update_management": False}},
    "tiki_taka expected": {"optimizer": {"algorithm": "tiki_taka"}},
}


def time_steps(step: Callable[[int], None], steps: int, blocks: int = 5) -> float:
    """Fastest block's seconds per step, after a warm-up block."""
    return time_interleaved([(torch.get_num_threads(), step)], steps, blocks)[0]


def time_interleaved(
    runs: list[tuple[int, Callable[[int], None]]], steps: int, blocks: int = 7
) -> list[float]:
    """Fastest block's seconds per step of each (threads, step), blocks interleaved
    (a b c a b c ...), each block run with its own torch thread count.

    Interleaving makes drift in the machine's speed hit every run alike, so ratios
    between them (aimc against torch, 2 threads against 1) are measured at one time;
    the fastest block is the one least disturbed by other work on a shared machine.
    """
    per_block = max(1, steps // blocks)
    times: list[list[float]] = [[] for _ in runs]
    for threads, f in runs:  # warm-up
        torch.set_num_threads(threads)
        for i in range(per_block):
            f(i)
    for _ in range(blocks):
        for (threads, f), out in zip(runs, times, strict=True):
            torch.set_num_threads(threads)
            start = time.perf_counter()
            for i in range(per_block):
                f(i)
            out.append((time.perf_counter() - start) / per_block)
    return [min(t) for t in times]


def make_batches(shape: tuple[int, ...], batch: int, n: int = 32) -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.rand((batch, *shape), generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n)
    ]


def torch_twin(model: nn.Module) -> nn.Module:
    """The same network with torch's own nn.Linear / nn.Conv2d in place of the tile layers
    (same shapes, strides, paddings and initial weights): the plain-torch baseline."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, AnalogLinear):
            plain: nn.Module = nn.Linear(module.in_features, module.out_features)
        elif isinstance(module, AnalogConv2d):
            plain = nn.Conv2d(
                module.in_channels,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
            )
        else:
            continue
        with torch.no_grad():
            plain.weight.copy_(module.tile.weight.reshape(plain.weight.shape))
            plain.bias.copy_(module.bias)  # type: ignore[arg-type]
        parent_name, _, child = name.rpartition(".")
        setattr(twin.get_submodule(parent_name), child, plain)
    return twin


def build(shape: tuple[int, ...], model_spec: dict, variant: dict) -> tuple[nn.Module, Algorithm]:
    optimizer = {"lr": 0.01, **variant.get("optimizer", {})}
    spec = parse_spec({**variant, "model": model_spec, "optimizer": optimizer})
    g = torch.Generator().manual_seed(0)
    config = TileConfig(spec.analog, g, g)
    model = build_model(spec, shape, 10, config)
    return model, Algorithm(spec, model, config)


def plain_torch_step(shape: tuple[int, ...], model_spec: dict, batch: int) -> Callable:
    model = torch_twin(build(shape, model_spec, VARIANTS["sgd (digital)"])[0])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    data = make_batches(shape, batch)

    def step(i: int) -> None:
        x, y = data[i % len(data)]
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def aimc_step(shape: tuple[int, ...], model_spec: dict, batch: int, variant: dict) -> Callable:
    model, algo = build(shape, model_spec, variant)
    data = make_batches(shape, batch)

    def step(i: int) -> None:
        x, y = data[i % len(data)]
        F.cross_entropy(model(x), y).backward()
        algo.step(0.01)

    return step


def pulsed_breakdown(steps: int) -> None:
    """Where one pulsed update of the 784x256 layer (b=64, BL=31) spends its time."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=g)
    d = torch.randn(64, 256, generator=g) * 0.01
    spec = parse_spec({})
    dev_spec = spec.analog.device
    kw = {"lr": 0.01, "dw_min": dev_spec.dw_min, "bit_length": 31, "generator": g}
    for mgmt in (True, False):
        t = time_steps(lambda _, m=mgmt: pulse_train_counts(x, d, update_management=m, **kw), steps)
        # BL per sample (per-sample update management), here its mean over the batch
        per_sample = torch.ceil(
            0.01 * x.abs().amax(1) * d.abs().amax(1) / dev_spec.dw_min  # type: ignore[operator]
        ).clamp(1, 31)
        bl = float(per_sample.mean()) if mgmt else 31.0
        print(f"  pulse counts, management={mgmt!s:5} (mean BL {bl:4.1f}): {t * 1e3:7.3f} ms")
    fire = torch.rand(31 * 64, 784, generator=g).round()
    fire_d = torch.rand(31 * 64, 256, generator=g).round()
    t = time_steps(lambda _: fire_d.T @ fire, steps)
    print(f"    of which one 0/1 coincidence matmul at BL 31 (two per update): {t * 1e3:7.3f} ms")
    x_rows, scale = x.repeat(31, 1), torch.full((31 * 64,), 0.5)
    t = time_steps(lambda _: draw_pulse_trains(x_rows, scale, g), steps)
    print(f"    of which drawing the x-side pulse trains at BL 31:            {t * 1e3:7.3f} ms")


# aihwkit 1.2.0, source build, 1 thread, as measured in issue 24 (ms per step of the
# README's digits MLP 64-128-64-10, batch 10, each preset's own IO and update settings)
AIHWKIT_ISSUE_24 = {"reram_sb": 1.23, "capacitor": 0.78, "idealized": 1.5}
AIHWKIT_PRESETS = {  # aimc preset -> aihwkit's preset RPU config
    "reram_sb": "ReRamSBPreset",
    "capacitor": "CapacitorPreset",
    "idealized": "IdealizedPreset",
    "reram_es": "ReRamESPreset",
    "ecram": "EcRamPreset",
    "ecram_mo": "EcRamMOPreset",
    "gokmen_vlasov": "GokmenVlasovPreset",
    "pcm": "PCMPreset",
    # aihwkit has these two as devices only: a single-device config with the presets' IO
    # and update settings, as its single-device presets are built
    "reram_array_om": "ReRamArrayOMPresetDevice",
    "reram_array_hfo2": "ReRamArrayHfO2PresetDevice",
}
DIGITS_MLP = {"kind": "mlp", "hidden": [128, 64], "activation": "tanh"}


def run_loop_step(spec_fields: dict, data: Dataset) -> Callable[[int], None]:
    """One micro-batch as `aimc run` trains it: the actions of the run's own loop
    (Training.run_action: fetch, forward, loss, backward, update, clock), no metric point."""
    fields = {"training": {"steps": 10**5, "micro_batch_size": 10, "eval_every": 10**9}}
    spec = parse_spec({**fields, **spec_fields})
    training = Training(spec, data, torch.device("cpu"), Callbacks())
    actions = iter(training.timeline)
    per_step = 3 * spec.pipeline.stages  # forward, backward, update of every stage

    def step(_: int) -> None:
        for _ in range(per_step):
            training.run_action(next(actions))

    step.training = training  # type: ignore[attr-defined]  # for a metric point's time
    return step


def digits_spec(preset: str | None) -> dict:
    """The digits MLP, pulsed BL 31 on the preset with noisy IO (aihwkit's preset IO:
    DAC 7 bits, ADC 9 bits, output noise 0.06, noise and bound management); None: digital."""
    base = {"dataset": {"name": "digits"}, "model": DIGITS_MLP}
    if preset is None:
        return {**base, "analog": {"enabled": False}, "optimizer": {"algorithm": "sgd", "lr": 0.1}}
    analog = {"device": {"preset": preset}, "update": "pulsed", "io": {"perfect": False}}
    return {**base, "analog": analog, "optimizer": {"algorithm": "analog_sgd", "lr": 0.1}}


def aihwkit_step(preset: str, data: Dataset) -> Callable[[int], None] | None:
    """aihwkit's step on the same network and data, where aihwkit is installed (its
    preset RPU config: the preset's device, IO and update settings); None otherwise."""
    try:
        from aihwkit.nn import AnalogLinear as Linear  # type: ignore[import-not-found]
        from aihwkit.nn import AnalogSequential  # type: ignore[import-not-found]
        from aihwkit.optim import AnalogSGD  # type: ignore[import-not-found]
        from aihwkit.simulator import presets  # type: ignore[import-not-found]
    except ImportError:
        return None
    name = AIHWKIT_PRESETS[preset]
    if name.endswith("Device"):
        from aihwkit.simulator.configs import SingleRPUConfig  # type: ignore[import-not-found]

        io = presets.PresetIOParameters
        config = SingleRPUConfig(
            device=getattr(presets, name)(),
            forward=io(),
            backward=io(),
            update=presets.PresetUpdateParameters(),
        )
    else:
        config = getattr(presets, name)()
    model = AnalogSequential(
        Linear(64, 128, rpu_config=config),
        nn.Tanh(),
        Linear(128, 64, rpu_config=config),
        nn.Tanh(),
        Linear(64, 10, rpu_config=config),
    )
    opt = AnalogSGD(model.parameters(), lr=0.1)
    opt.regroup_param_groups(model)
    per_epoch = len(data.x_train) // 10
    flat = data.x_train.reshape(len(data.x_train), -1)  # the 8x8 images as 64 inputs

    def step(i: int) -> None:
        at = (i % per_epoch) * 10
        opt.zero_grad()
        F.cross_entropy(model(flat[at : at + 10]), data.y_train[at : at + 10]).backward()
        opt.step()

    return step


def small(steps: int) -> None:
    """Issue 24: every preset's run-loop step on the digits MLP beside aihwkit 1.2 (one
    thread), then the CNN's run loop against a plain torch loop (digital)."""
    digits = load_dataset(parse_spec({}).dataset, seed=0)
    torch_step = plain_torch_step((64,), DIGITS_MLP, 10)
    digital = run_loop_step(digits_spec(None), digits)
    base = time_interleaved([(1, torch_step), (1, digital)], steps)
    print("digits MLP 64-128-64-10, b 10, 1 thread, `aimc run` loop (fastest of interleaved")
    print(f"blocks): plain torch {base[0] * 1e3:.3f} ms, aimc digital {base[1] * 1e3:.3f} ms")
    try:
        import aihwkit  # type: ignore[import-not-found]

        print(f"aihwkit column: aihwkit {aihwkit.__version__} in this process, interleaved")
    except ImportError:
        print("aihwkit column: 1.2.0 as measured in issue 24 (no aihwkit here to time)")
    print(f"\n{'preset (pulsed, noisy IO)':28} {'aimc ms':>8} {'x digital':>9} {'aihwkit ms':>10}")
    for preset in PRESETS:
        runs = [(1, digital), (1, run_loop_step(digits_spec(preset), digits))]
        live = aihwkit_step(preset, digits)
        runs += [(1, live)] if live else []
        timed = time_interleaved(runs, max(7, steps // 2))
        ref = f"{timed[2] * 1e3:.3f} live" if live else AIHWKIT_ISSUE_24.get(preset, "-")
        ratio = timed[1] / timed[0]
        print(f"{preset:28} {timed[1] * 1e3:8.3f} {ratio:9.2f} {ref!s:>10}", flush=True)
    cnn_loop(max(7, steps // 10))


def cnn_loop(steps: int) -> None:
    """The CNN trained by the run loop (digital) against a plain torch loop over the same
    data and batch size: what a user sees beyond the layers' own cost."""
    g = torch.Generator().manual_seed(0)
    arrays = {  # random images: the speed does not depend on what they show
        "x_train": torch.rand(2000, 3, 32, 32, generator=g).numpy(),
        "y_train": torch.randint(0, 10, (2000,), generator=g).numpy(),
        "x_test": torch.rand(500, 3, 32, 32, generator=g).numpy(),
        "y_test": torch.randint(0, 10, (500,), generator=g).numpy(),
    }
    model_spec = {"kind": "cnn", "channels": [16, 32], "fc": 128}
    with tempfile.TemporaryDirectory() as folder:
        np.savez(Path(folder) / "images.npz", **arrays)  # type: ignore[arg-type]
        fields: dict[str, Any] = {"dataset": {"name": "npz", "path": f"{folder}/images.npz"}}
        fields |= {"model": model_spec, "analog": {"enabled": False}}
        fields |= {"optimizer": {"algorithm": "sgd", "lr": 0.01}}
        fields |= {"training": {"steps": 10**5, "micro_batch_size": 32, "eval_every": 10**9}}
        data = prepare_data(parse_spec(fields), torch.device("cpu"), None)
        loop = run_loop_step(fields, data)
    twin = torch_twin(build((3, 32, 32), model_spec, VARIANTS["sgd (digital)"])[0])
    opt = torch.optim.SGD(twin.parameters(), lr=0.01)
    order = torch.randperm(2000, generator=g)

    def plain(i: int) -> None:
        at = order[(i % 62) * 32 : (i % 62) * 32 + 32]
        opt.zero_grad()
        F.cross_entropy(twin(data.x_train[at]), data.y_train[at]).backward()
        opt.step()

    timed = time_interleaved([(1, plain), (1, loop)], steps)
    print(
        f"\ncnn 3x32x32 [16,32] fc128, b 32, digital, 1 thread: plain torch loop "
        f"{timed[0] * 1e3:.3f} ms, `aimc run` loop {timed[1] * 1e3:.3f} ms, "
        f"ratio {timed[1] / timed[0]:.2f}"
    )
    start = time.perf_counter()
    loop.training.measure()  # type: ignore[attr-defined]
    point = time.perf_counter() - start
    print(
        f"one metric point (gradient probe on {GRAD_SAMPLES} training samples, test set of "
        f"{len(data.x_test)}): {point * 1e3:.1f} ms = {point / timed[0]:.1f} plain steps "
        "(`aimc run` takes one at the start, one at the end, one every eval_every)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--threads",
        default="1",
        help="torch thread counts, comma-separated: '1,2' times both interleaved and "
        "prints how each ratio changes from the first count to the others",
    )
    parser.add_argument("--steps", type=int, default=200, help="MLP steps per timing")
    parser.add_argument(
        "--cases", default="mlp,digits,cnn,resnet", help="comma-separated: mlp,digits,cnn,resnet"
    )
    parser.add_argument("--small", action="store_true", help="issue 24's run-loop cases only")
    args = parser.parse_args()
    if args.small:
        torch.set_num_threads(1)  # the issue's figures are one thread: pinned, not policy
        small(args.steps)
        return
    wanted = set(args.cases.split(","))
    counts = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(counts[0])
    c_kernels = fusion_enabled() and native.library() is not None
    fusion = "C kernels" if c_kernels else f"torch ops ({ENV}=0 or no C compiler)"
    print(f"torch {torch.__version__}; fastest of interleaved blocks; update chains: {fusion}")
    head = "".join(f" {f'{t}T ms':>9} {f'{t}T x':>7}" for t in counts)
    changes = "".join(f" {f'{t}T/{counts[0]}T':>7}" for t in counts[1:])
    print(f"\n{'case':32} {'variant':32}{head}{changes}")
    for case, (key, shape, model_spec, batch, slowdown) in CASES.items():
        if key not in wanted:
            continue
        steps = max(7, args.steps // slowdown)
        torch_step = plain_torch_step(shape, model_spec, batch)
        bases = time_interleaved([(t, torch_step) for t in counts], steps)
        row = "".join(f" {b * 1e3:9.3f} {1.0:7.2f}" for b in bases)
        print(f"{case:32} {'plain torch nn + optim.SGD':32}{row}")
        for name, variant in VARIANTS.items():
            aimc = aimc_step(shape, model_spec, batch, variant)
            runs = [(t, f) for t in counts for f in (torch_step, aimc)]
            timed = time_interleaved(runs, steps)
            ratios = [timed[2 * k + 1] / timed[2 * k] for k in range(len(counts))]
            row = "".join(f" {timed[2 * k + 1] * 1e3:9.3f} {r:7.2f}" for k, r in enumerate(ratios))
            row += "".join(f" {r / ratios[0]:7.2f}" for r in ratios[1:])
            print(f"{'':32} {name:32}{row}", flush=True)
    if "mlp" in wanted:
        torch.set_num_threads(counts[0])
        print(f"\npulsed update breakdown (784x256 tile, b=64, {counts[0]} thread(s)):")
        pulsed_breakdown(args.steps)


if __name__ == "__main__":
    main()
