"""Jobs queued again later (``bgcb_defer``), queue counts (``bgcb_counts``) and kept-back tickets.

**Deferral.** The core moved the record back to "queued"; the job's id goes into
``<prefix>:later:<queue>`` (a sorted set by due time, with ``:in:<lane>`` per lane
and ``:of``: id -> "priority TAB cap TAB ordered TAB lane") and a Celery message
is sent with ``countdown=delay``: no worker waits it out, and the broker (not the
deferring process) holds the due time. When the message arrives it takes the id
out of the set (once: a duplicate finds it gone); in ordered mode it then puts
the job into the core's order as a new arrival and acts as a ticket, in plain
mode it runs the job. A worker that fetched a delayed message and died loses it
(kombu's Redis transport without ack emulation): every worker's main process
looks every ``PRESENCE_EVERY`` s for ids overdue by ``LATER_RESEND`` s and sends
them again, so the due time survives in Redis too.

**Kept-back tickets** (running caps, see ``ORDER_POP``): a ticket that finds only
full lanes is counted in ``:parked`` instead of running anything. When a capped
job ends (the worker that ran it, or the web's cancel or lost) ``ORDER_LEAVE``
says how many may go now and :meth:`Later.tickets` sends that many fresh ones; a
worker's main process also asks every ``PRESENCE_EVERY`` s (a GET), which covers
ends nobody reported (a worker killed mid-job: its heartbeat expires).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from bgcb import Counts

from . import defaults
from .order_scripts import PUSH_FN
from .places import OrderedQueue
from .publish import DirectPublisher, send
from .store import RedisStore

log = logging.getLogger("bgcb.celery")

#: Take an id out of the deferred set; its "priority TAB cap TAB ordered TAB lane", or false when it was
#: not there (it arrived already, or was cancelled). KEYS: later set.  ARGV: job id.
TAKE_FN = r"""
local function take(later, job)
  local info = redis.call('HGET', later .. ':of', job)
  if not info then return false end
  local lane = string.match(info, '^[^\t]*\t[^\t]*\t[^\t]*\t(.*)$') or ''
  redis.call('ZREM', later, job)
  redis.call('ZREM', later .. ':in:' .. lane, job)
  redis.call('HDEL', later .. ':of', job)
  return info
end
"""
TAKE = TAKE_FN + "return take(KEYS[1], ARGV[1])\n"

#: A deferred message arrived in ordered mode: the id joins the order as a new arrival, once.
#: KEYS: later set, order base.  ARGV: job id, lane, priority, cap ('' for none). Returns 1 if it joined.
ARRIVE = (
    TAKE_FN
    + PUSH_FN
    + """
if not take(KEYS[1], ARGV[1]) then return 0 end
push(KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""
)

#: Claim an id overdue by ARGV[2] (ms) for sending again: its due time becomes now (ARGV[3]), so other
#: workers skip it for another LATER_RESEND; its info, or false. KEYS: later set.  ARGV: job id, cutoff, now.
RESEND = r"""
local info = redis.call('HGET', KEYS[1] .. ':of', ARGV[1])
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not info or not due or tonumber(due) > tonumber(ARGV[2]) then return false end
local lane = string.match(info, '^[^\t]*\t[^\t]*\t[^\t]*\t(.*)$') or ''
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[1] .. ':in:' .. lane, ARGV[3], ARGV[1])
return info
"""


def limits_for(timeout: float | None, grace: float) -> dict[str, float]:
    """Celery's time limits for a job: the soft one raises SoftTimeLimitExceeded in the callback (the core
    records a timeout), the hard one kills a callback that ignores it."""
    if not timeout:
        return {}
    return {"soft_time_limit": timeout, "time_limit": timeout + grace + defaults.HARD_LIMIT_MARGIN}


