"""The path parameters that name a record (job, sweep, dataset, user, artifact), each
checked by a pattern in the route before it becomes part of a Redis key.

A Redis key is the prefix and the parts joined by ':' (aimc_store.keys), so an id with
a colon names another key: `GET /v1/jobs/<id>:metrics` read job <id>'s metrics stream
as a job hash (a WRONGTYPE 500) and told a caller whether another user's job exists.
Ids are made by the store from hex digits (with a `ds_` or `sw_` prefix); the patterns
allow a little more than that (letters, digits, '_', '-') so an id of an older record
still matches, but never ':', '*', '/' or whitespace. An id that does not match is a
422 naming the parameter and the pattern, before any Redis call.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path
from fastapi.exceptions import RequestValidationError

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# artifact names are file names the worker chose (result.json, weights.safetensors)
ARTIFACT_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$"


def _id(what: str) -> Any:
    """The path parameter of a `what`'s id (fastapi.Path, which is typed Any)."""
    return Path(
        pattern=ID_PATTERN,
        description=f"The {what}'s id: letters, digits, '_' and '-', 1 to 64 of them.",
    )


JobId = Annotated[str, _id("job")]
SweepId = Annotated[str, _id("sweep")]
DatasetId = Annotated[str, _id("dataset")]
UserId = Annotated[str, _id("user")]
ArtifactName = Annotated[
    str,
    Path(
        pattern=ARTIFACT_PATTERN,
        description="An artifact's file name, as GET .../artifacts lists it.",
    ),
]

_ID = re.compile(ID_PATTERN)


def check_id(name: str, value: str) -> str:
    """`value` if it matches ID_PATTERN, else the 422 FastAPI gives a path parameter that
    fails its pattern (for routes that read their path parameters themselves)."""
    if _ID.match(value):
        return value
    raise RequestValidationError(
        [
            {
                "type": "string_pattern_mismatch",
                "loc": ("path", name),
                "msg": f"String should match pattern '{ID_PATTERN}'",
                "input": value,
                "ctx": {"pattern": ID_PATTERN},
            }
        ]
    )
