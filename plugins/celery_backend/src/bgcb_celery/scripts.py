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
