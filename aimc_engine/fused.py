"""Fused update chains: stochastic rounding, response, noise and clip; pulse trains,
update management and the count of coincidences.

Each function below is a chain of torch ops over a tile or a batch of pulse trains.
Run op by op, every op is one pass over memory, and an update makes a dozen of them.
`Fused` runs a chain as one loop instead: on the CPU as its C transcription
(update_kernels.c, built at first use by native.py), which also skips the elements
that get no pulse, most of them, and counts sparse coincidences pair by pair; on
other devices through torch.compile. The Python
function is the reference and the fallback, run op by op when AIMC_FUSE is 0, when
no compiler exists, or after a build or compile fails. The random numbers are
either passed in or counter-based (rng.counter_uniform, computed bit for bit alike
in C), so every path gives the same numbers up to float rounding of expm1 and exp.

Device constants travel as one small tensor `c`, not Python floats: dynamo would
compile the function anew for every new float (every learning rate, every tile).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
from collections.abc import Callable

import torch
from torch import Tensor

from aimc_engine import native
from aimc_engine.rng import counter_uniform

log = logging.getLogger(__name__)

ENV = "AIMC_FUSE"  # "0" / "false" / "off": neither C kernels nor compiling, torch ops

# Calling a torch.compile'd function costs ~0.1 ms of guards and bookkeeping: smaller
# tiles run op by op on devices without the C kernels.
MIN_FUSED_ELEMENTS = 32768

# Indices into the constants tensor `c` of a uniform linear-family device (see
# Device.fused_constants): bounds, and per direction the closed form's log a and
# fixed point w* and the additive noise's std per sqrt(pulse) (signed like the step), and
# the coefficient of the pulse-order term (devices/linear.py: pulses_).
LO, HI, LOG_UP, FIX_UP, LOG_DOWN, FIX_DOWN, NOISE_UP, NOISE_DOWN, ORDER = range(9)


@functools.cache
def compiler_available() -> bool:
    """Whether torch.compile (inductor) can build here: a C++ compiler on PATH for its
    host code (looked up once)."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c)


