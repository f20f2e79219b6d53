"""Named defaults of bgcb-diskcache, in one place.

The first group are the backend's own options (``bgcb.manager(workers=...)``
or ``BGCB_DISKCACHE_<OPTION>``); ``result_ttl``, ``job_ttl`` and
``cancel_grace`` are the core's (:mod:`bgcb.defaults`). The rest are fixed
intervals and file names of the pool.
"""

from __future__ import annotations

import os

#: Worker processes per pool: the concurrency bound.
WORKERS = os.cpu_count() or 1
#: Seconds without a pool heartbeat after which a running job's worker counts as gone.
DEAD_AFTER = 10.0
#: "auto": fork, FIFO wake-ups and flock on Linux, the portable path elsewhere; "on" forces the
#: portable path (spawned workers, polling, a lease for the pool lock), "off" the Linux one.
PORTABLE = "auto"

#: Set in pool processes (and so inherited by anything a job starts): such a
#: process never autostarts another pool, and an app can tell where it runs.
ENV_IN_POOL = "BGCB_DISKCACHE_IN_POOL"

#: Files in the directory beside the store.
LOCK_NAME = "supervisor.lock"
#: diskcache's SQLite file: its presence says a store exists in a directory.
DB_NAME = "cache.db"
WAKE_NAME = "wake.fifo"
#: The supervisor's FIFO: a byte asks it to act on stop requests now instead of at its next tick.
STOP_NAME = "stop.fifo"
#: The directory of the web processes' bells (:mod:`bgcb_diskcache.bell`).
BELLS_NAME = "bells"

#: Seconds between supervisor ticks (a child's exit wakes it at once).
TICK = 0.2
#: Seconds between pool heartbeats.
BEAT_EVERY = 1.0
#: Seconds between deletions of expired records.
CLEANUP_EVERY = 30.0
#: Seconds a web process trusts a heartbeat it found fresh before reading it again.
ALIVE_FRESH = 1.0
#: Seconds a standby supervisor sleeps between attempts at the directory's lock.
STANDBY_RETRY = 0.5
#: A worker that dies within DIED_YOUNG seconds of its start (it cannot start: a broken install,
#: an unreachable directory) delays the next start by RESTART_BACKOFF s, doubling up to the maximum.
DIED_YOUNG = 1.0
RESTART_BACKOFF = 0.5
RESTART_BACKOFF_MAX = 10.0
#: Seconds workers get to exit after SIGTERM when the pool stops, before SIGKILL.
SHUTDOWN_WAIT = 3.0
#: Seconds an autostarted pool gets to stop after SIGTERM, before SIGKILL.
POOL_STOP_WAIT = 5.0
#: The portable path: seconds between an idle worker's looks at the queue, and between supervisor ticks.
PORTABLE_POLL = 0.02
PORTABLE_TICK = 0.05
#: Seconds an idle worker on a system without exclusive FIFO wake-ups waits before checking its parent.
IDLE_CHECK = 1.0
#: Jobs a web process listens for before it forgets those not waited on for BELL_FORGET seconds.
BELL_WATCHES = 256
BELL_FORGET = 30.0
#: Seconds after which a ringer lists the bells again even if the directory looks unchanged.
BELL_RELIST = 1.0
#: Seconds SQLite waits for another process's write lock before diskcache retries.
SQLITE_TIMEOUT = 60
