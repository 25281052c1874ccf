"""Shared helpers for the engine tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from aimc_engine.devices import Device
from aimc_engine.spec import DeviceSpec


def make_device(shape: tuple[int, ...] = (4, 3), seed: int = 0, **fields: Any) -> Device:
    """A Device of the given spec fields (DeviceSpec defaults otherwise)."""
    return Device(DeviceSpec(**fields), shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
