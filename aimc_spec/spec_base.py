"""What every part of the job spec shares: the strict base model and the error a spec
that cannot run raises, with one (field path, message) per fault."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError


class SpecError(ValueError):
    """A job spec that cannot run; `problems` holds one (field path, message) per fault."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in problems))


def _fail(path: str, message: str) -> PydanticCustomError:
    """A cross-field error whose field path (relative to the validated model) rides in ctx."""
    return PydanticCustomError("spec", "{message}", {"path": path, "message": message})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _same(a: Any, b: Any) -> bool:
    """Equal, numbers within rounding (a preset's value given again in another spelling)."""
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b)
