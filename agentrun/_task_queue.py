"""Who polls a task queue, as Temporal's ``DescribeTaskQueue`` tells it.

The worker image's health check asks it, and so do the commands that need a worker
(``agentrun run``, ``watch``, ``show``, ``thread``): without one, a run waits in its
queue and a query waits for its timeout, so they say at once that none polls instead
of waiting in silence.

temporalio 1.35 has no high-level call for it: this is the raw request, for workflow
and activity tasks alike (a worker polls both).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import PollerInfo, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from agentrun._constants import DEFAULT_ADDRESS, DEFAULT_TASK_QUEUE

__all__ = [
    "QUERIES_NEED_A_WORKER",
    "RECENT_POLL",
    "NoWorkerError",
    "no_worker_hint",
    "pollers",
    "worker_polls",
]

# Temporal lists a poller for minutes after its last poll. A live worker always has a
# long poll (up to about a minute) in flight, each starting as the last ends: one
# seen within this long is there, an older one went away.
RECENT_POLL = timedelta(seconds=90)
# What a command cannot do without a worker, in its no-worker message.
QUERIES_NEED_A_WORKER = "only a worker can answer a run's queries"
_POLLED_TYPES = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)


async def pollers(client: Client, queue: str) -> list[PollerInfo]:
    """The pollers Temporal lists on ``queue``, workflow and activity tasks together."""
    found: list[PollerInfo] = []
    for queue_type in _POLLED_TYPES:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=queue_type,
            )
        )
        found.extend(response.pollers)
    return found


async def worker_polls(client: Client, queue: str) -> bool:
    """Whether a worker polled ``queue`` within ``RECENT_POLL``."""
    since = datetime.now(UTC) - RECENT_POLL
    return any(
        poller.last_access_time.ToDatetime(UTC) >= since for poller in await pollers(client, queue)
    )


class NoWorkerError(Exception):
    """No worker polls the task queue a command needs one on; the message says how to
    start one."""


def no_worker_hint(client: Client, queue: str, consequence: str) -> str:
    """One line: no worker polls ``queue`` at the client's address, ``consequence``,
    and how to start one."""
    address = client.service_client.config.target_host
    variables = [f"TEMPORAL_ADDRESS={address}"] if address != DEFAULT_ADDRESS else []
    variables += [f"AGENTRUN_TASK_QUEUE={queue}"] if queue != DEFAULT_TASK_QUEUE else []
    command = " ".join([*variables, "agentrun worker"])
    return (
        f"no worker is polling task queue {queue!r} at {address} ({consequence}); start one "
        f"with `{command}` (or `python worker.py`)"
    )
