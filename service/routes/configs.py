"""/v1/configs: aihwkit 1.2's training configurations that `analog.config` accepts."""

from __future__ import annotations

from fastapi import APIRouter

from aimc_spec.configs import CONFIGS
from service.deps import CurrentUser
from service.errors import responses
from service.schemas import ConfigOut

router = APIRouter(prefix="/v1/configs", tags=["configs"])


@router.get("", response_model=list[ConfigOut], responses=responses(401, 429))
def list_configs(_: CurrentUser) -> list[ConfigOut]:
    """The 52 configurations in aihwkit's order: its class name, aimc's alias, one line
    on what it trains with, and the part of a job spec it stands for."""
    return [
        ConfigOut(name=c.name, alias=c.alias, summary=c.summary, spec=c.spec)
        for c in CONFIGS.values()
    ]
