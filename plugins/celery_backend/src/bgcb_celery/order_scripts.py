"""The Lua scripts of the core's order (:class:`bgcb.queueing.FairQueue`) kept in Redis, with running caps.

Used only by web processes whose managers order jobs (``owner=``, ``priority=``,
``max_running_per_owner=``); see :mod:`bgcb_celery.places`. Under ``base`` =
``<prefix>:order:<queue>``::

    :seq, :n               arrival and serve counters
    :bands                 priorities with queued jobs, scored by priority
    :lanes:<p>             lanes of priority p with queued jobs, scored by their turn: the serve count when
                           last served, or (never served) the arrival that opened the lane minus 1e12, so
                           never-served lanes come first, oldest first (Lua writes numbers with 14 digits)
    :lane:<p>:<lane>       a lane's ids, first in first out
    :where                 id -> "p<TAB>lane"
    :served                "p<TAB>lane" -> serve count: a lane that empties and refills keeps its turn
                           while some waiting lane was served before it
    :cap                   queued id -> its lane's running cap (only jobs that have one)
    :run:<lane>            ids of a capped lane taken and not finished
    :running               such an id -> "taken at (ms)<TAB>lane"
    :parked                tickets that found only full lanes and were kept back (see ORDER_POP)
    :taken, :taken:info    ids popped, by when (ms), and their "p<TAB>lane<TAB>cap" (see ORDER_RESCUE)
    :took:<ticket>         the id a ticket (a message's task id) popped last (see ORDER_POP)

Scripts that count running jobs take ``ARGV[1..4]`` = now (ms), the record key
prefix, the heartbeat key prefix and the claim grace (ms) (:data:`LIVE`).
"""

from __future__ import annotations

#: ``count(key)``: INCR a counter; one holding what bgcb did not write (not a number) starts again at 1,
#: so that a planted value cannot fail every submit. ``number(key)``: a counter's value, 0 when absent or
#: not a number.
COUNT_FN = r"""
local function count(key)
  local n = redis.pcall('INCR', key)
  if type(n) ~= 'number' then
    redis.call('SET', key, 1)
    n = 1
  end
  return n
end
local function number(key)
  return tonumber(redis.call('GET', key) or '') or 0
end
"""

#: ``state_of(rec)``: the state at the head of a stored record (the layout of :mod:`.layout`); false for none.
STATE_FN = r"""
local function state_of(rec)
  return rec and string.match(rec, '^([^\031]*)\031')
end
"""

#: ``live(lane)``: the lane's running jobs, pruning those whose record is gone or no longer running,
#: whose worker process has no heartbeat (it died), or that were taken but not claimed within the
#: grace (a worker died in between): a crash never holds a lane's cap for longer than that.
LIVE = (
    COUNT_FN
    + STATE_FN
    + r"""
local base = KEYS[1]
local now, recs, beats, grace = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
local counted = {}
local function live(lane)
  if counted[lane] then return counted[lane] end
  local key = base .. ':run:' .. lane
  local n = 0
  for _, job in ipairs(redis.call('SMEMBERS', key)) do
    local keep = false
    local rec = redis.call('GET', recs .. job)
    local state = state_of(rec)
    if state == 'running' then
      local worker = string.match(rec, '"worker"%s*:%s*"([^"]*)"')
      keep = (not worker) or redis.call('EXISTS', beats .. worker) == 1
    elseif state == 'queued' then
      local taken = redis.call('HGET', base .. ':running', job)
      keep = taken and (now - tonumber(string.match(taken, '^([^\t]*)')) < grace) or false
    end
    if keep then
      n = n + 1
    else
      redis.call('SREM', key, job)
      redis.call('HDEL', base .. ':running', job)
    end
  end
  counted[lane] = n
  return n
end
local function cap_of(key)
  local head = redis.call('LINDEX', key, 0)
  local cap = head and redis.call('HGET', base .. ':cap', head)
  return cap and tonumber(cap) or nil
end
"""
)

