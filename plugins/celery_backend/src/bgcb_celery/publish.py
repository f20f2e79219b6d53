"""Task messages pushed straight onto the broker's Redis list, in the round trip that stores the job.

When the Celery broker is the store's Redis (the usual set-up), ``send_task``
costs the web process more than everything else a submit does: routing,
publish signals, a producer from the pool, the retry policy, then one
``LPUSH``. This module builds the same message with Celery's own
``create_task_message`` (so headers follow the installed Celery's protocol)
and wraps it the way kombu's Redis transport stores a message, so that the
store writes the record, the payload and the message in one pipeline.

The message goes to the default exchange with the queue's name as routing
key, at priority 0: exactly what kombu writes for ``send_task(queue=...)``.
Celery's ``before_task_publish``/``after_task_publish`` signals do not fire
for these messages; ``direct_publish=False`` sends through Celery instead.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from .defaults import TASK_NAME


class DirectPublisher:
    """Task messages for the broker list ``broker_list``, built for the Celery app ``celery``."""

    def __init__(self, celery: Any, queue: str, broker_list: str) -> None:
        self.celery = celery
        self.queue = queue
        self.broker_list = broker_list

    def message(self, job_id: str, kwargs: dict[str, Any], limits: dict[str, float]) -> str:
        """The text kombu's Redis transport would push for ``send_task(TASK_NAME, args=[job_id], kwargs=...)``."""
        headers, properties, body, _ = self.celery.amqp.create_task_message(
            job_id,
            TASK_NAME,
            [job_id],
            kwargs,
            ignore_result=True,
            reply_to=self.celery.thread_oid,
            time_limit=limits.get("time_limit"),
            soft_time_limit=limits.get("soft_time_limit"),
        )
        encoded = base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii")
        properties = {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": self.queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        envelope = {
            "body": encoded,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": properties,
        }
        return json.dumps(envelope)


def send(celery: Any, queue: str, job_id: str, kwargs: dict[str, Any], task_id: str | None = None, **options: Any) -> None:
    """bgcb's task for ``job_id`` (a job, or a ticket) through Celery's own ``send_task``: JSON only, no result
    kept; ``options`` are Celery's (``countdown``, time limits)."""
    celery.send_task(
        TASK_NAME,
        args=[job_id],
        kwargs=kwargs,
        task_id=task_id or job_id,
        queue=queue,
        serializer="json",
        ignore_result=True,
        **options,
    )
