"""Users and their API keys (kept only as SHA-256 hashes)."""

from __future__ import annotations

import secrets
import time
import uuid

from aimc_spec.vocabulary import JobState
from aimc_store.base import Backend, Part
from aimc_store.jobs import Jobs
from aimc_store.keys import LIVE, hash_key
from aimc_store.records import User


def new_api_key() -> str:
    return "aimc_" + secrets.token_urlsafe(24)


class Users(Part):
    """`store.users`: who may call the API, and with which key."""

    def __init__(self, backend: Backend, jobs: Jobs) -> None:
        super().__init__(backend)
        self.jobs = jobs  # deleting a user cancels their live jobs

    def create(self, name: str) -> tuple[str, str] | None:
        """A new user; returns (user id, API key), or None if the name is taken. The key is
        shown once and stored hashed."""
        user_id = uuid.uuid4().hex[:12]
        if not self.r.set(self.key("username", name), user_id, nx=True):
            return None
        api_key = new_api_key()
        hashed = hash_key(api_key)
        now = time.time()
        pipe = self.r.pipeline()
        pipe.hset(self.key("user", user_id), mapping={"name": name, "created": now, "key": hashed})
        pipe.set(self.key("key", hashed), user_id)
        pipe.zadd(self.key("users"), {user_id: now})
        pipe.execute()
        return user_id, api_key

    def all(self) -> list[User]:
        """Every user, oldest first; keys are never listed."""
        ids = [u.decode() for u in self.r.zrange(self.key("users"), 0, -1)]
        pipe = self.r.pipeline(transaction=False)
        for user_id in ids:
            pipe.hmget(self.key("user", user_id), ["name", "created"])
        return [
            User(user_id, name.decode(), float(created))
            for user_id, (name, created) in zip(ids, pipe.execute(), strict=True)
            if name is not None
        ]

    def get(self, user_id: str) -> User | None:
        record = self.backend.text_hash(self.key("user", user_id))
        if record is None:
            return None
        return User(user_id, record["name"], float(record["created"]))

    def rotate_key(self, user_id: str) -> str | None:
        """A new API key for the user; the old one stops working at once. None if no
        such user."""
        old = self.r.hget(self.key("user", user_id), "key")
        if old is None and not self.r.exists(self.key("user", user_id)):
            return None
        api_key = new_api_key()
        hashed = hash_key(api_key)
        pipe = self.r.pipeline()
        if old is not None:
            pipe.delete(self.key("key", old.decode()))
        pipe.set(self.key("key", hashed), user_id)
        pipe.hset(self.key("user", user_id), "key", hashed)
        pipe.execute()
        return api_key

    def delete(self, user_id: str) -> bool:
        """Remove the user and revoke their key; their live jobs are asked to cancel (jobs
        and datasets then expire with the retention). False if no such user."""
        record = self.backend.text_hash(self.key("user", user_id))
        if record is None:
            return False
        live: set[str] = set()
        for state in LIVE:
            live |= {j.decode() for j in self.r.smembers(self.key("user", user_id, "in", state))}
        pipe = self.r.pipeline()
        if "key" in record:
            pipe.delete(self.key("key", record["key"]))
        pipe.delete(self.key("user", user_id))
        pipe.delete(self.key("username", record["name"]))
        pipe.zrem(self.key("users"), user_id)
        for job_id in live:
            pipe.set(self.key("job", job_id, "cancel"), 1)
        pipe.execute()
        for job_id in live:
            job = self.jobs.get(job_id)
            if job is not None and job.state == JobState.QUEUED:
                self.jobs.set_state(job_id, JobState.CANCELLED)
        return True
