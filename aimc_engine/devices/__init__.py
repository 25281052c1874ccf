"""Analog devices: response-function families (family.py, one module each) and the
device of a tile (device.py) with its update rules."""

from aimc_engine.devices.device import Device
from aimc_engine.devices.family import FAMILIES, LINEAR_FAMILY, raw_response, symmetric_parts
from aimc_engine.devices.replay import MAX_INTERLEAVED_STEPS

__all__ = [
    "FAMILIES",
    "LINEAR_FAMILY",
    "MAX_INTERLEAVED_STEPS",
    "Device",
    "raw_response",
    "symmetric_parts",
]
