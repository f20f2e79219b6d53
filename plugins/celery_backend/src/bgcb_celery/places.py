"""Where a queued job stands: its place in the broker's list, or in the core's order kept in Redis.

The order (the scripts of :mod:`.order_scripts`) is used when a manager of the web process orders jobs (``owner=`` or
``priority=``; the core then passes ``lane`` and ``priority``). The Celery
message of such a job is a ticket: the worker that takes it runs whichever
job comes next in this order (:meth:`OrderedQueue.pop`), which may be
another's. One ticket per queued id keeps them even: a job that leaves the
queue early takes its own message and its place here with it. Jobs of web
processes that do not order jobs keep the broker's first-in-first-out order
and cost nothing here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bgcb.jobs import is_job_id

from . import defaults, order_scripts, scripts

if TYPE_CHECKING:
    from .store import RedisStore

log = logging.getLogger("bgcb.celery")


class OrderedQueue:
    """The order of the jobs queued on ``queue``, in the store's Redis (:mod:`.order_scripts`)."""

    def __init__(self, store: RedisStore, queue: str) -> None:
        self.store = store
        self.base = f"{store.keys.prefix}:order:{queue}"
        redis = store.redis
        self._push = redis.register_script(order_scripts.ORDER_PUSH)
        self._pop = redis.register_script(order_scripts.ORDER_POP)
        self._leave = redis.register_script(order_scripts.ORDER_LEAVE)
        self._unpark = redis.register_script(order_scripts.ORDER_UNPARK)
        self._counts = redis.register_script(order_scripts.ORDER_COUNTS)
        self._position = redis.register_script(order_scripts.ORDER_POSITION)
        self._rescue = redis.register_script(order_scripts.ORDER_RESCUE)

    def push_in(self, pipe: Any, job_id: str, lane: str, priority: int, cap: int | None = None) -> None:
        """Queue ``job_id`` inside ``pipe`` (the enqueue's round trip, before its ticket is pushed)."""
        self._push(keys=[self.base], args=[job_id, lane, int(priority), "" if cap is None else int(cap)], client=pipe)

    def _live(self) -> list[str | int]:
        """The arguments the scripts that count running jobs take first (``LIVE`` in :mod:`.order_scripts`)."""
        keys = self.store.keys
        return [int(time.time() * 1000), keys.rec(""), keys.worker(""), int(defaults.CLAIM_GRACE * 1000)]

    def pop(self, ticket: str, patient: bool = True) -> tuple[str, bool] | None:
        """The next job to run for the worker holding ``ticket`` (a message's task id), and whether it
        counts against its lane's running cap (then :meth:`leave` must follow its end); None when
        nothing can start (every lane full: the ticket is kept back, see ``ORDER_POP``). When it is
        another job, the ticket is noted against it, so that a hard stop revokes the task that runs it
        (revoking the job's own id would drop its ticket and strand a job)."""
        for _ in range(defaults.POP_PASS_OVER):
            job, flag = self.store.call(lambda: self._pop(keys=[self.base], args=[*self._live(), ticket]), patient)
            if not job:
                return None
            if is_job_id(job):
                break
            # Not an id bgcb queued (planted): it has no ticket of its own, so this one takes the next job.
            log.warning("bgcb-celery: passed over %r in the order of %s: not a job id", str(job)[:40], self.base)
        else:
            return None
        if job != ticket:
            self.store.call(lambda: self.store.redis.set(self.ticket_key(str(job)), ticket, ex=86400), patient)
        return str(job), flag == "1"

    def rescue(self, later: str, before: float, most: int) -> list[str]:
        """Put back into the order the ids popped before ``before`` (seconds since the epoch) that never
        started (their worker died between the pop and the claim); return them: each needs a ticket."""
        args: list[str | int] = [int(before * 1000), self.store.keys.rec(""), most]
        return [str(j) for j in self.store.call(lambda: self._rescue(keys=[self.base, later], args=args))]

    def ticket_key(self, job_id: str) -> str:
        return f"{self.base}:ticket:{job_id}"

    def task_of(self, job_id: str) -> str:
        """The Celery task id running ``job_id``: the ticket noted for it, else its own."""
        ticket = self.store.call(lambda: self.store.redis.get(self.ticket_key(job_id)))
        return str(ticket) if ticket else job_id

    def leave(self, job_id: str, patient: bool = False) -> int:
        """``job_id`` leaves the queue and its lane's running jobs ("" : neither); returns how many kept-back
        tickets to send again (then :meth:`unpark` them)."""
        return int(self.store.call(lambda: self._leave(keys=[self.base], args=[*self._live(), job_id]), patient))

    def unpark(self, sent: int, patient: bool = False) -> None:
        self.store.call(lambda: self._unpark(keys=[self.base], args=[sent]), patient)

    def parked_key(self) -> str:
        return f"{self.base}:parked"

    def counts(self, lane: str, later: str) -> tuple[int, int, int]:
        """Queued ids (those deferred under ``later`` included), queued ids of ``lane``, its running jobs."""
        found = self.store.call(lambda: self._counts(keys=[self.base, later], args=[*self._live(), lane]))
        return int(found[0]), int(found[1]), int(found[2])

    def position(self, job_id: str) -> int | None:
        """The place in the core's order; None when the job is not queued here."""
        found = int(self.store.call(lambda: self._position(keys=[self.base], args=[job_id])))
        return None if found < 0 else found


class Places:
    """Queue places and leaving the queue, for one store: the broker's list (first in first out),
    unless the backend set up the core's order and this process's managers order jobs."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self._scan = store.redis.register_script(scripts.POSITION)
        self.order: OrderedQueue | None = None
        self.ordering: Callable[[], bool] = lambda: False
        #: Send this many kept-back tickets again (:mod:`.later` sets it), and forget a deferred job.
        self.tickets: Callable[[int], None] = lambda sent: None
        self.deferred: Callable[[str], None] = lambda job_id: None

    def _ordered(self) -> OrderedQueue | None:
        return self.order if self.order is not None and self.ordering() else None

    def position(self, job_id: str) -> int | None:
        order = self._ordered()
        place = order.position(job_id) if order is not None else None
        return self.broker_position(job_id) if place is None else place

    def unqueue(self, job_id: str, expect: Sequence[str], data: str) -> None:
        """A job the web ended (cancel, lost) leaves the queue. In the core's order its place and its
        lane's running count go (kept-back tickets are sent again when that frees room), not its
        message: tickets are interchangeable, and one more than places is harmless (a worker finds
        nothing), one fewer would strand a job. Otherwise its own message goes, when it was queued. A
        job cancelled while it waited to run again (its data has ``retry_at``) leaves that wait too."""
        if '"retry_at"' in data:
            self.deferred(job_id)
        order = self._ordered()
        if order is not None:
            self.tickets(order.leave(job_id))
        elif "queued" in expect:
            self.broker_position(job_id, remove=True)

    def broker_position(self, job_id: str, remove: bool = False) -> int | None:
        """The place in the broker's list (None when the broker is elsewhere); ``remove`` takes the
        job's message out of the list."""
        queue = self.store.broker_list
        if queue is None:
            return None
        args: list[str | int] = [job_id, defaults.POSITION_SCAN, int(remove)]
        found = int(self.store.call(lambda: self._scan(keys=[queue], args=args)))
        return None if found == -2 else max(0, found)
