"""Where a queued job stands: its place in the broker's list, or in the core's order kept in Redis.

The order (the ``ORDER_*`` scripts in :mod:`.scripts`) is used when a manager of the web process orders jobs (``owner=`` or
``priority=``; the core then passes ``lane`` and ``priority``). The Celery
message of such a job is a ticket: the worker that takes it runs whichever
job comes next in this order (:meth:`OrderedQueue.pop`), which may be
another's. One ticket per queued id keeps them even: a job that leaves the
queue early takes its own message and its place here with it. Jobs of web
processes that do not order jobs keep the broker's first-in-first-out order
and cost nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import defaults, scripts

if TYPE_CHECKING:
    from .store import RedisStore


class OrderedQueue:
    """The order of the jobs queued on ``queue``, in the store's Redis."""

    def __init__(self, store: RedisStore, queue: str) -> None:
        self.store = store
        self.base = f"{store.keys.prefix}:order:{queue}"
        redis = store.redis
        self._push = redis.register_script(scripts.ORDER_PUSH)
        self._pop = redis.register_script(scripts.ORDER_POP)
        self._remove = redis.register_script(scripts.ORDER_REMOVE)
        self._position = redis.register_script(scripts.ORDER_POSITION)

    def push_in(self, pipe: Any, job_id: str, lane: str, priority: int) -> None:
        """Queue ``job_id`` inside ``pipe`` (the enqueue's round trip, before its ticket is pushed)."""
        self._push(keys=[self.base], args=[job_id, lane, int(priority)], client=pipe)

    def pop(self, ticket: str, patient: bool = True) -> str | None:
        """The next job to run for the worker holding ``ticket`` (a message's task id); None when nothing
        is queued. When it is another job, the ticket is noted against it, so that a hard stop revokes
        the task that runs it (revoking the job's own id would drop its ticket and strand a job)."""
        job = self.store.call(lambda: self._pop(keys=[self.base]), patient)
        if job and job != ticket:
            self.store.call(lambda: self.store.redis.set(self.ticket_key(str(job)), ticket, ex=86400), patient)
        return str(job) if job else None

    def ticket_key(self, job_id: str) -> str:
        return f"{self.base}:ticket:{job_id}"

    def task_of(self, job_id: str) -> str:
        """The Celery task id running ``job_id``: the ticket noted for it, else its own."""
        ticket = self.store.call(lambda: self.store.redis.get(self.ticket_key(job_id)))
        return str(ticket) if ticket else job_id

    def remove(self, job_id: str) -> bool:
        return bool(self.store.call(lambda: self._remove(keys=[self.base], args=[job_id])))

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

    def _ordered(self) -> OrderedQueue | None:
        return self.order if self.order is not None and self.ordering() else None

    def position(self, job_id: str) -> int | None:
        order = self._ordered()
        place = order.position(job_id) if order is not None else None
        return self.broker_position(job_id) if place is None else place

    def unqueue(self, job_id: str) -> None:
        """A job left "queued" (or may have) before a worker took it: its place goes. In the core's
        order only its place: tickets are interchangeable, and one more than places is harmless (a
        worker finds nothing), one fewer would strand a job. Otherwise its own message too."""
        order = self._ordered()
        if order is not None:
            order.remove(job_id)
        else:
            self.broker_position(job_id, remove=True)

    def broker_position(self, job_id: str, remove: bool = False) -> int | None:
        """The place in the broker's list (None when the broker is elsewhere); ``remove`` takes the
        job's message out of the list."""
        queue = self.store.broker_list
        if queue is None:
            return None
        args = [job_id, defaults.POSITION_SCAN, int(remove)]
        found = int(self.store.call(lambda: self._scan(keys=[queue], args=args)))
        return None if found == -2 else max(0, found)
