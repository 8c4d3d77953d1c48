"""The agentrun worker: connect through envconfig, serve AgentRun, stop on a signal.

Run it with ``python worker.py`` or ``agentrun worker``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities import TurnActivities, read_run
from agentrun.agents import AgentRegistry, default_registry
from agentrun.agents.registry_file import RegistryError, load_registry
from agentrun.codec import CodecError
from agentrun.connection import connect
from agentrun.constants import HEARTBEAT_THROTTLE, env_int, stream_batch_interval, task_queue
from agentrun.observability import (
    ObservabilityError,
    RunMetricsInterceptor,
    flush_tracing,
    metrics_runtime,
    tracing_interceptors,
)
from agentrun.plugin import PayloadSettings
from agentrun.storage import StorageConfigError
from workflows import AgentRunWorkflow

# A shutdown waits this long for turns to reach a checkpoint before cancelling them;
# a cancelled turn is retried on another worker from its last checkpoint.
GRACEFUL_SHUTDOWN = timedelta(seconds=5)
# A run cached on a worker that died is handed to another worker after this long
# (the SDK's default is 10 s); live workers take sticky tasks at once.
STICKY_TIMEOUT = timedelta(seconds=2)
# How many turns one worker runs at once (the SDK's default is 100): a sleeping or
# streaming turn holds its slot. Set with AGENTRUN_MAX_CONCURRENT_TURNS.
MAX_TURNS_ENV = "AGENTRUN_MAX_CONCURRENT_TURNS"
DEFAULT_MAX_TURNS = 100


def max_concurrent_turns() -> int:
    """``AGENTRUN_MAX_CONCURRENT_TURNS`` (1 to 10000), or 100."""
    return env_int(MAX_TURNS_ENV, DEFAULT_MAX_TURNS, 1, 10_000)


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
        max_concurrent_activities=max_concurrent_turns(),
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT,
        # agentrun's own counters; no-ops unless the client's runtime exports metrics.
        interceptors=[RunMetricsInterceptor()],
    )


async def run_worker(address: str | None = None, metrics_address: str | None = None) -> None:
    """Run a worker until SIGINT or SIGTERM, then shut down gracefully.

    The agent registry file is read first: a bad one stops the worker before it
    serves anything (RegistryError, naming the file and the line or key).
    Metrics and tracing are on when configured (``agentrun.observability``).
    """
    registry = load_registry()
    payloads = PayloadSettings.from_env()  # checked before connecting, like the registry
    # So are the worker's own settings: a bad value stops it, naming the variable.
    max_concurrent_turns()
    stream_batch_interval()
    client = await connect(
        address, runtime=metrics_runtime(metrics_address), interceptors=tracing_interceptors()
    )
    worker = build_worker(client, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        logging.getLogger("agentrun").info(
            "Worker serving task queue %r on %s; payloads %s",
            worker.task_queue,
            client.service_client.config.target_host,
            payloads.describe(),
        )
        await stop.wait()


def main() -> None:
    """Entry point of ``python worker.py``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(run_worker())
    except (RegistryError, ObservabilityError, StorageConfigError, CodecError, ValueError) as err:
        raise SystemExit(f"agentrun worker: {err}") from None
    # All work is handed over by now. The SDK's native runtime can abort while the
    # interpreter tears down; leaving at once keeps the exit status a clean 0.
    flush_tracing()  # os._exit skips the exporter's own flush at exit
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
