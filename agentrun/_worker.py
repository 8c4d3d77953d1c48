"""The agentrun worker process: ``python worker.py`` and ``agentrun worker``.

Settings are read once, here, before anything connects: a bad value, registry file,
key or metrics address stops the process with one line naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator

from temporalio.client import Client
from temporalio.worker import Worker

from agentrun._agents._inventory import agent_line, registry_line
from agentrun._agents._registry_file import RegistryError, registry_file
from agentrun._codec import CodecError
from agentrun._connection import (
    EXIT_UNREACHABLE,
    configured_address,
    connect,
    unreachable_message,
)
from agentrun._core_logs import core_logging
from agentrun._observability import (
    ObservabilityError,
    flush_tracing,
    metrics_runtime,
    tracing_plugins,
)
from agentrun._plugin import AgentRunPlugin
from agentrun._settings import AgentRunSettings, SettingsError, load_settings
from agentrun._storage import StorageConfigError
from agentrun._storage_gc import collect_every

__all__ = ["LOG_FORMAT", "STARTUP_ERRORS", "main", "run_worker"]

# One record, one line: a worker's log is read in files and by tools.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# What a worker's configuration can get wrong; each is reported as one line.
STARTUP_ERRORS = (
    SettingsError,
    RegistryError,
    ObservabilityError,
    StorageConfigError,
    CodecError,
)


async def run_worker(
    settings: AgentRunSettings | None = None,
    address: str | None = None,
    metrics_address: str | None = None,
) -> None:
    """Serve the agentrun task queue until SIGINT or SIGTERM, then shut down gracefully.

    The agent registry file is read first: a bad one stops the worker before it
    serves anything (RegistryError, naming the file and the line or key).
    """
    settings = settings or load_settings()
    plugin = AgentRunPlugin(settings)
    if settings.storage_gc_interval is not None and plugin.payloads.storage.driver is None:
        raise StorageConfigError(
            "AGENTRUN_STORAGE_GC_INTERVAL is set, but AGENTRUN_STORAGE=off stores nothing"
        )
    registry = plugin.registry()  # checked before connecting, like every setting
    core_logs = core_logging(configured_address(address))
    runtime = metrics_runtime(metrics_address or settings.metrics_address, core_logs)
    client = await connect(
        address, plugin=plugin, runtime=runtime, plugins=tracing_plugins(settings.otel)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Worker(client, task_queue=settings.task_queue), _collecting(client, plugin):
        log = logging.getLogger("agentrun")
        log.info(
            "Worker serving task queue %r on %s; payloads %s",
            settings.task_queue,
            client.service_client.config.target_host,
            plugin.payloads.describe(),
        )
        log.info("%s", registry_line(registry_file(settings.agents)))
        for spec in registry.specs():
            log.info("%s", agent_line(registry, spec))
        await stop.wait()


@contextlib.asynccontextmanager
async def _collecting(client: Client, plugin: AgentRunPlugin) -> AsyncIterator[None]:
    """Storage garbage collection every ``AGENTRUN_STORAGE_GC_INTERVAL``, when set."""
    interval = plugin.settings.storage_gc_interval
    if interval is None:
        yield
        return
    collecting = asyncio.create_task(collect_every(client, plugin.payloads.storage, interval))
    try:
        yield
    finally:
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting


def main() -> None:
    """Entry point of ``python worker.py``."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        asyncio.run(run_worker())
    except STARTUP_ERRORS as err:
        raise SystemExit(f"agentrun worker: {err}") from None
    except RuntimeError as err:
        # The same line and exit code as ``agentrun worker`` (and every command).
        message = unreachable_message(configured_address(), err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_UNREACHABLE)  # no teardown: see below
    # All work is handed over by now. The SDK's native runtime can abort while the
    # interpreter tears down; leaving at once keeps the exit status a clean 0.
    flush_tracing()  # os._exit skips the exporter's own flush at exit
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
