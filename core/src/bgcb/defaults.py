"""Named defaults of the core, in one place.

The first five are the core's lifecycle options: every backend accepts them
(``bgcb.manager(result_ttl=...)`` or ``BGCB_<BACKEND>_RESULT_TTL``).
"""

from __future__ import annotations

#: Seconds a finished job's record (and its outcome) is kept.
RESULT_TTL = 3600.0
#: Seconds a queued or running job's record is kept: a bound on abandoned records.
JOB_TTL = 86400.0
#: Seconds a cancelled or timed-out job may take to stop by itself before the backend hard-stops it.
CANCEL_GRACE = 0.5
#: Seconds a job may wait in the queue while its backend reports no worker serving it, before it
#: fails with a message that says what to start (0: wait for ever). Longer than a worker restart,
#: about as long as a person watches a bar that does not move.
NO_WORKER_AFTER = 30.0
#: Seconds a job's page may stay silent (no poll) before the job is cancelled as abandoned (0: never).
#: Longer than a live page's longest silence: a held poll, or a background tab's throttled timers
#: (about one a minute in Chrome). See :mod:`bgcb.abandon`.
ABANDON_AFTER = 120.0

#: The core's lifecycle options and their defaults, added to every backend's own.
LIFECYCLE_OPTIONS: dict[str, float] = {
    "result_ttl": RESULT_TTL,
    "job_ttl": JOB_TTL,
    "cancel_grace": CANCEL_GRACE,
    "no_worker_after": NO_WORKER_AFTER,
    "abandon_after": ABANDON_AFTER,
}

#: Seconds the worker's channel trusts a state it read before reading it again
#: (a callback reporting progress every millisecond must not hammer the store).
CHANNEL_FRESH = 0.2
#: Seconds past its deadline (timeout + cancel_grace) before a poll declares a running job timed out.
OVERDUE_SLACK = 0.5
#: Attempts at a compare-and-set that races another writer (cancel vs. claim).
CAS_ATTEMPTS = 3

#: Seconds the first request of a job may wait for it (with ``hold``): short, because until it
#: is answered the page cannot name the job (cancel clicks are matched by the gate meanwhile).
HOLD_FIRST = 0.25
#: ... stretched up to this when the callback's recent jobs (the last HOLD_RECENT) all ended
#: within it (×1.25 + HOLD_FIRST_SLACK): a 0.3 s job is then seen in its first answer.
HOLD_FIRST_STRETCH = 0.6
HOLD_FIRST_SLACK = 0.05
HOLD_RECENT = 8
#: A held request reads its job every 0.5 ms for its first 10 ms (a short job's end is seen
#: within half a millisecond; a read costs tens of microseconds), then backs off (doubling) to one read per 50 ms.
HOLD_PAUSE_FIRST = 0.0005
HOLD_FAST = 0.01
HOLD_PAUSE_MAX = 0.05
#: Held requests per process when the manager sets no ``hold_max``: on a threaded server
#: (Flask, gunicorn gthread) each holds a thread, so few; on FastAPI/Quart a held request is cheap.
HOLD_MAX_THREADED = 2
HOLD_MAX_ASYNC = 64

#: Set to 1 to log every hook call (name, arguments, result, time) to the ``bgcb.hooks`` logger on stderr.
ENV_TRACE = "BGCB_TRACE_HOOKS"

#: Run times kept per callback to estimate a queued job's wait (:mod:`bgcb.waiting`).
RUN_TIMES_KEPT = 20
#: Seconds a backend's reported capacity (``bgcb_capacity``) is reused before it is asked again.
CAPACITY_FRESH = 5.0

#: The longest ``bgcb.retry_later`` may ask to wait (seconds): well inside a queued record's ``job_ttl`` (a day).
RETRY_LATER_MAX = 3600.0
#: The longest wait between a failed run and the next (``retries=``; the delay doubles per retry up to this).
RETRY_DELAY_MAX = 300.0
