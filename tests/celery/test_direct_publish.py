"""Task messages pushed with the job's record (``direct_publish``) are the messages Celery itself would send.

Run on the oldest and the newest supported Celery/kombu (the nox ``celery``
sessions), so that a change of Celery's message protocol shows here first;
the end-to-end tests (real workers) run every job through this path.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from bgcb.jobs import Job
from bgcb.provider import load


def _message(raw: str) -> dict[str, Any]:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    message["properties"].pop("delivery_tag")  # a fresh uuid per message, whoever sends it
    message["properties"].pop("reply_to")  # per Celery app and thread (results are ignored: nobody replies)
    return message


def test_the_pushed_message_is_the_one_celery_would_send(redis_server, redis_client) -> None:
    queue = "direct-" + uuid.uuid4().hex[:6]
    options = {"broker_url": redis_server.url(), "result_url": redis_server.url(), "queue": queue}
    direct = load("celery", fresh=True, prefix="d-" + uuid.uuid4().hex[:6], **options)
    through_celery = load("celery", fresh=True, prefix="c-" + uuid.uuid4().hex[:6], direct_publish=False, **options)
    try:
        assert direct.plugin._publisher is not None, "the broker is the store's Redis: messages go with the record"
        assert through_celery.plugin._publisher is None
        for job in (Job(callback="0" * 16, args=[1], timeout=5.0), Job(callback="0" * 16, args=["x" * 20_000])):
            job_id = direct.submit(job)
            pushed = _message(redis_client.lpop(queue))
            # the same job sent through Celery, under the same id, for comparison
            text = direct.hook.bgcb_load(job_id=job_id)
            through_celery.hook.bgcb_enqueue(
                job_id=job_id, job=text, data="{}", timeout=job.timeout, ttl=60, lane=None, priority=None, cap=None
            )
            sent = _message(redis_client.lpop(queue))
            for message in (pushed, sent):
                message["body"][1]["store"] = "<store id>"  # the two backends' prefixes differ
                message["headers"]["kwargsrepr"] = "<kwargs>"
            assert pushed == sent
            assert redis_client.llen(queue) == 0
    finally:
        direct.close()
        through_celery.close()


def test_a_broker_elsewhere_is_sent_through_celery(redis_server) -> None:
    backend = load("celery", fresh=True, broker_url="redis://127.0.0.1:1/0", result_url=redis_server.url())
    try:
        assert backend.plugin._publisher is None, "the broker is another server: only Celery can publish there"
    finally:
        backend.close()
