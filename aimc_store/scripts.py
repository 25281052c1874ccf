"""The Lua scripts: each one a read-and-write that must be atomic (a limit checked and a
job created, a lock refreshed only by its holder, a lost job requeued once) or that
saves round trips on the hot path. KEYS and ARGV are described above each."""

from __future__ import annotations

from typing import Any

# KEYS[1] = key:{sha256}; ARGV = rate key prefix, minute. Returns {user, requests this
# minute} or nil. The rate key is named from the looked-up user, so this runs on one
# Redis (not a cluster), which is what the service uses. The count is kept out of the
# append-only file and replicas (REPL_NONE): under `appendfsync always` (aimc serve)
# every authenticated request wrote it and so waited for an fsync (~300 us here), the
# largest part of what the status route cost beyond a bare read of one hash. A count
# that lives two minutes needs no durability: a Redis restart only starts the current
# minute's counts again. A Redis full at its maxmemory (noeviction) refuses the count's
# write: the request then passes uncounted (pcall), so reads go on while writes get 507.
_COUNT_CALLER = """
redis.set_repl(redis.REPL_NONE)
local user = redis.call('GET', KEYS[1])
if not user then return nil end
local rate = ARGV[1] .. user .. ':' .. ARGV[2]
local count = redis.pcall('INCR', rate)
if type(count) ~= 'number' then count = 0 end
if count == 1 then redis.call('EXPIRE', rate, 120) end
"""
AUTHENTICATE = _COUNT_CALLER + "return {user, count}\n"


# KEYS = job hash, user's jobs zset, job events stream, stats transitions, user's queued
# set, everyone's queued set; ARGV = queued limit (-1: none), job id, owner, name, spec
# JSON, created, watched (1: the reaper watches it, see resend_if_stuck). 1 if the job
# was created, 0 if the owner already had `limit` queued.
CREATE_JOB = """
local limit = tonumber(ARGV[1])
if limit >= 0 and redis.call('SCARD', KEYS[5]) >= limit then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'name', ARGV[4], 'spec', ARGV[5],
           'state', 'queued', 'progress', '0.0', 'attempts', '0', 'created', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[2])
redis.call('XADD', KEYS[3], '*', 'state', 'queued', 't', ARGV[6])
redis.call('HINCRBY', KEYS[4], 'queued', 1)
redis.call('SADD', KEYS[5], ARGV[2])
if ARGV[7] == '1' then redis.call('SADD', KEYS[6], ARGV[2]) end
return 1
"""

