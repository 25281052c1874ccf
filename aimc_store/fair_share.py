"""Fair share between users: a job's Celery priority is its rank in its owner's backlog.

The queue was first in, first out across users: one user's 20 queued jobs (or a study
feeding its sweeps) sat in front of everyone else's. Now each job is sent with the
priority `min(ahead, 9)`, where `ahead` is how many of its owner's jobs were queued
before it; Celery's Redis transport keeps one list per priority and a worker takes
from the lowest non-empty one (BRPOP over the lists in order), first in, first out
within it. So a user's first waiting job goes before any user's second, their second
before any third, and so on:

    A queues a1..a20, then B queues b1 (one worker, a1 already running):
    priority 0: b1         <- taken next
    priority 1: a2
    priority 2: a3
    ...
    priority 9: a10..a20

A user with one queued job waits for at most one job of each other user (those at
its own priority, sent before it). Past nine jobs ahead the ranks share the last list
in arrival order. A job sent again (the reaper, a parked job handed back) goes at 0:
it has waited already. Both the API (which sends) and the workers (which take) must
use TRANSPORT_OPTIONS, or a sender's priorities fall into kombu's default buckets.
"""

from __future__ import annotations

PRIORITIES = tuple(range(10))  # kombu's Redis transport allows 0 (first) to 9
KOMBU_SEP = "\x06\x16"  # how kombu's Redis transport names a queue's priority lists
TRANSPORT_OPTIONS = {"priority_steps": list(PRIORITIES), "queue_order_strategy": "priority"}


def priority(ahead: int) -> int:
    """The Celery priority of a job with `ahead` of its owner's jobs queued before it."""
    return min(max(ahead, 0), PRIORITIES[-1])


def queue_lists(queue: str) -> list[str]:
    """The Redis lists of a Celery queue, one per priority, first taken first (kombu's
    names: the queue itself for 0, then `queue<sep>N`)."""
    return [queue, *(f"{queue}{KOMBU_SEP}{p}" for p in PRIORITIES[1:])]
