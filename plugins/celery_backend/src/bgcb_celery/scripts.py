"""The Lua scripts of the Redis store: each is one atomic round trip (see :mod:`bgcb_celery.store`).

A job's record is a hash ``<prefix>:job:<id>`` with fields ``s`` (state),
``d`` (the core's status data), ``j`` (the job) and, once the job ended
without updates, ``u`` = ``0``; a state change rewrites two small fields and
never the job's payload, and one TTL covers all.
"""

from __future__ import annotations

#: Store a new queued record with its TTL and put the id in the queue (sorted by submit time).
#: KEYS: job, queue.  ARGV: id, job, data, ttl ms, submit time, trim cutoff ('' = no trim).
ENQUEUE = """
redis.call('HSET', KEYS[1], 's', 'queued', 'd', ARGV[3], 'j', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
if ARGV[6] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[6]) end
return 1
"""

#: One read: state and data, and only when they can matter the drained updates
#: (not while queued, nor once ended when the worker marked "no updates"), the
#: queue place (while queued) and the heartbeat (while running). ``alive``: 1 heartbeat present, 0 missing, nil cannot tell
#: (the caller saw an outage lately, or Redis restarted less than ``quiet``
#: seconds ago: workers could not write their heartbeats meanwhile).
#: KEYS: job, upd, hb, queue.  ARGV: id, drain (0/1), may declare deaths (0/1), quiet s, drain max.
#: Returns nil (no record) or {state, data, updates|nil, position|nil, alive|nil}.
READ = """
local rec = redis.call('HMGET', KEYS[1], 's', 'd', 'u')
local state = rec[1]
if not state then return false end
local updates, position, alive = false, false, false
if state == 'queued' then
  position = redis.call('ZRANK', KEYS[4], ARGV[1])
elseif ARGV[2] == '1' and rec[3] ~= '0' then
  updates = redis.call('LPOP', KEYS[2], ARGV[5])
end
if state == 'running' then
  if redis.call('EXISTS', KEYS[3]) == 1 then
    alive = 1
  elseif ARGV[3] == '1' then
    local up = tonumber(string.match(redis.call('INFO', 'server'), 'uptime_in_seconds:(%d+)'))
    if up and up > tonumber(ARGV[4]) then alive = 0 end
  end
end
return {state, rec[2], updates, position, alive}
"""

#: Compare-and-set: if the state is one of the expected ones, set state, data
#: and TTL, and leave the queue when leaving "queued". A retried call whose
#: first attempt landed (its reply lost with the connection) finds its own
#: state and data in place and answers 1 too (the core's data carries the
#: writer's timestamps and name, so no other writer's is the same). ``mark`` '0' records that the
#: job has no updates (the worker's final write, when it appended none), so
#: that reads of the ended job skip the LPOP.
#: KEYS: job, queue.  ARGV: state, data, ttl ms, id, mark ('' or '0'), expected state...
CAS = """
local cur = redis.call('HGET', KEYS[1], 's')
if not cur then return 0 end
for i = 6, #ARGV do
  if ARGV[i] == cur then
    if ARGV[5] == '' then
      redis.call('HSET', KEYS[1], 's', ARGV[1], 'd', ARGV[2])
    else
      redis.call('HSET', KEYS[1], 's', ARGV[1], 'd', ARGV[2], 'u', ARGV[5])
    end
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    if cur == 'queued' and ARGV[1] ~= 'queued' then redis.call('ZREM', KEYS[2], ARGV[4]) end
    return 1
  end
end
if cur == ARGV[1] and redis.call('HGET', KEYS[1], 'd') == ARGV[2] then return 1 end
return 0
"""
