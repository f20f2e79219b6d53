"""The Redis key layout of bgcb-celery and its record format (see :mod:`bgcb_celery.store`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from functools import cached_property

from bgcb import Stored

log = logging.getLogger("bgcb.celery")

#: Separates the parts of a record (JSON escapes it, so data never holds it raw).
SEP = "\x1f"


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str

    def rec(self, job_id: str) -> str:
        return f"{self.prefix}:rec:{job_id}"

    def payload(self, job_id: str) -> str:
        return f"{self.prefix}:payload:{job_id}"

    def upd(self, job_id: str) -> str:
        return f"{self.prefix}:upd:{job_id}"

    def seen(self, job_id: str) -> str:
        """When a browser last polled the job (seconds since the epoch), for abandoned jobs."""
        return f"{self.prefix}:seen:{job_id}"

    def worker(self, name: str) -> str:
        return f"{self.prefix}:worker:{name}"

    def serving(self, queue: str) -> str:
        """Workers consuming ``queue``, scored by when their announcement expires (:mod:`.presence`)."""
        return f"{self.prefix}:serving:{queue}"

    def cache(self, cache_key: str) -> str:
        return f"{self.prefix}:cache:{cache_key}"

    def later(self, queue: str) -> str:
        """Jobs of ``queue`` waiting to be queued again, scored by when they are due (:mod:`.later`)."""
        return f"{self.prefix}:later:{queue}"

    @property
    def secret(self) -> str:
        return f"{self.prefix}:secret"


@dataclass(frozen=True)
class Record:
    """A job's record: the core's state and data, the worker's ``mark`` ("0": it appended no
    updates) and ``beat`` (its heartbeat count when it claimed the job), and ``until``: when the
    writer meant it to expire (ms since the epoch), so that a compare-and-set that puts it back
    gives it the same end instead of a new TTL."""

    state: str
    data: str
    mark: str = ""
    beat: str = ""
    until: str = ""

    def encode(self) -> str:
        return SEP.join((self.state, self.mark, self.beat, self.until, self.data))

    @classmethod
    def decode(cls, text: str) -> Record | None:
        parts = text.split(SEP, 4)
        return cls(parts[0], parts[4], parts[1], parts[2], parts[3]) if len(parts) == 5 else None

    def _field(self, name: str) -> object:
        """One field of the core's data (None when the data is not a JSON object)."""
        try:
            return json.loads(self.data).get(name)
        except (ValueError, AttributeError):
            return None

    @cached_property
    def worker(self) -> str | None:
        """``host:pid`` of the process running the job, as the core's data names it (parsed once per read)."""
        name = self._field("worker")
        return name if isinstance(name, str) and name else None

    @property
    def waiting(self) -> bool:
        """Whether the job waits to be queued again (``bgcb_defer``): its data's ``retry_at`` is still ahead."""
        if '"retry_at"' not in self.data:  # most records: no parse
            return False
        when = self._field("retry_at")
        return isinstance(when, int | float) and when > time.time()

    @property
    def submitted_at(self) -> float:
        """When the job was submitted (0 when the data does not say): the order of ``bgcb jobs``."""
        when = self._field("submitted_at")
        return float(when) if isinstance(when, int | float) else 0.0


def alive_from(job_id: str, record: Record, beat: str) -> bool | None:
    """Whether the worker of a running job still runs it, from its heartbeat ``"count id id ..."``.

    Listed: alive. Not listed, but the heartbeat was not written since the
    claim (its count is not past the one the claim recorded): alive, the next
    beat lists it. Not listed in a later beat: the process no longer runs it.
    """
    count, _, ids = beat.partition(" ")
    if job_id in ids.split():
        return True
    try:
        return int(count) <= int(record.beat)
    except ValueError:
        return None


# -- values bgcb did not write -------------------------------------------------------------


def foreign(text: str) -> bool:
    """Whether ``text`` was read from bytes that are not UTF-8 (the store's client decodes them to lone
    surrogates): bgcb writes text only, so the value is another writer's (junk, a pickle), never bgcb's."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unreadable(job_id: str, why: object) -> None:
    log.warning("bgcb-celery: the stored record of job %s is not one bgcb wrote (%s); it reads as unknown", job_id, why)
    return None


def read_record(job_id: str, text: str) -> Record | None:
    """The record stored as ``text``; None (logged) when it is not one bgcb wrote."""
    rec = None if foreign(text) else Record.decode(text)
    if rec is None:
        unreadable(job_id, "not a record of this layout")
    return rec


def secret_of(text: str) -> bytes:
    """The signing secret stored as ``text``: the base64 bgcb writes, else (another writer's value) a digest
    of it, the same in every process, so that what one web worker signs passes in the others."""
    if not foreign(text):
        try:
            secret = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            secret = b""
        if secret:
            return secret
    log.warning("bgcb-celery: the shared secret in Redis is not one bgcb wrote; every process uses a digest of it")
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def stored_for_outage(last: Stored | None) -> Stored:
    """What a poll answers while Redis is unreachable: the last read of the job, without updates.

    A job this process never read is reported running with empty data (no
    timestamps, no deadline), which keeps the browser waiting and lets the
    core decide nothing from it.
    """
    if last is None:
        return Stored("running", "{}")
    return Stored(last.state, last.data, [], last.position, None)