# KEYS = user's running set, retrying set, parked list; ARGV = job id, limit. 1 if the
# job may run now (it holds a slot: the running set counts it), 0 if it was parked.
CLAIM_SLOT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) + redis.call('SCARD', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  return 1
end
redis.call('LREM', KEYS[3], 0, ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[1])
return 0
"""

# KEYS = user's running set, retrying set, parked list; ARGV = limit. Pops as many parked
# jobs as there are free slots, oldest first.
FREE_SLOTS = """
local free = tonumber(ARGV[1]) - redis.call('SCARD', KEYS[1]) - redis.call('SCARD', KEYS[2])
if free <= 0 then return {} end
return redis.call('LPOP', KEYS[3], free) or {}
"""


# KEYS = metrics stream; ARGV = step, point JSON. Adds the point only after a lower step.
ADD_METRIC = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local fields = last[1][2]
  if tonumber(cjson.decode(fields[2])['step']) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
return 1
"""

# KEYS = lock, heartbeat; ARGV = holder, ttl. Refreshes both while the holder holds the
# lock (taking it again if it expired, e.g. while Redis restarted); 0 if another worker
# holds it now: this run must stop, the job belongs to the other.
BEAT = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS = job hash, owner's parked list, the Celery queue's lists (one per priority:
# aimc_store.fair_share); ARGV = now, minimum
# age (s), job id. A queued job whose task is nowhere to be found: not in the queue, not
# parked, queued (or last re-sent) over the minimum age ago. Its message was taken by a
# worker that died before it started the job, so it sits among Celery's unacked
# messages until the visibility timeout (hours). 1 (and the time noted) if the caller
# should send the task again; a second task for a job is harmless (the job's lock).
RESEND_STUCK = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
local since = redis.call('HGET', KEYS[1], 'resent') or redis.call('HGET', KEYS[1], 'created')
since = tonumber(since)
if tonumber(ARGV[1]) - since < tonumber(ARGV[2]) then return 0 end
if redis.call('LPOS', KEYS[2], ARGV[3]) then return 0 end
for i = 3, #KEYS do
  for _, message in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
    if string.find(message, ARGV[3], 1, true) then return 0 end
  end
end
redis.call('HSET', KEYS[1], 'resent', ARGV[1])
return 1
"""

# KEYS = lock; ARGV = holder. Deletes the lock only if the holder holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS = job hash, heartbeat, lock, events stream, transitions, owner's running set,
# owner's retrying set, global running set, global retrying set; ARGV = now, job id. Puts a
# running job whose worker is gone (no heartbeat, no lock) back as `retrying`, once:
# 1 if it did (the caller sends the task again), 0 if the job is alive or not running.
REQUEUE = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' and state ~= 'retrying' then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if state == 'retrying' and tonumber(redis.call('HGET', KEYS[1], 'requeued') or '0') > 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'retrying', 'requeued', ARGV[1])
redis.call('XADD', KEYS[4], '*', 'state', 'retrying', 't', ARGV[1])
redis.call('HINCRBY', KEYS[5], 'retrying', 1)
redis.call('SREM', KEYS[6], ARGV[2])
redis.call('SADD', KEYS[7], ARGV[2])
redis.call('SREM', KEYS[8], ARGV[2])
redis.call('SADD', KEYS[9], ARGV[2])
return 1
"""

# the job hash's fields the status view reads: all but `result` (see
# AUTHENTICATED_JOB_VIEW); Job.from_hash decodes them
STATUS_FIELDS = (
    "owner",
    "name",
    "spec",
    "state",
    "progress",
    "attempts",
    "created",
    "started",
    "finished",
    "engine_finished",
    "error",
    "worker",
    "resumes",
    "sweep",
)

# AUTHENTICATE, then the job's status fields, latest metric point and heartbeat: the
# status route's whole read in one round trip. ARGV 3 = the job's key (prefix + job:{id}).
# Returns {user, count, [STATUS_FIELDS' values] (HMGET: false for a missing one), latest
# metric entry's fields ([m, json]) or false, heartbeat exists} as one JSON string:
# redis.asyncio parses a reply element by element in Python (~20 of them here),
# json.loads one string in C. The field names are written into the script rather than
# sent as arguments: redis-py packs each argument of each call in Python, and the 14
# names cost ~15 us of the call's ~190 us of API CPU. Not HGETALL: a finished job's
# result.json, which the status view does not show, was most of the reply's bytes and
# its decoding most of the route's own time.
AUTHENTICATED_JOB_VIEW = (
    _COUNT_CALLER
    + """
local job = ARGV[3]
local last = redis.call('XREVRANGE', job .. ':metrics', '+', '-', 'COUNT', 1)
return cjson.encode({user, count, redis.call('HMGET', job, """
    + ", ".join(f"'{name}'" for name in STATUS_FIELDS)
    + """),
                     last[1] and last[1][2] or false,
                     redis.call('EXISTS', job .. ':heartbeat')})
"""
)


# KEYS = dataset hash, dataset bytes, owner's datasets zset; ARGV = the owner's storage
# limit in bytes (-1: none), dataset id, owner, name, created, size, info JSON, the .npz
# bytes, the prefix of dataset hashes. Keeps the upload if the owner's datasets and it
# fit under the limit (-1), else stores nothing and returns the bytes already used: one
# script, so two uploads at once cannot both pass the check.
PUT_DATASET = """
local limit = tonumber(ARGV[1])
if limit >= 0 then
  local used = 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    used = used + tonumber(redis.call('HGET', ARGV[9] .. id, 'bytes') or '0')
  end
  if used + tonumber(ARGV[6]) > limit then return used end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'name', ARGV[4], 'created', ARGV[5],
           'bytes', ARGV[6], 'info', ARGV[7])
redis.call('SET', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
return -1
"""


class Scripts:
    """The scripts the synchronous store runs, registered on its client (redis-py loads
    each by its SHA on first use and again after a Redis restart)."""

    def __init__(self, client: Any) -> None:
        self.create_job = client.register_script(CREATE_JOB)
        self.claim_slot = client.register_script(CLAIM_SLOT)
        self.free_slots = client.register_script(FREE_SLOTS)
        self.add_metric = client.register_script(ADD_METRIC)
        self.beat = client.register_script(BEAT)
        self.requeue = client.register_script(REQUEUE)
        self.release = client.register_script(RELEASE)
        self.resend_stuck = client.register_script(RESEND_STUCK)
        self.put_dataset = client.register_script(PUT_DATASET)
