"""The conformance checks, as one pytest base class.

Subclass it in your backend's tests (the class name must start with ``Test``)::

    from bgcb_testing.conformance import BackendConformance

    class TestMineConformance(BackendConformance):
        backend = "mine"              # entry-point name in bgcb.backends
        options = {"workers": 2}      # passed to bgcb.provider.load

The checks live in one module per idea: the contract's shape
(:mod:`.contract_checks`), the storage hooks called directly
(:mod:`.storage_checks`), jobs through the core (:mod:`.job_checks`), the
worker loop's scheduling (:mod:`.queue_checks`) and early ends
(:mod:`.ending_checks`). A failing check says what the contract expects and
which entry of :mod:`bgcb.hookspecs` documents it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bgcb import observers
from bgcb.errors import BgcbError
from bgcb.provider import Backend

from .config import KillWorker, KitConfig
from .contract_checks import ContractChecks
from .ending_checks import EndingChecks
from .job_checks import JobChecks
from .kit import Kit, Workers, open_backend
from .limit_checks import LimitChecks
from .observing import EventRecorder
from .queue_checks import QueueChecks
from .storage_checks import StorageChecks


# pytest collects inherited tests from the last base class first: EndingChecks (the killed-worker check) runs last.
class BackendConformance(EndingChecks, LimitChecks, QueueChecks, JobChecks, StorageChecks, ContractChecks):
    """The contract of :mod:`bgcb.hookspecs`, checked against one backend.

    Class attributes configure the run (see :class:`~.config.KitConfig` for each):
    ``backend``, ``options``, ``plugin`` (a factory used instead of the entry
    point, e.g. before the distribution is installed), ``workers``, ``fifo``,
    ``app_option``, ``spawn_workers``, ``worker_options``, ``kill_worker``, and the timeouts.
    Override :meth:`conformance_config` to compute them instead.
    """

    backend: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    plugin: ClassVar[Callable[[], object] | None] = None
    workers: ClassVar[int | None] = None
    fifo: ClassVar[bool] = True
    app_option: ClassVar[str | None] = None
    spawn_workers: ClassVar[int] = 0
    worker_options: ClassVar[dict[str, Any]] = {}
    kill_worker: ClassVar[KillWorker | None] = None
    job_timeout: ClassVar[float] = 20.0
    stop_timeout: ClassVar[float] = 10.0
    crash_timeout: ClassVar[float] = 30.0

    def conformance_config(self, pytestconfig: pytest.Config) -> KitConfig:
        """The kit's configuration for this class (from its attributes)."""
        if not self.backend:
            pytest.fail(f"{type(self).__name__}: set `backend = '<entry-point name>'` on the class", pytrace=False)
        # read callables from the class dict: a function attribute would bind as a method
        plugin = next((c.__dict__["plugin"] for c in type(self).__mro__ if c.__dict__.get("plugin")), None)
        kill = next((c.__dict__["kill_worker"] for c in type(self).__mro__ if c.__dict__.get("kill_worker")), None)
        return KitConfig(
            backend=self.backend,
            options=dict(self.options),
            plugin=plugin,
            workers=self.workers,
            fifo=self.fifo,
            app_option=self.app_option,
            spawn_workers=self.spawn_workers,
            worker_options=dict(self.worker_options),
            kill_worker=kill,
            job_timeout=self.job_timeout,
            stop_timeout=self.stop_timeout,
            crash_timeout=self.crash_timeout,
        )

    # Class-scoped fixtures are classmethods: pytest gives each test a new instance.
    @pytest.fixture(scope="class")
    @classmethod
    def kit_config(cls, pytestconfig: pytest.Config) -> KitConfig:
        return cls().conformance_config(pytestconfig)

    @pytest.fixture(scope="class")
    @classmethod
    def kit_workers(cls, kit_config: KitConfig) -> Iterator[Workers | None]:
        """The ``bgcb worker`` processes the configuration asks for, started before the backend is loaded."""
        workers = Workers(kit_config) if kit_config.spawn_workers else None
        yield workers
        if workers is not None:
            workers.stop()

    @pytest.fixture(scope="class")
    @classmethod
    def kit_backend(cls, kit_config: KitConfig, kit_workers: Workers | None) -> Iterator[Backend]:
        """One backend instance for the class (worker start-up is paid once)."""
        try:
            backend = open_backend(kit_config)
        except BgcbError as exc:
            failure = str(exc)
        else:
            failure = ""
        if failure:  # outside the except block: the message alone says it all
            pytest.fail(f"loading backend {kit_config.backend!r} failed: {failure}", pytrace=False)
        yield backend
        backend.close()

    @pytest.fixture
    def kit(self, kit_backend: Backend, kit_config: KitConfig, kit_workers: Workers | None, tmp_path: Path) -> Iterator[Kit]:
        """The helper for one check, with an observer recording the job events this process sees."""
        recorder = EventRecorder()
        observers.register(recorder)
        helper = Kit(kit_backend, kit_config, tmp_path, kit_workers, recorder)
        try:
            yield helper
        finally:
            helper.cleanup()
            observers.unregister(recorder)