class Later:
    """Deferral, counts and kept-back tickets of one backend instance (its store, Celery app and queue)."""

    def __init__(
        self, store: RedisStore, celery: Any, queue: str, store_id: str, publisher: DirectPublisher | None, grace: float
    ) -> None:
        self.store, self.celery, self.queue, self.store_id = store, celery, queue, store_id
        self.publisher, self.grace = publisher, grace
        self.key = store.keys.later(queue)
        self._take = store.redis.register_script(TAKE)
        self._arrive = store.redis.register_script(ARRIVE)
        self._resend = store.redis.register_script(RESEND)
        #: The job texts known in this process (the worker's), to save a read.
        self.payloads: Callable[[str], str | None] = lambda job_id: None
        store.places.tickets = self.tickets
        store.places.deferred = self.forget

    @property
    def order(self) -> OrderedQueue | None:
        return self.store.places.order

    # -- deferral -------------------------------------------------------------------------

    def defer(self, job_id: str, delay: float, lane: str | None, priority: int | None, cap: int | None, ran: bool) -> None:
        """Queue ``job_id`` again in ``delay`` s; ``ran``: it counted against its lane's cap, which has room now."""
        due = int((time.time() + delay) * 1000)
        info = f"{int(priority or 0)}\t{'' if cap is None else int(cap)}\t{int(lane is not None)}\t{lane or ''}"

        def write() -> None:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.zadd(self.key, {job_id: due})
            pipe.zadd(f"{self.key}:in:{lane or ''}", {job_id: due})
            pipe.hset(f"{self.key}:of", job_id, info)
            pipe.execute()

        self.store.call(write, patient=True)
        room = self.order.leave(job_id, patient=True) if ran and self.order is not None else 0
        try:
            self._send(job_id, delay, info)
        except Exception:
            self.forget(job_id)
            raise
        self.tickets(room)

    def _send(self, job_id: str, delay: float, info: str) -> None:
        """The delayed message: in ordered mode a ticket of its own id (a revoke of the job it runs must not
        drop a later message of this job), else the job's own message, carrying its text when small."""
        priority, cap, ordered, lane = info.split("\t", 3)
        payload = self.payloads(job_id) or self.store.load(job_id, patient=True) or "{}"
        later = [lane if ordered == "1" else None, int(priority), int(cap) if cap else None]
        kwargs: dict[str, Any] = {"store": self.store_id, "later": later}
        task_id = job_id
        if ordered == "1":
            task_id = f"{job_id}.{uuid.uuid4().hex[:8]}"
            kwargs.update(ordered=True, ticket=task_id)
        elif len(payload) <= defaults.MESSAGE_JOB_MAX:
            kwargs["job"] = payload
        timeout = json.loads(payload).get("timeout")
        send(self.celery, self.queue, job_id, kwargs, task_id, countdown=max(0.0, delay), **limits_for(timeout, self.grace))

    def arrive(self, job_id: str, lane: str | None, priority: int | None, cap: int | None) -> None:
        """A delayed message came: the id leaves the deferred set (in ordered mode: joins the order)."""
        if lane is None or self.order is None:
            self.store.call(lambda: self._take(keys=[self.key], args=[job_id]), patient=True)
            return
        args: list[str | int] = [job_id, lane, int(priority or 0), "" if cap is None else int(cap)]
        keys = [self.key, self.order.base]
        self.store.call(lambda: self._arrive(keys=keys, args=args), patient=True)

    def forget(self, job_id: str) -> None:
        """A deferred job ended before it was due (cancelled): it waits no more."""
        self.store.call(lambda: self._take(keys=[self.key], args=[job_id]))

    # -- kept-back tickets and the workers' look -------------------------------------------

    def tickets(self, count: int) -> None:
        """Send ``count`` kept-back tickets again, then count them off (a failure leaves them counted:
        the next look sends them)."""
        if count <= 0 or self.order is None:
            return
        try:
            self._new_tickets(count)
            self.order.unpark(count)
        except Exception:
            log.exception("bgcb-celery: could not send %d kept-back ticket(s) again; a worker retries", count)

    def _new_tickets(self, count: int) -> None:
        for _ in range(count):
            ticket = f"ticket-{uuid.uuid4().hex}"
            kwargs: dict[str, Any] = {"store": self.store_id, "ordered": True}
            if self.publisher is not None:
                self._push(self.publisher.broker_list, self.publisher.message(ticket, kwargs, {}))
            else:
                send(self.celery, self.queue, ticket, kwargs)

    def rescue(self, now: float) -> list[str]:
        """Put back into the order the jobs popped more than ``CLAIM_GRACE`` s ago that never started (their
        worker process died between the pop and the claim, and its message with it), each with a ticket."""
        if self.order is None:
            return []
        back = self.order.rescue(self.key, now - defaults.CLAIM_GRACE, defaults.RESCUE_MAX)
        for job_id in back:
            log.warning("bgcb-celery: job %s was taken by a worker that died before starting it; queued again", job_id)
        if back:
            self._new_tickets(len(back))
        return back

    def _push(self, broker_list: str, message: str) -> None:
        self.store.call(lambda: self.store.redis.lpush(broker_list, message))

    def tick(self) -> None:
        """A worker's periodic look: send again deferred messages overdue by ``LATER_RESEND`` s, kept-back
        tickets that may go (an end nobody reported), and jobs taken by a worker that died before it
        started them (:meth:`rescue`)."""
        now = int(time.time() * 1000)
        cutoff = now - int(defaults.LATER_RESEND * 1000)
        pipe = self.store.redis.pipeline(transaction=False)
        pipe.zrangebyscore(self.key, "-inf", cutoff, start=0, num=defaults.LATER_RESEND_MAX)
        if self.order is not None:
            pipe.get(self.order.parked_key())
        replies = pipe.execute()
        for job_id in replies[0]:
            rec = self.store.record(job_id)
            if rec is None or rec.state != "queued":
                self.forget(job_id)  # ended or expired meanwhile
                continue
            info = self._resend(keys=[self.key], args=[job_id, cutoff, now])
            if info:
                log.warning("bgcb-celery: the delayed message of job %s is overdue; sending it again", job_id)
                self._send(job_id, 0.0, str(info))
        parked = str(replies[1]) if len(replies) > 1 else ""  # kept-back tickets ("" or junk: none)
        if parked.isdecimal() and int(parked) > 0 and self.order is not None:
            self.tickets(self.order.leave(""))
        self.rescue(now / 1000)

    # -- counts ---------------------------------------------------------------------------

    def counts(self, lane: str) -> Counts | None:
        """Queued jobs in all and in ``lane`` (deferred ones included), and ``lane``'s running jobs: those of
        capped lanes in the core's order; 0 otherwise (plain mode counts the broker's list: None
        when the broker is not the store's Redis)."""
        places = self.store.places
        order = places.order if places.order is not None and places.ordering() else None
        if order is not None:
            return Counts(*order.counts(lane, self.key))
        broker = self.store.broker_list
        if broker is None:
            return None

        def read() -> list[Any]:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.llen(broker)
            pipe.zcard(self.key)
            pipe.zcard(f"{self.key}:in:{lane}")
            return list(pipe.execute())

        listed, deferred, mine = (int(n) for n in self.store.call(read))
        return Counts(listed + deferred, (listed if lane == "" else 0) + mine, 0)
