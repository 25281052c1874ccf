"""The closest known field to a misspelt one (`optimiser` -> `optimizer`), for the errors
that name an unknown field: the spec's, a study's and the API's 422s alike."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, get_args

from pydantic import BaseModel

# how alike a known field must be to be offered (difflib's ratio): `optimiser` and
# `optimizer` score 0.89, `modle` and `model` 0.8; unrelated short names stay below 0.6
CUTOFF = 0.6


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds: itself, or those inside a list, a dict,
    an Optional, a union or an Annotated union of device families."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in models_in(arg)]


def known_fields(model: type[BaseModel], parent: Sequence[str]) -> list[str]:
    """The field names accepted at `parent` (the path to an unknown field's mapping),
    following nested models. A path part that is no field (a list index, a dict key, a
    union's tag) keeps the models found so far: they are the ones holding the fields."""
    models = [model]
    for part in parent:
        found = [m.model_fields[part] for m in models if part in m.model_fields]
        if found:
            models = [m for field in found for m in models_in(field.annotation)]
    return sorted({name for m in models for name in m.model_fields})


def closest_field(model: type[BaseModel], loc: Sequence[str]) -> str | None:
    """The known field most like the unknown one at `loc` (its path, its name last), or
    None when none is alike enough to be a likely misspelling."""
    if not loc:
        return None
    matches = difflib.get_close_matches(loc[-1], known_fields(model, loc[:-1]), n=1, cutoff=CUTOFF)
    return matches[0] if matches else None
