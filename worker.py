"""The agentrun worker: connect through envconfig, serve AgentRun, stop on a signal.

Run it with ``python worker.py`` or ``agentrun worker``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities import TurnActivities, read_run
from agentrun.agents import AgentRegistry, default_registry
from agentrun.agents.registry_file import RegistryError, load_registry
from agentrun.connection import connect
from agentrun.constants import HEARTBEAT_THROTTLE, task_queue
from workflows import AgentRunWorkflow

# A shutdown waits this long for turns to reach a checkpoint before cancelling them;
# a cancelled turn is retried on another worker from its last checkpoint.
GRACEFUL_SHUTDOWN = timedelta(seconds=5)
# A run cached on a worker that died is handed to another worker after this long
# (the SDK's default is 10 s); live workers take sticky tasks at once.
STICKY_TIMEOUT = timedelta(seconds=2)


def build_worker(
    client: Client, registry: AgentRegistry | None = None, queue: str | None = None
) -> Worker:
    """A worker for ``AgentRun`` on ``queue`` (default: the configured task queue)."""
    turns = TurnActivities(registry or default_registry())
    return Worker(
        client,
        task_queue=queue or task_queue(),
        workflows=[AgentRunWorkflow],
        activities=[turns.run_turn, read_run],
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT,
    )


async def run_worker(address: str | None = None) -> None:
    """Run a worker until SIGINT or SIGTERM, then shut down gracefully.

    The agent registry file is read first: a bad one stops the worker before it
    serves anything (RegistryError, naming the file and the line or key).
    """
    registry = load_registry()
    client = await connect(address)
    worker = build_worker(client, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        logging.getLogger("agentrun").info(
            "Worker serving task queue %r on %s",
            worker.task_queue,
            client.service_client.config.target_host,
        )
        await stop.wait()


def main() -> None:
    """Entry point of ``python worker.py``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(run_worker())
    except RegistryError as err:
        raise SystemExit(f"agentrun worker: {err}") from None


if __name__ == "__main__":
    main()
