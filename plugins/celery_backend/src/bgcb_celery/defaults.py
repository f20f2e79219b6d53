"""Named defaults of bgcb-celery, in one place.

The core's lifecycle settings (``result_ttl``, ``job_ttl``, ``cancel_grace``)
are not here: they are the core's (:mod:`bgcb.defaults`) and reach the backend
as ``jobs.settings`` and as the ``ttl`` of each store write.
"""

from __future__ import annotations

#: The one Celery task every job runs through (as ``celery inspect`` and Flower show it).
TASK_NAME = "bgcb.run_job"
#: Broker and store when neither an option nor ``$REDIS_URL`` names one.
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Prefix of every Redis key.
PREFIX = "bgcb"
#: Celery queue of the app bgcb builds.
QUEUE = "bgcb"

#: Seconds between a worker process's heartbeats.
HEARTBEAT = 1.0
#: Seconds a heartbeat lives: a running job whose worker has none has lost its worker.
HEARTBEAT_TTL = 3.0
#: Seconds a worker keeps retrying a Redis write (restart, failover) before giving up.
STORE_RETRY = 60.0
#: Seconds polls keep the browser waiting while Redis is unreachable, before they fail.
OUTAGE_GRACE = 30.0

#: Seconds past ``timeout + cancel_grace`` before Celery's hard time limit kills a job's process.
HARD_LIMIT_MARGIN = 0.5
#: Seconds after an outage (seen by this process, or a Redis restart) during which
#: a missing heartbeat proves nothing: workers could not write theirs.
QUIET_EXTRA = 1.0
#: Most updates one read drains (the rest come with the next read, in order).
DRAIN_MAX = 100_000
#: Largest job text (characters) carried in its task message, saving the worker a read; a larger
#: job stays only in Redis (inputs of that size would double the broker's memory and traffic).
MESSAGE_JOB_MAX = 16_384
#: Most messages of the broker's list read to find a queued job's place (beyond it: place unknown).
POSITION_SCAN = 10_000
#: Seconds an idle worker process keeps beating (after it, the next job writes a beat before its claim).
IDLE_BEATS = 10.0
#: Seconds between a worker's announcements of the queues it serves, how long one lasts, and how
#: long a web process trusts that a worker serves its queue before asking again.
PRESENCE_EVERY = 5.0
PRESENCE_TTL = 15.0
PRESENCE_FRESH = 1.0
#: Seconds a job taken from the core's order counts against its lane's running cap before its claim;
#: after it, a job still queued counts no more (its worker died between taking and claiming it).
CLAIM_GRACE = 60.0
#: Most values that are not job ids (planted in the core's order) one worker passes over to take a job.
POP_PASS_OVER = 10
#: Seconds past its due time after which a deferred job whose message has not arrived is sent again
#: (a worker that held the delayed message died); workers look every PRESENCE_EVERY seconds.
LATER_RESEND = 60.0
#: Most overdue deferred jobs one worker sends again per look.
LATER_RESEND_MAX = 50
#: At most this many popped ids a worker's periodic look checks for ones that never started (ORDER_RESCUE).
RESCUE_MAX = 2000
#: Reads remembered per web process, to answer polls during a short Redis outage.
REMEMBERED_READS = 4096

#: Redis client timeouts (seconds): connecting, and waiting for one reply.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 10.0

#: Options of ``bgcb worker`` (the Celery worker it starts).
CONCURRENCY = 0  # 0 = one pool process per CPU (Celery's default)
POOL = "prefork"
LOGLEVEL = "INFO"
WORKER_ARGS = "--without-gossip --without-mingle"
