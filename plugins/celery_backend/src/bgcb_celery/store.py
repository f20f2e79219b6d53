"""The Redis side of bgcb-celery: key layout, record format and Lua scripts.

Every operation on the hot path is one round trip and as few Redis commands as
possible, because each command is paid for on every job (see the README):

- submit: ``ZADD queue`` (the job payload travels in the Celery message);
- start (worker): ``SET rec NX EX life`` (the claim), ``ZREM queue``;
- finish (worker): ``SET rec XX GET``;
- poll: one ``EVALSHA`` that reads the record and, only when needed, pops
  updates, checks the heartbeat or the queue position.

A job's **record** is one string: a small ``|``-separated header that Lua can
read without a JSON parser, then a JSON body::

    v1|<state>|<submitted_at>|<started_at>|<timeout>|<updates>|<life>|{"outcome": ..., ...}

``updates`` is empty while the job runs and, once it ended, the number of
progress/set_props updates the worker pushed (0 lets a poll skip ``LPOP``).
``life`` is the TTL the worker set when it claimed the job, so that a poll can
tell the job's age from the record's remaining TTL, on Redis's clock. The
worker's heartbeat key (``hb``) appears after one heartbeat interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bgcb.jobs import Outcome, State, Status
from bgcb.runner import timeout_outcome

VERSION = "v1"


@dataclass
class Keys:
    """Key names under one prefix (default ``bgcb``)."""

    prefix: str

    def rec(self, job_id: str) -> str:
        return f"{self.prefix}:rec:{job_id}"

    def upd(self, job_id: str) -> str:
        return f"{self.prefix}:upd:{job_id}"

    def hb(self, job_id: str) -> str:
        return f"{self.prefix}:hb:{job_id}"

    @property
    def queue(self) -> str:
        return f"{self.prefix}:queue"

    def cache(self, cache_key: str) -> str:
        return f"{self.prefix}:cache:{cache_key}"

    @property
    def secret(self) -> str:
        return f"{self.prefix}:secret"


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _float(text: str) -> float | None:
    return float(text) if text else None


@dataclass
class Record:
    """A job record as stored (see the module docstring)."""

    state: State
    submitted_at: float | None = None
    started_at: float | None = None
    timeout: float | None = None
    updates: int | None = None
    #: Seconds of TTL the worker gave the record when it claimed the job.
    life: float | None = None
    body: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        updates = "" if self.updates is None else str(self.updates)
        fields = [self.state.value, _num(self.submitted_at), _num(self.started_at), _num(self.timeout), updates, _num(self.life)]
        head = "|".join([VERSION, *fields])
        return f"{head}|{json.dumps(self.body, separators=(',', ':'))}"

    @classmethod
    def decode(cls, raw: str) -> Record:
        parts = raw.split("|", 7)
        if len(parts) != 8 or parts[0] != VERSION:
            raise ValueError(f"not a bgcb-celery {VERSION} record: {raw[:60]!r}")
        _, state, submitted, started, timeout, updates, life, body = parts
        return cls(
            State(state),
            _float(submitted),
            _float(started),
            _float(timeout),
            int(updates) if updates else None,
            _float(life),
            json.loads(body),
        )

    @property
    def outcome(self) -> Outcome | None:
        reason = self.body.get("reason")
        if reason == "timeout":
            return timeout_outcome(self.timeout or 0)
        if reason == "lost":
            return lost_outcome(self.body.get("heartbeat_ttl"))
        data = self.body.get("outcome")
        return Outcome.from_json(data) if data else None

    def status(self) -> Status:
        return Status(self.state, None, self.submitted_at, self.started_at, self.body.get("finished_at"))


def lost_outcome(heartbeat_ttl: float | None) -> Outcome:
    """The error of a job whose worker stopped sending heartbeats."""
    within = f" for more than {heartbeat_ttl:g} s" if heartbeat_ttl else ""
    return Outcome.failure(
        "bgcb-celery: the worker running this background callback stopped without finishing it "
        f"(its heartbeat was missing{within}: the process was killed, ran out of memory, or lost "
        "Redis). The job was not retried; check the Celery worker's log and trigger the callback again."
    )


#: One poll: the record, and only when needed the updates, the heartbeat or
#: the queue place. Marks a running job failed when its heartbeat is missing
#: (worker died) or it ran past its timeout (worker stuck). A job's age comes
#: from its record's TTL (set to ``life`` at the claim): no clocks compared.
#: KEYS: rec, upd, hb, queue.  ARGV: job id, now, consume (0/1), may declare
#: death (0/1), body for a lost worker, body for a timeout, timeout grace,
#: heartbeat TTL in ms.
POLL = """
local v = redis.call('GET', KEYS[1])
if not v then
  local rank = redis.call('ZRANK', KEYS[4], ARGV[1])
  if not rank then return {'unknown'} end
  return {'queued', false, false, rank, redis.call('ZSCORE', KEYS[4], ARGV[1])}
end
local state, rest = string.match(v, '^v1|(%a+)(|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|)')
if not state then return {'corrupt', v} end
local st, t, n, life = string.match(rest, '^|[^|]*|([^|]*)|([^|]*)|([^|]*)|([^|]*)|$')
local marked = 0
if state == 'running' then
  local body = nil
  local started, timeout = tonumber(st), tonumber(t)
  if timeout and started and tonumber(ARGV[2]) > started + timeout + tonumber(ARGV[7]) then
    body = ARGV[6]
  elseif ARGV[4] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then
    local age = tonumber(life) * 1000 - redis.call('PTTL', KEYS[1])
    if age > tonumber(ARGV[8]) then body = ARGV[5] end
  end
  if body then
    state = 'failed'
    marked = 1
    v = 'v1|failed' .. rest .. body
    redis.call('SET', KEYS[1], v, 'KEEPTTL')
  end
end
local ups = false
if ARGV[3] == '1' and (state == 'running' or (n ~= '' and n ~= '0')) then
  ups = redis.call('LPOP', KEYS[2], 1000)
end
return {state, v, ups, marked}
"""

#: Cancel. KEYS: rec, queue.  ARGV: job id, body of the cancelled record, TTL.
#: Returns 'queued' (it will never start), 'running' (asked to stop), or
#: false (ended already, cancelled before, or unknown).
CANCEL = """
local sub = redis.call('ZSCORE', KEYS[2], ARGV[1])
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
local v = redis.call('GET', KEYS[1])
if not v then
  if removed == 1 then
    redis.call('SET', KEYS[1], 'v1|cancelled|' .. sub .. '|||||' .. ARGV[2], 'EX', ARGV[3])
    return 'queued'
  end
  return false
end
local state, rest = string.match(v, '^v1|(%a+)(|[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|)')
if state ~= 'running' then return false end
redis.call('SET', KEYS[1], 'v1|cancelled' .. rest .. ARGV[2], 'KEEPTTL')
return 'running'
"""
