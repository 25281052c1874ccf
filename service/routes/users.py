"""/v1/users: the admin creates, lists and deletes users and rotates their API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response

from service.deps import StoreDep, admin
from service.errors import ProblemError, responses
from service.ids import UserId
from service.schemas import NewUser, UserKey, UserOut

router = APIRouter(prefix="/v1/users", tags=["users"], dependencies=[Depends(admin)])


def _no_user(user_id: str) -> ProblemError:
    return ProblemError(404, "Not Found", f"no user {user_id!r}")


@router.post(
    "", status_code=201, response_model=UserKey, responses=responses(400, 401, 409, 413, 422)
)
def create_user(store: StoreDep, body: Annotated[NewUser, Body()]) -> UserKey:
    """A user and their API key; 409 if the name is taken."""
    created = store.users.create(body.name)
    if created is None:
        detail = f"a user named {body.name!r} exists; rotate their key or pick another name"
        raise ProblemError(409, "Conflict", detail, errors=[{"loc": "name", "msg": detail}])
    user_id, key = created
    return UserKey(id=user_id, name=body.name, api_key=key)


@router.get("", response_model=list[UserOut], responses=responses(401))
def list_users(store: StoreDep) -> list[UserOut]:
    """Every user, oldest first (their keys are stored hashed and never listed)."""
    return [UserOut.of(u) for u in store.users.all()]


@router.post("/{user_id}/key", response_model=UserKey, responses=responses(401, 404, 422))
def rotate_key(user_id: UserId, store: StoreDep) -> UserKey:
    """A new API key for the user; the old one is refused (401) from now on."""
    user = store.users.get(user_id)
    key = store.users.rotate_key(user_id) if user else None
    if user is None or key is None:
        raise _no_user(user_id)
    return UserKey(id=user_id, name=user.name, api_key=key)


@router.delete("/{user_id}", status_code=204, responses=responses(401, 404, 422))
def delete_user(user_id: UserId, store: StoreDep) -> Response:
    """Remove the user: their key is refused at once, their live jobs are cancelled."""
    if not store.users.delete(user_id):
        raise _no_user(user_id)
    return Response(status_code=204)