#: ``wake()``: how many parked tickets to send again now: at most the jobs that could start (a capped
#: lane counts for its room left), at most the parked ones.
WAKE = r"""
local function wake()
  local parked = number(base .. ':parked')
  if parked <= 0 then return 0 end
  local total, room = 0, {}
  for _, band in ipairs(redis.call('ZREVRANGE', base .. ':bands', 0, -1)) do
    for _, lane in ipairs(redis.call('ZRANGE', base .. ':lanes:' .. band, 0, -1)) do
      local key = base .. ':lane:' .. band .. ':' .. lane
      local len = redis.call('LLEN', key)
      local cap = cap_of(key)
      if cap then
        if room[lane] == nil then room[lane] = math.max(0, tonumber(cap) - live(lane)) end
        len = math.min(len, room[lane])
        room[lane] = room[lane] - len
      end
      total = total + len
      if total >= parked then return parked end
    end
  end
  return total
end
"""

#: ``push(base, job, lane, priority, cap)``: queue an id as a new arrival (``cap`` '' for none).
PUSH_FN = (
    COUNT_FN
    + r"""
local function push(base, job, lane, prio, cap)
  local seq = count(base .. ':seq')
  redis.call('RPUSH', base .. ':lane:' .. prio .. ':' .. lane, job)
  redis.call('HSET', base .. ':where', job, prio .. '\t' .. lane)
  redis.call('ZADD', base .. ':bands', tonumber(prio), prio)
  if cap ~= nil and cap ~= '' then redis.call('HSET', base .. ':cap', job, cap) end
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
end
"""
)

#: Queue an id. ARGV: job id, lane, priority, cap ('' for none).
ORDER_PUSH = PUSH_FN + "return push(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])\n"

#: Take the next id in the core's order, passing over lanes whose cap of jobs runs (their jobs keep
#: their places; a lower priority may go). Returns {id, '1' if it counts against its lane's cap else
#: '0'}; {'', 'parked'} when ids are queued but every lane is full: the caller's ticket is kept back
#: (counted in :parked, sent again by ORDER_LEAVE's wake when a capped job ends), unless as many
#: tickets are kept back as ids are queued; {'', ''} otherwise. Without queued capped jobs (no :cap
#: key) this is the plain pop: the first lane of the first band. A ticket that took a job still queued,
#: and not put back in the order since, takes it again (its message came back: the worker that popped
#: it died before the claim), so no job is stranded out of the order. ARGV: LIVE's four, the ticket.
ORDER_POP = (
    LIVE
    + r"""
local took = base .. ':took:' .. ARGV[5]
local before = redis.call('GET', took)
if before then
  local rec = redis.call('GET', recs .. before)
  if state_of(rec) == 'queued' and redis.call('HEXISTS', base .. ':where', before) == 0 then
    redis.call('ZADD', base .. ':taken', ARGV[1], before)  -- taken again now: not one for ORDER_RESCUE yet
    return {before, redis.call('HEXISTS', base .. ':running', before) == 1 and '1' or '0'}
  end
end
local capped = redis.call('EXISTS', base .. ':cap') == 1
for _, band in ipairs(redis.call('ZREVRANGE', base .. ':bands', 0, -1)) do
  local lanes = base .. ':lanes:' .. band
  local chosen, cap = nil, false
  if capped then
    for _, lane in ipairs(redis.call('ZRANGE', lanes, 0, -1)) do
      cap = cap_of(base .. ':lane:' .. band .. ':' .. lane)
      if not cap or live(lane) < tonumber(cap) then
        chosen = lane
        break
      end
    end
  else
    chosen = redis.call('ZRANGE', lanes, 0, 0)[1]
  end
  if chosen then
    local key = base .. ':lane:' .. band .. ':' .. chosen
    local job = redis.call('LPOP', key)
    local n = count(base .. ':n')
    redis.call('HSET', base .. ':served', band .. '\t' .. chosen, n)
    if redis.call('LLEN', key) == 0 then
      redis.call('ZREM', lanes, chosen)
      if redis.call('ZCARD', lanes) == 0 then redis.call('ZREM', base .. ':bands', band) end
    else
      redis.call('ZADD', lanes, n, chosen)
    end
    if job then
      redis.call('SET', took, job, 'EX', 86400)
      redis.call('ZADD', base .. ':taken', ARGV[1], job)
      redis.call('HSET', base .. ':taken:info', job, band .. '\t' .. chosen .. '\t' .. (cap or ''))
      redis.call('HDEL', base .. ':where', job)
      if cap then
        redis.call('HDEL', base .. ':cap', job)
        redis.call('SADD', base .. ':run:' .. chosen, job)
        redis.call('HSET', base .. ':running', job, ARGV[1] .. '\t' .. chosen)
        return {job, '1'}
      end
      return {job, '0'}
    end
  elseif redis.call('ZCARD', lanes) == 0 then
    redis.call('ZREM', base .. ':bands', band)
  end
end
local places = redis.call('HLEN', base .. ':where')
if places > 0 and number(base .. ':parked') < places then
  count(base .. ':parked')
  return {'', 'parked'}
end
return {'', ''}
"""
)

