"""What an error about an unknown field says: the closest known field to a misspelt one
(`optimiser` -> `optimizer`), or, for a field of another device family, the families it
belongs to and the fields the chosen one takes. The spec's, a study's and the API's
422s alike (spec.py spec_problems)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

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


def tag_of(model: type[BaseModel]) -> tuple[str, str] | None:
    """(field, value) of a union member's tag: its one field typed with a one-value
    Literal (a device family's `model`), or None."""
    for name, info in model.model_fields.items():
        args = get_args(info.annotation)
        if get_origin(info.annotation) is Literal and len(args) == 1 and isinstance(args[0], str):
            return name, args[0]
    return None


@dataclass
class Place:
    """Where a pydantic error's location leads: `path`, the location as the user wrote
    it (pydantic adds the tag of the union member it validated, e.g. `softbounds` after
    `analog.device`: left out); `models`, those holding the mapping at its end;
    `members`, the union's members when that mapping is one of them."""

    path: list[str] = field(default_factory=list)
    models: list[type[BaseModel]] = field(default_factory=list)
    members: list[type[BaseModel]] = field(default_factory=list)


def locate(model: type[BaseModel], loc: Sequence[str]) -> Place:
    """Follow `loc` through nested models. A part that is no field (a list index, a dict
    key) keeps the models found so far: they are the ones holding the fields; a part
    that is a union member's tag picks that member."""
    place = Place(models=[model])
    for part in loc:
        tagged = [m for m in place.models if (tag := tag_of(m)) is not None and tag[1] == part]
        if len(place.models) > 1 and len(tagged) == 1:
            place.members, place.models = place.models, tagged
            continue
        place.path.append(part)
        found = [m.model_fields[part] for m in place.models if part in m.model_fields]
        if found:
            place.models = [m for info in found for m in models_in(info.annotation)]
            place.members = []
    return place


def known_fields(model: type[BaseModel], parent: Sequence[str]) -> list[str]:
    """The field names accepted at `parent` (the path to an unknown field's mapping)."""
    return sorted({name for m in locate(model, parent).models for name in m.model_fields})


def closest_field(model: type[BaseModel], loc: Sequence[str]) -> str | None:
    """The known field most like the unknown one at `loc` (its path, its name last), or
    None when none is alike enough to be a likely misspelling."""
    if not loc:
        return None
    matches = difflib.get_close_matches(loc[-1], known_fields(model, loc[:-1]), n=1, cutoff=CUTOFF)
    return matches[0] if matches else None


def other_member_field(place: Place, name: str) -> str | None:
    """The message for a field that the chosen union member lacks and others have (a
    field of another device family), naming those and the chosen one's fields; None
    when no member has it."""
    if len(place.models) != 1 or (tag := tag_of(place.models[0])) is None:
        return None
    owners = [t[1] for m in place.members if name in m.model_fields and (t := tag_of(m))]
    if not owners:
        return None
    key, value = tag
    fields = ", ".join(place.models[0].model_fields)
    names = " or ".join(", ".join(repr(o) for o in owners).rsplit(", ", 1))
    return f"not a field of {key} {value!r} (only of {key} {names}); {value!r} takes: {fields}"


def unknown_field(model: type[BaseModel], loc: Sequence[str]) -> tuple[list[str], str]:
    """(the location as written, the message) of an unknown field pydantic reported at
    `loc`: a field of another union member, or else the closest known field if any."""
    place = locate(model, loc[:-1])
    path = [*place.path, loc[-1]]
    other = other_member_field(place, loc[-1]) if loc else None
    if other is not None:
        return path, other
    msg = "unknown field (not part of the job spec)"
    if (match := closest_field(model, loc)) is not None:
        msg += f"; did you mean {match!r}?"
    return path, msg
