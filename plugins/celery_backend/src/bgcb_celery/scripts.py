"""The Lua scripts of the Redis store (see :mod:`bgcb_celery.store` for the key layout).

A job's record is one string, ``state SEP mark SEP beat SEP data`` (``SEP`` is
the unit separator, which JSON never leaves unescaped), so that a state change
is one ``SET ... GET``: two Redis commands with the script call, where a hash
would need a read, a write and a TTL.
"""

from __future__ import annotations

#: Compare-and-set in one write: ``SET ... GET`` puts the new record in place
#: and returns the old one; when the old state was not expected, the old record
#: goes back (inside the script, so no reader ever sees the new one), with the
#: end its writer gave it. A write without a heartbeat count (the web's: cancel,
#: lost) keeps the claim's, which says whether the worker still runs the job
#: (one more SET, only then). A retried call whose first attempt landed (its
#: reply lost with the connection) finds its own record, whatever its end time,
#: and answers 1 (the core's data carries the writer's timestamps and name, so
#: no other writer's is the same). A missing record is not created.
#: KEYS: record.  ARGV: state, mark, beat, until (ms), data, ttl ms, expected state...
CAS = r"""
local sep = '\031'
local function record(beat, untl)
  return ARGV[1] .. sep .. ARGV[2] .. sep .. beat .. sep .. untl .. sep .. ARGV[5]
end
local new = record(ARGV[3], ARGV[4])
local old = redis.call('SET', KEYS[1], new, 'PX', ARGV[6], 'GET')
if not old then
  redis.call('DEL', KEYS[1])
  return 0
end
local cur, beat, untl = string.match(old, '^([^\031]*)\031[^\031]*\031([^\031]*)\031([^\031]*)\031')
local own = ARGV[3]
if own == '' and beat and beat ~= '' then own = beat end
local kept = record(own, ARGV[4])
if old == record(own, untl or '') then
  if kept ~= new then redis.call('SET', KEYS[1], kept, 'PX', ARGV[6]) end
  return 1
end
for i = 7, #ARGV do
  if ARGV[i] == cur then
    if kept ~= new then redis.call('SET', KEYS[1], kept, 'PX', ARGV[6]) end
    return 1
  end
end
if untl and untl ~= '' then
  redis.call('SET', KEYS[1], old, 'PXAT', untl)
else
  redis.call('SET', KEYS[1], old, 'PX', ARGV[6])
end
return 0
"""

#: The 0-based place of a queued job in the Celery queue, when the broker is the
#: store's Redis: kombu pushes messages on the left and takes them from the
#: right, and each message names its task id (the job id) in its headers. Reads
#: at most ARGV[2] messages, from the oldest; -1 when the id is in none of them
#: (a worker took the message: it starts next), -2 when it may lie beyond the bound.
#: With ARGV[3] = '1' the message found is removed (a job that left "queued"
#: before a worker took it: the places behind it move up, no worker sees it).
#: KEYS: the broker's list.  ARGV: job id, most messages to read, remove (0/1).
POSITION = """
local total = redis.call('LLEN', KEYS[1])
local bound = math.min(total, tonumber(ARGV[2]))
local seen = 0
while seen < bound do
  local chunk = redis.call('LRANGE', KEYS[1], -(seen + 100), -(seen + 1))
  if #chunk == 0 then break end
  for i = #chunk, 1, -1 do
    if string.find(chunk[i], ARGV[1], 1, true) then
      if ARGV[3] == '1' then redis.call('LREM', KEYS[1], -1, chunk[i]) end
      return seen + (#chunk - i)
    end
  end
  seen = seen + #chunk
end
if bound < total then return -2 end
return -1
"""

#: One round trip for a poll of a job last seen running: the record, the
#: heartbeat of the worker process its data names, and (draining, unless the
#: job ended without updates) its updates. A job's first poll, or one of a job
#: not seen running, is a plain GET instead (one command, enough for a job
#: that already ended). The heartbeat key is built here from the record, so
#: the store needs a single Redis server (not a cluster).
#: KEYS: record, updates.  ARGV: heartbeat key prefix, drain (0/1), drain max.
#: Returns nil (no record) or {record, heartbeat|nil, updates|nil}.
READ_RUNNING = r"""
local rec = redis.call('GET', KEYS[1])
if not rec then return false end
local state, mark = string.match(rec, '^([^\031]*)\031([^\031]*)\031')
local beat, updates = false, false
if state == 'running' then
  local worker = string.match(rec, '"worker"%s*:%s*"([^"]*)"')
  if worker then beat = redis.call('GET', ARGV[1] .. worker) end
end
if ARGV[2] == '1' and mark ~= '0' and state ~= 'queued' then
  updates = redis.call('LPOP', KEYS[2], ARGV[3])
end
return {rec, beat, updates}
"""