#: A job left the order's care: out of the queue (cancelled or expired while queued) and out of its
#: lane's running jobs (it ended, or was deferred); with job '' only the wake. Returns how many parked
#: tickets to send again (the caller sends them, then ORDER_UNPARK: a crash in between leaves more
#: parked than needed, never fewer). ARGV: LIVE's four, job id.
ORDER_LEAVE = (
    LIVE
    + WAKE
    + r"""
local job = ARGV[5]
local where = job ~= '' and redis.call('HGET', base .. ':where', job)
if where then
  local prio, lane = string.match(where, '^([^\t]*)\t(.*)$')
  local key = base .. ':lane:' .. prio .. ':' .. lane
  redis.call('LREM', key, 1, job)
  redis.call('HDEL', base .. ':where', job)
  redis.call('HDEL', base .. ':cap', job)
  if redis.call('LLEN', key) == 0 then
    redis.call('ZREM', base .. ':lanes:' .. prio, lane)
    if redis.call('ZCARD', base .. ':lanes:' .. prio) == 0 then redis.call('ZREM', base .. ':bands', prio) end
  end
end
local taken = job ~= '' and redis.call('HGET', base .. ':running', job)
if taken then
  redis.call('SREM', base .. ':run:' .. string.match(taken, '^[^\t]*\t(.*)$'), job)
  redis.call('HDEL', base .. ':running', job)
end
return wake()
"""
)

#: ``ARGV[1]`` parked tickets were sent again: count them off (never below zero).
ORDER_UNPARK = (
    COUNT_FN
    + r"""
local left = number(KEYS[1] .. ':parked') - tonumber(ARGV[1])
if left > 0 then redis.call('SET', KEYS[1] .. ':parked', left) else redis.call('DEL', KEYS[1] .. ':parked') end
return left
"""
)

#: {queued ids, queued ids of the lane, its running jobs}, deferred ones included (KEYS[2]: the
#: deferred ids of :mod:`bgcb_celery.later`). ARGV: LIVE's four, lane.
ORDER_COUNTS = (
    LIVE
    + r"""
local lane = ARGV[5]
local mine = redis.call('ZCARD', KEYS[2] .. ':in:' .. lane)
for _, band in ipairs(redis.call('ZRANGE', base .. ':bands', 0, -1)) do
  mine = mine + redis.call('LLEN', base .. ':lane:' .. band .. ':' .. lane)
end
return {redis.call('HLEN', base .. ':where') + redis.call('ZCARD', KEYS[2]), mine, live(lane)}
"""
)

#: How many queued ids start before this one, as FairQueue.position counts (caps aside); -3 when it is
#: not queued here (a job of a web process that does not order jobs: its place is in the broker's list).
#: ARGV: job id.
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


#: Put back into the order the ids popped before ARGV[1] (ms) whose record is still queued, and which are
#: neither queued again nor deferred (KEYS[2], the later set): their worker died between the pop and the
#: claim, and its message went with it (``task_reject_on_worker_lost`` is off). Forgets every popped id it
#: looks at, at most ARGV[3] of them. Returns the ids put back (the caller sends a ticket for each).
#: KEYS: base, later set. ARGV: cutoff (ms), the record key prefix, the most ids to look at.
ORDER_RESCUE = (
    PUSH_FN
    + STATE_FN
    + r"""
local base, later = KEYS[1], KEYS[2]
local recs = ARGV[2]
local back = {}
for _, job in ipairs(redis.call('ZRANGEBYSCORE', base .. ':taken', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local info = redis.call('HGET', base .. ':taken:info', job)
  redis.call('ZREM', base .. ':taken', job)
  redis.call('HDEL', base .. ':taken:info', job)
  local rec = redis.call('GET', recs .. job)
  if info and state_of(rec) == 'queued' and not redis.call('ZSCORE', later, job)
      and redis.call('HEXISTS', base .. ':where', job) == 0 then
    local prio, lane, cap = string.match(info, '^([^\t]*)\t([^\t]*)\t(.*)$')
    if prio then
      push(base, job, lane, prio, cap)
      back[#back + 1] = job
    end
  end
end
return back
"""
)
