"""/v1/users: the admin creates users and their API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, Field

from service.deps import StoreDep, admin
from service.errors import responses

router = APIRouter(prefix="/v1/users", tags=["users"])


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="Who the key is for.")


class UserKey(BaseModel):
    id: str
    name: str
    api_key: str = Field(description="Shown once; only its hash is stored.")


@router.post(
    "",
    status_code=201,
    response_model=UserKey,
    dependencies=[Depends(admin)],
    responses=responses(400, 401, 413, 422),
)
def create_user(store: StoreDep, body: Annotated[NewUser, Body()]) -> UserKey:
    user_id, key = store.create_user(body.name)
    return UserKey(id=user_id, name=body.name, api_key=key)
