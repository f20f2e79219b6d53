"""Queue limits (bgcb.limits) and retries (bgcb.retrying): the pure logic; the integration suite and the
conformance kit check them through real backends."""

from __future__ import annotations

import pytest

import bgcb
from bgcb.jobs import Job, Outcome
from bgcb.limits import Limits, is_refused, refused_outcome
from bgcb.record import Counts, Data
from bgcb.retrying import Retrying, check_retries, retry_delay


def test_limits_refuse_past_the_queue_cap_then_past_the_owners() -> None:
    limits = Limits.of(10, 2, None, has_owner=True)
    assert limits.refusal(Counts(3, 1, 0), "carol") is None
    assert limits.refusal(None, "carol") is None  # a backend that cannot count lets jobs in
    handle = limits.refusal(Counts(10, 0, 0), "carol")
    assert handle == "refused:queue:10" and is_refused(handle)
    assert "10 jobs are waiting" in refused_outcome(handle).error["msg"]
    handle = limits.refusal(Counts(3, 2, 0), "carol")
    assert handle == "refused:owner:2" and "you already have 2 jobs waiting" in refused_outcome(handle).error["msg"]


@pytest.mark.parametrize("handle", ["refused:", "refused:queue:", "refused:owner:99999999999", "refused:x:1", "refused:queue:-1"])
def test_a_forged_refusal_handle_reads_as_a_plain_refusal(handle: str) -> None:
    outcome = refused_outcome(handle)
    assert outcome.kind == "error" and "refused by a queue limit" in outcome.error["msg"]


def test_limit_options_are_checked_with_a_message() -> None:
    with pytest.raises(bgcb.ConfigurationError, match="max_queued=0"):
        Limits.of(0, None, None, has_owner=False)
    with pytest.raises(bgcb.ConfigurationError, match="also give owner="):
        Limits.of(None, 3, None, has_owner=False)
    with pytest.raises(bgcb.ConfigurationError, match="retries=-1"):
        check_retries(-1, 1.0)
    with pytest.raises(bgcb.ConfigurationError, match="retry_delay"):
        check_retries(1, -2)
    with pytest.raises(ValueError, match="retry_later"):
        bgcb.retry_later(-1)


def test_retry_delays_double_and_only_errors_retry() -> None:
    job = Job(callback="k", args=[], retries=3, retry_delay=0.5)
    assert [retry_delay(job, n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    retrying = Retrying(jobs=None)  # type: ignore[arg-type]
    failed = Outcome.failure("boom")
    assert retrying.wanted(job, Data(), failed) == 0.5
    assert retrying.wanted(job, Data(attempt=4), failed) is None  # the first run and three retries
    assert retrying.wanted(job, Data(), Outcome.timed_out("slow")) is None
    assert retrying.wanted(job, Data(), Outcome.lost("gone")) is None
    assert retrying.wanted(Job(callback="k", args=[]), Data(), failed) is None  # off by default
    assert retrying.wanted(Job(callback="k", args=[]), Data(), Outcome.retry(7.0)) == 7.0