def fusion_enabled() -> bool:
    """Fusion is on unless AIMC_FUSE says off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "off", "no")


# (the loaded library, the chain's arguments) -> whether it ran (False: run the torch ops)
NativeCall = Callable[..., bool]


class Fused:
    """A chain (writing its result into its first argument) run as one loop where it can
    be: the C kernel on the CPU, torch.compile elsewhere, plain torch otherwise.

    A failed compile (no Python headers, an unsupported backend, ...) is logged once
    and the chain falls back to plain torch for the rest of the process; a C kernel
    that cannot be built is logged once by native.py.
    """

    broken = False  # set, process-wide, after the first failed torch.compile

    def __init__(self, fn: Callable[..., None], native_call: NativeCall) -> None:
        self.fn = fn
        self.native_call = native_call
        self.compiled: Callable[..., None] | None = None

    def __call__(self, w: Tensor, *args: Tensor | None) -> None:
        if fusion_enabled() and self._run_fused(w, *args):
            return
        self.fn(w, *args)

    def _run_fused(self, w: Tensor, *args: Tensor | None) -> bool:
        """Run the chain as one loop; False where this call must run op by op."""
        if w.device.type == "cpu":
            lib = native.library()
            if lib is None or w.dtype != torch.float32 or not w.is_contiguous():
                return False
            return self.native_call(lib, w, *args)
        if w.numel() < MIN_FUSED_ELEMENTS or Fused.broken or not compiler_available():
            return False
        if self.compiled is None:
            # dynamic: one kernel for every tile shape, not one compile per shape
            self.compiled = torch.compile(self.fn, dynamic=True)
        try:
            self.compiled(w, *args)
            return True
        except Exception as exc:  # the plain chain then raises a real error again
            Fused.broken = True
            log.warning("torch.compile failed (%s); running the update op by op", exc)
            return False


def _c_arrays(*tensors: Tensor | None) -> tuple[list[Tensor | None], list[int | None]]:
    """Each tensor as a contiguous float32 tensor (itself when it is one) and its address
    for a C kernel (None stays None, a NULL pointer); the caller keeps the first list
    alive while the kernel runs."""
    arrays = [None if t is None else t.to(torch.float32).contiguous() for t in tensors]
    return arrays, [None if a is None else a.data_ptr() for a in arrays]


def _rounded_linear(
    w: Tensor,
    grad: Tensor,
    scale: Tensor,
    key: Tensor,
    xi: Tensor | None,
    c: Tensor,
    moved: Tensor,
) -> None:
    """The rounded update on a linear-family device, written into w: with v = grad * scale
    = dW / dw_min, n = floor(|v| + u) pulses of sign(v) (u: counter_uniform of the key,
    element by element: stochastic rounding),
    applied in closed form: w + expm1(n log a) (w - w*), plus additive noise
    sqrt(n) sigma dw xi, clipped. Every element's pulses share one sign, so their order
    cannot matter. moved (0-d, float64) gets sum |change|, the tile's pulse counter's."""
    v = grad * scale
    n = torch.floor(v.abs() + counter_uniform(tuple(w.shape), key, w.device))
    up = v > 0
    log_a = torch.where(up, c[LOG_UP], c[LOG_DOWN])
    fixed = torch.where(up, c[FIX_UP], c[FIX_DOWN])
    change = torch.expm1(n * log_a) * (w - fixed)
    if xi is not None:
        change = change + torch.where(up, c[NOISE_UP], c[NOISE_DOWN]) * n.sqrt() * xi
    new = torch.clamp(w + change, c[LO], c[HI])
    moved.copy_((new - w).abs().sum(dtype=torch.float64))
    w.copy_(new)


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


def _manage(
    a: Tensor, b: Tensor, slots: Tensor, x_max: Tensor, d_max: Tensor, constants: Tensor
) -> None:
    """Update management per sample, written into a, b and slots (N,); constants holds
    lr / dw_min and BL (pulses.manage_updates)."""
    per_pulse, bit_length = constants[0], constants[1]
    active = (x_max > 0) & (d_max > 0)
    need = x_max * d_max * per_pulse  # pulses the sample's largest element needs
    bl = torch.minimum(torch.ceil(need).clamp_(min=1), bit_length)
    d_val = torch.where(need > bit_length, d_max * bit_length / need, d_max)
    k = per_pulse / bl  # A_n B_n
    a.copy_(torch.where(active, torch.sqrt(k * x_max / d_val), 0.0))
    b.copy_(torch.where(active, torch.sqrt(k * d_val / x_max), 0.0))
    slots.copy_(bl)


def _manage_c(
    lib: ctypes.CDLL,
    a: Tensor,
    b: Tensor,
    slots: Tensor,
    x_max: Tensor,
    d_max: Tensor,
    constants: Tensor,
) -> bool:
    _alive, (x_p, d_p) = _c_arrays(x_max, d_max)
    per_pulse, bit_length = (float(v) for v in constants)
    lib.manage(
        a.data_ptr(), b.data_ptr(), slots.data_ptr(), x_p, d_p, per_pulse, bit_length, a.numel()
    )
    return True


def _pulse_train(fired: Tensor, values: Tensor, row_scale: Tensor, key: Tensor) -> None:
    """Signed pulse trains, written into fired (R, cols): element j of row r fires when
    u + min(row_scale[r] |values[r, j]|, 1) >= 1, u = counter_uniform of the key, i.e.
    with that probability, and then holds sign(values[r, j]); 0 where it does not."""
    p = (row_scale[:, None] * values.abs()).clamp_(max=1)
    fire = torch.floor(counter_uniform(tuple(values.shape), key, values.device).add_(p))
    fired.copy_(fire.mul_(torch.sign(values)))


def _pulse_train_c(
    lib: ctypes.CDLL, fired: Tensor, values: Tensor, row_scale: Tensor, key: Tensor
) -> bool:
    _alive, (values_p, scale_p) = _c_arrays(values, row_scale)
    rows, cols = values.shape
    lib.pulse_train(fired.data_ptr(), values_p, scale_p, int(key), rows, cols)
    return True


def _coincidences(n_up: Tensor, n_down: Tensor, fired_d: Tensor, fired_x: Tensor) -> None:
    """Coincidences of signed firings (H, out) and (H, in), written into n_up and n_down
    (out, in): all of them |fired_d|^T |fired_x|, their signs' agreement fired_d^T fired_x,
    so n_down = (all + agreement) / 2 and n_up = all - n_down (exact small integers)."""
    total = fired_d.abs().T @ fired_x.abs()
    n_down.copy_((fired_d.T @ fired_x).add_(total).mul_(0.5))
    n_up.copy_(total.sub_(n_down))


def _coincidences_c(
    lib: ctypes.CDLL, n_up: Tensor, n_down: Tensor, fired_d: Tensor, fired_x: Tensor
) -> bool:
    """Pair by pair when the firings are sparse (most updates: each slot fires a few
    errors and inputs); False, for the two matrix products, when they are dense."""
    _alive, (d_p, x_p) = _c_arrays(fired_d, fired_x)
    rows, outs = fired_d.shape
    ins = fired_x.shape[1]
    # the products cost about 2 rows outs ins multiply-adds; a pair costs ~10 of them
    most_pairs = rows * outs * ins // 8
    done = lib.coincidences(
        n_up.data_ptr(), n_down.data_ptr(), d_p, x_p, rows, outs, ins, most_pairs
    )
    return bool(done == 1)  # 0: too dense, -1: out of memory


def _rounded_linear_c(
    lib: ctypes.CDLL,
    w: Tensor,
    grad: Tensor,
    scale: Tensor,
    key: Tensor,
    xi: Tensor | None,
    c: Tensor,
    moved: Tensor,
) -> bool:
    _alive, (grad_p, xi_p, c_p) = _c_arrays(grad, xi, c)
    numel = w.numel()
    blocks = torch.empty((numel + 63) // 64, dtype=torch.float64)  # BLOCK's sums
    lib.rounded_linear(
        w.data_ptr(), grad_p, float(scale), int(key), xi_p, c_p, numel, blocks.data_ptr()
    )
    moved.copy_(blocks.sum())  # below torch's grain size: one thread, in order
    return True


def _pulses_linear_c(
    lib: ctypes.CDLL,
    w: Tensor,
    n_up: Tensor,
    n_down: Tensor,
    xi_up: Tensor | None,
    xi_down: Tensor | None,
    c: Tensor,
) -> bool:
    _alive, pointers = _c_arrays(n_up, n_down, xi_up, xi_down, c)
    lib.pulses_linear(w.data_ptr(), *pointers, w.numel())
    return True


rounded_linear = Fused(_rounded_linear, _rounded_linear_c)
pulses_linear = Fused(_pulses_linear, _pulses_linear_c)
pulse_train = Fused(_pulse_train, _pulse_train_c)
coincidences = Fused(_coincidences, _coincidences_c)
manage = Fused(_manage, _manage_c)
