"""``bgcb_jobs_queued`` and ``bgcb_jobs_running``: read from the backends at scrape time, not counted.

A gauge kept from events would drift (a worker killed mid-job never says it
stopped), and in multiprocess mode each process's share would be summed into
nonsense. So the collector asks the store itself, from the scraping process
only: it is never written to the multiprocess files, and every process that
reads one store answers the same numbers.

Cost per scrape and store: ``queued`` is one ``bgcb_counts`` call (a read or
two); ``running`` is one ``bgcb_active`` listing plus one record read per
running job (the listing puts running jobs first; reading stops at the first
queued one). On bgcb-diskcache the listing is two local reads; on bgcb-celery
it is a Redis SCAN of the kept job records, so with long result TTLs and
frequent scrapes set ``BGCB_PROMETHEUS_RUNNING=0`` to leave that gauge out.
Reading a running job's record is what a browser poll does: a job whose
worker is gone is declared lost then, as a poll would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bgcb import provider
from bgcb.jobs import State

QUEUED = "bgcb_jobs_queued"
RUNNING = "bgcb_jobs_running"
#: Set to 0 to leave ``bgcb_jobs_running`` out (its listing is a scan on some backends).
ENV_RUNNING = "BGCB_PROMETHEUS_RUNNING"

log = logging.getLogger("bgcb.prometheus")


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            QUEUED, "Jobs waiting in the backend's queue (those waiting to run again included).", labels=["backend"]
        ),
        GaugeMetricFamily(RUNNING, "Jobs running in the backend's workers now.", labels=["backend"]),
    )


class BackendGauges(Collector):
    """Queued and running jobs of each backend loaded in this process (``bgcb.provider.loaded``).

    Backends loaded with other options on one store (several managers) are
    read once; two stores of one backend name are added up.
    """

    def __init__(self, backends: Callable[[], Iterable[provider.Backend]] = provider.loaded, running: bool | None = None) -> None:
        self.backends = backends
        self.running = running

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return list(_families())  # registering must not read any store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queued, running = _families()
        totals: dict[str, list[int | None]] = {}
        seen: set[tuple[str, str]] = set()
        for backend in self.backends():
            try:
                store = (backend.name, str(backend.describe().get("where") or ""))
                if store in seen:
                    continue
                seen.add(store)
                found = self._read(backend)
            except Exception as exc:  # a store that is down must not fail the whole scrape
                log.warning("bgcb-prometheus: could not read the queue of backend %r: %r", backend.name, exc)
                continue
            sums = totals.setdefault(backend.name, [None, None])
            for i, value in enumerate(found):
                if value is not None:
                    sums[i] = (sums[i] or 0) + value
        for name, (q, r) in sorted(totals.items()):
            if q is not None:
                queued.add_metric([name], q)
            if r is not None:
                running.add_metric([name], r)
        yield queued
        yield running

    def _wants_running(self) -> bool:
        if self.running is not None:
            return self.running
        return os.environ.get(ENV_RUNNING, "1").strip().lower() not in ("0", "false", "no", "off")

    def _read(self, backend: provider.Backend) -> tuple[int | None, int | None]:
        counts = backend.counts("")
        queued = counts.queued if counts is not None else None
        if not self._wants_running() or not backend.hook.bgcb_active.get_hookimpls():
            return queued, None
        ids = list(backend.hook.bgcb_active() or [])
        running = 0
        for i, job_id in enumerate(ids):
            state = backend.status(job_id).state
            if state is State.QUEUED:  # running ones come first: the rest are queued
                return (len(ids) - i if queued is None else queued), running
            running += state is State.RUNNING
        return (0 if queued is None else queued), running
