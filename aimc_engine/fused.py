"""Fused element-wise chains of the device updates (stochastic rounding, response, noise, clip).

Each function below is a chain of element-wise torch ops over a tile. Run op by
op, every op is one pass over memory, and an update makes a dozen of them; with
torch.compile (inductor) the chain becomes one loop, one pass. The same Python
function is both paths: `Fused` compiles it where a C++ compiler exists and
AIMC_FUSE is not 0, and otherwise, or if compiling fails, runs it as it is. The
random numbers are drawn outside (from the run's generator), so the two paths
give the same numbers up to float rounding of expm1 and friends.

Device constants travel as one small tensor `c`, not Python floats: dynamo would
compile the function anew for every new float (every learning rate, every tile).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

ENV = "AIMC_FUSE"  # "0" / "false" / "off": never compile, run the chains op by op

# Calling a compiled function costs ~0.1-0.2 ms of guards and bookkeeping on a CPU,
# about what a dozen element-wise passes over this many elements cost: smaller tiles
# run op by op.
MIN_FUSED_ELEMENTS = 32768

# Indices into the constants tensor `c` of a uniform linear-family device (see
# Device.fused_constants): bounds, and per direction the closed form's log a and
# fixed point w* and the additive noise's std per sqrt(pulse) (signed like the step), and
# the coefficient of the pulse-order term (Device._pulses_closed_form_).
LO, HI, LOG_UP, FIX_UP, LOG_DOWN, FIX_DOWN, NOISE_UP, NOISE_DOWN, ORDER = range(9)


@functools.cache
def compiler_available() -> bool:
    """Whether inductor can build CPU kernels here: a C++ compiler on PATH (looked up once)."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


def fusion_enabled() -> bool:
    """Fusion is on unless AIMC_FUSE says off or there is no compiler to fuse with."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "off", "no"):
        return False
    return compiler_available()


class Fused:
    """A chain (writing its result into its first argument) that runs compiled when
    fusion is enabled, as plain torch otherwise.

    A failed compile (no Python headers, an unsupported backend, ...) is logged once
    and the chain falls back to plain torch for the rest of the process.
    """

    broken = False  # set, process-wide, after the first failed compile

    def __init__(self, fn: Callable[..., None]) -> None:
        self.fn = fn
        self.compiled: Callable[..., None] | None = None

    def __call__(self, w: Tensor, *args: Tensor | None) -> None:
        if w.numel() >= MIN_FUSED_ELEMENTS and not Fused.broken and fusion_enabled():
            if self.compiled is None:
                # dynamic: one kernel for every tile shape, not one compile per shape
                self.compiled = torch.compile(self.fn, dynamic=True)
            try:
                self.compiled(w, *args)
                return
            except Exception as exc:  # the plain chain below raises a real error again
                Fused.broken = True
                log.warning("torch.compile failed (%s); running the update op by op", exc)
        self.fn(w, *args)


def _rounded_linear(
    w: Tensor, grad: Tensor, scale: Tensor, u: Tensor, xi: Tensor | None, c: Tensor
) -> None:
    """The rounded update on a linear-family device, written into w: with v = grad * scale
    = dW / dw_min, n = floor(|v| + u) pulses of sign(v) (u uniform: stochastic rounding),
    applied in closed form: w + expm1(n log a) (w - w*), plus additive noise
    sqrt(n) sigma dw xi, clipped. Every element's pulses share one sign, so their order
    cannot matter."""
    v = grad * scale
    n = torch.floor(v.abs() + u)
    up = v > 0
    log_a = torch.where(up, c[LOG_UP], c[LOG_DOWN])
    fixed = torch.where(up, c[FIX_UP], c[FIX_DOWN])
    change = torch.expm1(n * log_a) * (w - fixed)
    if xi is not None:
        change = change + torch.where(up, c[NOISE_UP], c[NOISE_DOWN]) * n.sqrt() * xi
    w.copy_(torch.clamp(w + change, c[LO], c[HI]))


def _pulses_linear(
    w: Tensor,
    n_up: Tensor,
    n_down: Tensor,
    xi_up: Tensor | None,
    xi_down: Tensor | None,
    c: Tensor,
) -> None:
    """n_up and n_down pulses on a linear-family device in closed form, written into w:
    each direction w + expm1(n log a) (w - w*) plus additive noise sqrt(n) sigma dw xi,
    clipped, then the term that gives up-then-down the mean of a random order."""
    change = torch.expm1(n_up * c[LOG_UP]) * (w - c[FIX_UP])
    if xi_up is not None:
        change = change + c[NOISE_UP] * n_up.sqrt() * xi_up
    moved = torch.clamp(w + change, c[LO], c[HI])
    change = torch.expm1(n_down * c[LOG_DOWN]) * (moved - c[FIX_DOWN])
    if xi_down is not None:
        change = change + c[NOISE_DOWN] * n_down.sqrt() * xi_down
    moved = torch.clamp(moved + change, c[LO], c[HI])
    damping = torch.exp(n_up * (c[LOG_UP] / 2) + n_down * (c[LOG_DOWN] / 2))
    w.copy_(torch.clamp(moved + damping * n_up * n_down * c[ORDER], c[LO], c[HI]))


rounded_linear = Fused(_rounded_linear)
pulses_linear = Fused(_pulses_linear)
