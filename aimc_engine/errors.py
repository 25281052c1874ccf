"""The engine's error for a job that cannot run as specified."""

from __future__ import annotations


class RunError(RuntimeError):
    """A job that cannot run as specified (message names the field)."""
