"""Shared helpers for the engine tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from aimc_engine.devices import Device
from aimc_engine.spec import DeviceSpec


def make_device(shape: tuple[int, ...] = (4, 3), seed: int = 0, **fields: Any) -> Device:
    """A Device of the given spec fields (DeviceSpec defaults otherwise)."""
    return Device(DeviceSpec(**fields), shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def expected_after(dev: Device, w: Tensor, delta: Tensor, g: torch.Generator) -> Tensor:
    """The weights after dev's in-place expected update, leaving w and delta untouched."""
    out = w.clone()
    dev.expected_update_(out, delta.clone(), g)
    return out


def pulsed_after(
    dev: Device, w: Tensor, n_up: Tensor, n_down: Tensor, g: torch.Generator
) -> Tensor:
    """The weights after dev's in-place pulse application, leaving w untouched."""
    out = w.clone()
    dev.apply_pulses_(out, n_up, n_down, g)
    return out
