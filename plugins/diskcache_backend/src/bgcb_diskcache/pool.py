"""The worker pool: one supervisor process and N warm worker processes.

The supervisor holds an exclusive lock on ``<directory>/supervisor.lock``, so
one pool serves a directory however many web processes or managers share it;
a second supervisor waits as a standby and takes over when the first exits.
It imports the app once, then forks the workers (cheap: the supervisor holds
no web data), and each tick (0.2 s, or at once on SIGCHLD):

- reaps dead workers: the job a worker was running when it died ends as a
  failed job with the reason (signal or exit code), and a new worker is forked;
- kills the worker of a job cancelled more than ``cancel_grace`` seconds ago
  that did not stop cooperatively, or of a job past its timeout (that job
  fails with :func:`bgcb.runner.timeout_outcome`); the slot is refilled;
- writes a heartbeat, which web processes read to fail running jobs of a
  pool that died; and periodically deletes expired records.

Workers sleep on a FIFO (``<directory>/wake.fifo``): each submit writes one
byte to it, so an idle worker starts a job within a fraction of a
millisecond instead of on a polling interval. A worker takes the oldest job
(FIFO), runs it through :func:`bgcb.runner.run` and stores the outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import importlib
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("bgcb.diskcache")

#: Set in pool processes so that the app's ``bgcb.manager()`` does not start
#: another pool when the supervisor imports the app.
ENV_IN_POOL = "BGCB_DISKCACHE_IN_POOL"
LOCK_NAME = "supervisor.lock"
WAKE_NAME = "wake.fifo"
TICK = 0.2
CLEANUP_EVERY = 30.0
BEAT_EVERY = 1.0


def wake_path(directory: str) -> str:
    return os.path.join(directory, WAKE_NAME)


def ensure_fifo(path: str) -> None:
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        pass


class Waker:
    """The web side of the wake-up FIFO: one byte per submitted job."""

    def __init__(self, directory: str) -> None:
        self.path = wake_path(directory)
        self.fd: int | None = None
        self.lock = threading.Lock()  # web servers submit from many threads

    def wake(self) -> None:
        with self.lock:
            if self.fd is None:
                try:
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # no FIFO yet, or no pool reading it: workers scan the queue when they start
                    return
            try:
                os.write(self.fd, b"\x01")
            except BlockingIOError:  # the pipe is full: every worker has plenty to wake up for
                pass
            except OSError:  # the pool went away (EPIPE): reopen next time
                self._close()

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def import_app(app: str) -> None:
    """Import the app so Dash registers its callbacks: a module name, or the
    path of a script, run as ``__mp_main__`` so its ``if __name__ ==
    "__main__"`` block (``app.run()``) does not run."""
    if app.endswith(".py") or os.sep in app:
        # multiprocessing aliases __mp_main__ to __main__ when first imported:
        # import it now, or the app's own imports would undo the module below.
        import multiprocessing  # noqa: F401

        path = os.path.abspath(app)
        module = types.ModuleType("__mp_main__")
        module.__file__ = path
        module.__builtins__ = __builtins__  # type: ignore[attr-defined]
        sys.modules["__mp_main__"] = module
        sys.path.insert(0, os.path.dirname(path))
        with open(path, encoding="utf-8") as fh:
            code = compile(fh.read(), path, "exec")
        exec(code, module.__dict__)
    else:
        importlib.import_module(app)


def _set_parent_death_signal() -> None:
    """Linux: die with the supervisor, so no worker outlives its pool."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: workers also check their parent when idle
        pass


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name} ({sig})"
    return f"exited with code {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"ended (status {status})"


def worker_died_outcome(pid: int, how: str) -> Any:
    from bgcb.jobs import Outcome

    return Outcome.failure(
        f"The worker process running this job (pid {pid}) died: {how}. The job did not finish. "
        "Common causes: the process ran out of memory (OOM killer), crashed in native code, or was killed. "
        "A new worker has taken its place; trigger the callback again."
    )


def pool_stopped_outcome() -> Any:
    from bgcb.jobs import Outcome

    return Outcome.failure(
        "The bgcb-diskcache worker pool stopped while this job ran (it was shut down or died). "
        "Start the workers again (`bgcb worker APP_MODULE`, or restart the app) and trigger the callback again."
    )


