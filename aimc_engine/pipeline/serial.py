"""Bytes of a stage's tensors for the launcher: copies (the weights change after), and
loadable without unpickling arbitrary objects."""

from __future__ import annotations

import io
import resource
from typing import Any

import torch
from torch import Tensor


def to_bytes(obj: Any) -> bytes:
    """Tensors and plain data as torch.save bytes (copied: the weights change after)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def from_bytes(raw: bytes) -> Any:
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def stage_state(module: torch.nn.Module) -> dict[str, Tensor]:
    """A stage's state_dict under the whole model's keys (`units.<index>....`)."""
    return {f"units.{key}": value for key, value in module.state_dict().items()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
