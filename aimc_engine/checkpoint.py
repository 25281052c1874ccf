"""Checkpoints: a run's state between two actions, to continue it exactly elsewhere.

A checkpoint is taken only where no micro-batch is in flight (not under the async
schedules), so the model's weights, the algorithms' update counts, the random
streams and the epoch's shuffle are all there is to the training state; the metric
points so far and the running train loss come along so that the resumed run reports
what the uninterrupted one would. The blob records its `FORMAT` and the digest of
the spec it was written for: resuming another spec, or another format, is refused
rather than training something no spec describes.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from aimc_engine.errors import RunError
from aimc_spec.spec import JobSpec

# Bumped when a checkpoint's contents or the run's random streams change: a checkpoint
# of another format cannot continue the run it came from. 3: the spec's digest. 4:
# counter-based uniforms for stochastic rounding, pulse trains and write-noise touches.
# 5: random streams per stage; actions run counted per stage. 6: the pulsed update of
# linear-family devices draws its noise per element from counter-based keys. 7: each
# tile's pulse counter. 8: the pulsed update of curved-family devices (pulsed_curve.py)
# draws its order and noise per element from counter-based keys.
FORMAT = 8

# Spec fields that do not change what is trained nor what is measured. Only the free-
# text name: every other field steers the numerics (seed, device: CPU and CUDA round
# differently), the schedule (steps/epochs, pipeline), the metric points the checkpoint
# carries (eval_every, and with it how far the observation stream has advanced) or
# their simulated clock (latency_ns).
UNTRAINED_FIELDS = ("name",)


def spec_digest(spec: JobSpec) -> str:
    """SHA-256 of the canonical spec JSON (normalised: presets expanded, derived fields
    filled, so two spellings of one spec agree; sorted keys) without UNTRAINED_FIELDS."""
    data = spec.normalised()
    for name in UNTRAINED_FIELDS:
        data.pop(name)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Checkpoint:
    """The state of a run after `executed` actions of its schedule."""

    model: dict[str, Tensor]  # the model's state_dict: weights and tile states
    updates: list[int]  # per stage, updates its algorithm has applied
    data_gen: Tensor  # the random streams' states (seeds.py)
    noise_gens: list[Tensor]  # per stage
    observe_gens: list[Tensor]  # per stage
    order: Tensor  # the current epoch's shuffle of the training set
    metrics: list[dict[str, Any]]  # metric points so far
    running: tuple[float, int]  # train-loss sum and count since the last metric point
    done: int  # micro-batches stage 0 has updated
    executed: list[int]  # per stage, actions of its schedule run
    wall: float  # seconds of training so far


def dump(checkpoint: Checkpoint, spec: JobSpec) -> bytes:
    """The checkpoint as bytes, stamped with FORMAT and the spec's digest."""
    state = {f.name: getattr(checkpoint, f.name) for f in fields(Checkpoint)}
    state["format"] = FORMAT
    state["spec_digest"] = spec_digest(spec)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load(blob: bytes, spec: JobSpec, device: torch.device) -> Checkpoint:
    """The checkpoint in `blob`, tensors on `device`; RunError if it is not one of this
    format written for this spec."""
    try:
        # weights_only: tensors and plain containers, never arbitrary pickled objects
        state = torch.load(io.BytesIO(blob), map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise RunError(f"resume: not an aimc checkpoint ({exc})") from None
    if not isinstance(state, dict):
        raise RunError(f"resume: not an aimc checkpoint (holds a {type(state).__name__})")
    found = state.get("format", 1)  # checkpoints before format 2 recorded none
    if found != FORMAT:
        raise RunError(
            f"resume: the checkpoint is of format {found}, written by another aimc version; "
            f"this one continues format {FORMAT} only (run the job again from the start)"
        )
    digest = spec_digest(spec)
    if state["spec_digest"] != digest:
        raise RunError(
            f"resume: the checkpoint was written for another spec (digest "
            f"{state['spec_digest'][:12]}, this spec's {digest[:12]}); a checkpoint only "
            f"continues the spec it came from, equal in every field but "
            f"{', '.join(UNTRAINED_FIELDS)}"
        )
    return Checkpoint(**{f.name: state[f.name] for f in fields(Checkpoint)})