class _Channel:
    """The runner's channel in a worker: every call goes to the store."""

    def __init__(self, store: Any, job_id: str) -> None:
        self.store = store
        self.job_id = job_id

    def progress(self, value: list[Any]) -> None:
        from bgcb.jobs import progress_update

        self.store.append(self.job_id, progress_update(value))

    def set_props(self, component_id: str, props: dict[str, Any]) -> None:
        from bgcb.jobs import props_update

        self.store.append(self.job_id, props_update(component_id, props))

    def cancelled(self) -> bool:
        from bgcb.jobs import State

        return self.store.state(self.job_id) is not State.RUNNING


def app_import_failed_outcome(app: str, error: str) -> Any:
    from bgcb.jobs import Outcome

    return Outcome.failure(
        f"The bgcb-diskcache worker pool could not import the app {app!r}, so it cannot run callbacks: {error}. "
        "Fix the error, then restart the app (or `bgcb worker APP_MODULE`).",
    )


def worker_loop(directory: str, result_ttl: float, hook: Any, supervisor: int, broken: Any = None) -> None:
    """A worker: take the oldest job, run it, store the outcome; sleep on the
    wake-up FIFO when the queue is empty. Runs in a forked child. With
    ``broken`` (an outcome), the app failed to import: every job ends with it,
    so that the browser shows the reason instead of waiting forever."""
    from bgcb.runner import run

    from .store import Store

    _set_parent_death_signal()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    store = Store(directory, result_ttl)
    # Linux wakes one blocked reader per byte written to a pipe, so one submit
    # wakes one idle worker; elsewhere a select() with a timeout lets a worker
    # also notice that its supervisor has gone. RDWR: the FIFO never reads EOF.
    blocking = sys.platform.startswith("linux")
    fd = os.open(wake_path(directory), os.O_RDWR | (0 if blocking else os.O_NONBLOCK))
    pid = os.getpid()
    while True:
        claimed = store.claim(pid) if store.has_queued() else None
        if claimed is not None:
            job_id, job = claimed
            outcome = broken if broken is not None else run(job, _Channel(store, job_id), hook, job_id)
            store.finish(job_id, job, outcome)
            continue
        if blocking:
            os.read(fd, 1)
        else:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 1)
        if os.getppid() != supervisor:
            os._exit(0)


@contextlib.contextmanager
def pool_lock(directory: str, parent: int | None = None) -> Iterator[None]:
    """Hold the directory's supervisor lock; wait as a standby while another
    pool holds it (giving up if ``parent`` exits)."""
    fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    announced = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if parent is not None and os.getppid() != parent:
                raise SystemExit(0)
            if not announced:
                log.info("bgcb-diskcache: another worker pool serves %s; waiting as a standby", directory)
                announced = True
            time.sleep(0.5)
        yield
    finally:
        os.close(fd)


