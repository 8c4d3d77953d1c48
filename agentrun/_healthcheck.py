"""``agentrun healthcheck``: does this host's worker poll its task queue?

The health check of the worker image (Dockerfile, docker-compose.yml). It connects the
way the worker does (Temporal's environment configuration, the ``AGENTRUN_TASK_QUEUE``
task queue) and asks Temporal for the task queue's recent pollers. It exits 0 when one
of them is a worker on this host, else 1 with one line that says why.

What it proves: Temporal answers with the container's address, namespace and
credentials, and a worker process in this container has polled the queue recently.
What it does not: that the worker is making progress on a turn. A worker identity is
``<pid>@<hostname>`` (the SDK's default), and Temporal keeps a poller in the list for
5 minutes after its last poll, so a worker that stopped polling turns unhealthy only
after those minutes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import NoReturn

from temporalio.client import Client
from temporalio.service import RPCError

from agentrun._connection import connect
from agentrun._plugin import AgentRunPlugin
from agentrun._settings import load_settings
from agentrun._task_queue import pollers

__all__ = ["TIMEOUT", "check", "main", "pollers_on"]

# Below the health check's own timeout (15 s in the Dockerfile and compose file), so a
# hung connection reports its cause instead of being killed silently.
TIMEOUT = 10.0


async def pollers_on(client: Client, queue: str) -> set[str]:
    """Identities of the workers that polled ``queue`` (workflow or activity tasks) lately."""
    return {poller.identity for poller in await pollers(client, queue)}


async def check(queue: str | None = None, host: str | None = None) -> str | None:
    """None when a worker on ``host`` polls ``queue``; otherwise what is wrong.

    Args:
        queue: The task queue (default: the configured one).
        host: The worker's host name (default: this host's).
    """
    host = host or socket.gethostname()
    try:
        settings = load_settings()
        queue = queue or settings.task_queue
        client = await connect(plugin=AgentRunPlugin(settings))
        identities = await pollers_on(client, queue)
    except (RuntimeError, ValueError, OSError) as err:  # unreachable, or bad settings
        return f"cannot connect to Temporal: {err}"
    except RPCError as err:
        return f"Temporal refused to describe task queue {queue!r}: {err.message}"
    if not any(identity.endswith(f"@{host}") for identity in identities):
        seen = ", ".join(sorted(identities)) or "none"
        return f"no worker on {host} polls task queue {queue!r} (pollers: {seen})"
    return None


async def _check_in_time() -> str | None:
    try:
        return await asyncio.wait_for(check(), TIMEOUT)
    except TimeoutError:
        return f"no answer from Temporal within {TIMEOUT:.0f}s"


def main() -> NoReturn:
    """Entry point: exit 0 when healthy, else print why and exit 1."""
    problem = asyncio.run(_check_in_time())
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skips the interpreter's teardown: the SDK's Rust threads can outlive the event
    # loop and abort a finalizing interpreter (SIGABRT), which would turn a healthy
    # answer into a failed check (temporalio/sdk-python#300).
    os._exit(0 if problem is None else 1)


if __name__ == "__main__":
    main()