# -- the core's order (bgcb.queueing.FairQueue) kept in Redis, for web processes whose managers order jobs --
#
# Under KEYS[1] = <prefix>:order:<queue>:
#   :seq, :n               arrival and serve counters
#   :bands                 priorities with queued jobs, scored by priority
#   :lanes:<p>             lanes of priority p with queued jobs, scored by their turn: the serve count when
#                          last served, or (never served) the arrival that opened the lane minus 1e12, so
#                          never-served lanes come first, oldest first (Lua writes numbers with 14 digits)
#   :lane:<p>:<lane>       a lane's ids, first in first out
#   :where                 id -> "p<TAB>lane"
#   :served                "p<TAB>lane" -> serve count: a lane that empties and refills keeps its turn
#                          while some waiting lane was served before it

#: Queue an id. ARGV: job id, lane, priority.
ORDER_PUSH = r"""
local base, job, lane, prio = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local seq = redis.call('INCR', base .. ':seq')
redis.call('RPUSH', base .. ':lane:' .. prio .. ':' .. lane, job)
redis.call('HSET', base .. ':where', job, prio .. '\t' .. lane)
redis.call('ZADD', base .. ':bands', tonumber(prio), prio)
local lanes = base .. ':lanes:' .. prio
if not redis.call('ZSCORE', lanes, lane) then
  local score = seq - 1e12
  local served = redis.call('HGET', base .. ':served', prio .. '\t' .. lane)
  if served then
    local floor = redis.call('ZRANGEBYSCORE', lanes, 0, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if floor[2] and tonumber(served) > tonumber(floor[2]) then score = tonumber(served) end
  end
  redis.call('ZADD', lanes, score, lane)
end
return seq
"""

#: Take the next id in the core's order; false when none is queued.
ORDER_POP = r"""
local base = KEYS[1]
local band = redis.call('ZREVRANGE', base .. ':bands', 0, 0)[1]
if not band then return false end
local lanes = base .. ':lanes:' .. band
local lane = redis.call('ZRANGE', lanes, 0, 0)[1]
if not lane then
  redis.call('ZREM', base .. ':bands', band)
  return false
end
local key = base .. ':lane:' .. band .. ':' .. lane
local job = redis.call('LPOP', key)
local n = redis.call('INCR', base .. ':n')
redis.call('HSET', base .. ':served', band .. '\t' .. lane, n)
if job then redis.call('HDEL', base .. ':where', job) end
if redis.call('LLEN', key) == 0 then
  redis.call('ZREM', lanes, lane)
  if redis.call('ZCARD', lanes) == 0 then redis.call('ZREM', base .. ':bands', band) end
else
  redis.call('ZADD', lanes, n, lane)
end
return job
"""

#: Take an id out (it left "queued" before a worker took it): 1 if it was queued here. ARGV: job id.
ORDER_REMOVE = r"""
local base, job = KEYS[1], ARGV[1]
local where = redis.call('HGET', base .. ':where', job)
if not where then return 0 end
local prio, lane = string.match(where, '^([^\t]*)\t(.*)$')
local key = base .. ':lane:' .. prio .. ':' .. lane
redis.call('LREM', key, 1, job)
redis.call('HDEL', base .. ':where', job)
if redis.call('LLEN', key) == 0 then
  redis.call('ZREM', base .. ':lanes:' .. prio, lane)
  if redis.call('ZCARD', base .. ':lanes:' .. prio) == 0 then redis.call('ZREM', base .. ':bands', prio) end
end
return 1
"""

#: How many queued ids start before this one, as FairQueue.position counts; -3 when it is not queued
#: here (a job of a web process that does not order jobs: its place is in the broker's list). ARGV: job id.
ORDER_POSITION = r"""
local base, job = KEYS[1], ARGV[1]
local where = redis.call('HGET', base .. ':where', job)
if not where then return -3 end
local prio, lane = string.match(where, '^([^\t]*)\t(.*)$')
local mine = redis.call('LPOS', base .. ':lane:' .. prio .. ':' .. lane, job)
if not mine then return -3 end
local ahead = 0
for _, band in ipairs(redis.call('ZRANGEBYSCORE', base .. ':bands', '(' .. prio, '+inf')) do
  for _, other in ipairs(redis.call('ZRANGE', base .. ':lanes:' .. band, 0, -1)) do
    ahead = ahead + redis.call('LLEN', base .. ':lane:' .. band .. ':' .. other)
  end
end
local before = 1
for _, other in ipairs(redis.call('ZRANGE', base .. ':lanes:' .. prio, 0, -1)) do
  if other == lane then
    before = 0
    ahead = ahead + mine
  else
    ahead = ahead + math.min(redis.call('LLEN', base .. ':lane:' .. prio .. ':' .. other), mine + before)
  end
end
return ahead
"""