class Supervisor:
    """Keeps ``workers`` worker processes alive for one directory."""

    def __init__(
        self,
        directory: str,
        workers: int,
        result_ttl: float = 3600.0,
        cancel_grace: float = 0.5,
        parent: int | None = None,
        broken: Any = None,
    ) -> None:
        from bgcb.provider import plugin_manager

        from .store import Store

        self.directory = directory
        self.size = max(1, workers)
        self.result_ttl = result_ttl
        self.cancel_grace = cancel_grace
        self.parent = parent
        #: Set when the app failed to import: the outcome every job ends with.
        self.broken = broken
        self.me = os.getpid()
        self.store = Store(directory, result_ttl)
        self.hook = plugin_manager().hook
        self.children: dict[int, float] = {}  # pid -> started
        self.killed: set[int] = set()
        self.stopping = False

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                worker_loop(self.directory, self.result_ttl, self.hook, self.me, self.broken)
            except BaseException:  # noqa: B036 - a worker must never return into the supervisor's code
                log.exception("bgcb-diskcache: worker crashed")
                code = 1
            finally:
                os._exit(code)
        self.children[pid] = time.time()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        """Supervise until SIGTERM/SIGINT (or the parent web process exits)."""
        ensure_fifo(wake_path(self.directory))
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        os.set_blocking(rfd, False)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        ended = self.store.recover(pool_stopped_outcome())
        if ended:
            log.warning("bgcb-diskcache: %d job(s) of a previous pool ended as failed", len(ended))
        last_beat = last_cleanup = 0.0
        log.info("bgcb-diskcache: pool of %d worker(s) on %s (supervisor pid %d)", self.size, self.directory, self.me)
        try:
            while not self.stopping:
                while len(self.children) < self.size:
                    self._spawn()
                now = time.time()
                if now - last_beat >= BEAT_EVERY:
                    self.store.beat(self.size)
                    last_beat = now
                if now - last_cleanup >= CLEANUP_EVERY:
                    self.store.cleanup()
                    last_cleanup = now
                self._enforce(now)
                with contextlib.suppress(InterruptedError):
                    select.select([rfd], [], [], TICK)
                with contextlib.suppress(BlockingIOError):
                    os.read(rfd, 512)
                self._reap()
                if self.parent is not None and os.getppid() != self.parent:
                    log.info("bgcb-diskcache: the web process exited; stopping the pool")
                    break
        finally:
            self._shutdown()
            signal.set_wakeup_fd(-1)
            os.close(rfd)
            os.close(wfd)

    def _enforce(self, now: float) -> None:
        """Force-stop cancelled jobs that did not stop, and jobs past their timeout."""
        from bgcb.runner import timeout_outcome

        for job_id, entry in self.store.running().items():
            pid = entry.get("pid")
            if pid not in self.children:
                continue
            cancel_at = entry.get("cancel_at")
            timeout = entry.get("timeout")
            if cancel_at and now - cancel_at >= self.cancel_grace:
                from bgcb.jobs import Outcome

                if self.store.end_jobs_of(pid, Outcome.cancelled(), only=job_id, kill=True):
                    self.killed.add(pid)
            elif timeout and now - entry["started_at"] >= timeout + self.cancel_grace:
                if self.store.end_jobs_of(pid, timeout_outcome(timeout), only=job_id, kill=True):
                    self.killed.add(pid)

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self.children[pid]
            if pid in self.killed:
                self.killed.discard(pid)
                self.store.end_jobs_of(pid, pool_stopped_outcome())  # normally none left
                continue
            how = _describe_exit(status)
            ended = self.store.end_jobs_of(pid, worker_died_outcome(pid, how))
            if not self.stopping:
                log.warning(
                    "bgcb-diskcache: worker %d %s%s; starting a new one", pid, how, f" while running {ended}" if ended else ""
                )

    def _shutdown(self) -> None:
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 3
        while self.children and time.time() < deadline:
            self._reap()
            time.sleep(0.02)
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.store.end_jobs_of(pid, pool_stopped_outcome())
            del self.children[pid]
        self.store.recover(pool_stopped_outcome())
        with contextlib.suppress(Exception):
            self.store.cache.delete("pool")
        log.info("bgcb-diskcache: pool on %s stopped", self.directory)


def serve(directory: str, workers: int, result_ttl: float, cancel_grace: float, app: str | None, parent: int | None) -> None:
    """Become the pool for ``directory`` (after any standby wait), importing ``app`` first."""
    os.makedirs(directory, exist_ok=True)
    with pool_lock(directory, parent):
        broken = None
        if app:
            try:
                import_app(app)
            except (Exception, SystemExit) as exc:  # the reason must reach the browser
                log.exception("bgcb-diskcache: the worker pool could not import the app %r", app)
                broken = app_import_failed_outcome(app, f"{type(exc).__name__}: {exc}")
        Supervisor(directory, workers, result_ttl, cancel_grace, parent, broken).run()


def main(argv: list[str] | None = None) -> int:
    """``python -m bgcb_diskcache pool CONFIG_JSON``: the pool a web process autostarts."""
    parser = argparse.ArgumentParser(prog="python -m bgcb_diskcache pool")
    parser.add_argument("config", help="JSON: directory, workers, result_ttl, cancel_grace, app, parent, sys_path")
    config = json.loads(parser.parse_args(argv).config)
    os.environ[ENV_IN_POOL] = "1"
    sys.path[:0] = [p for p in config.get("sys_path", []) if p not in sys.path]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve(
        config["directory"],
        int(config["workers"]),
        float(config["result_ttl"]),
        float(config["cancel_grace"]),
        config.get("app"),
        config.get("parent"),
    )
    return 0
