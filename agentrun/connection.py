"""Connecting to Temporal through its standard environment configuration."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from agentrun.plugin import AgentRunPlugin

DEFAULT_ADDRESS = "localhost:7233"


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """A client configured from ``TEMPORAL_*`` variables and ``temporal.toml``.

    Args:
        address: Overrides the configured address (``host:port``).
        namespace: Overrides the configured namespace.
        runtime: The SDK runtime (e.g. one serving Prometheus metrics); the default
            runtime when None. Workers built on the client use it too.
        interceptors: Client interceptors (e.g. tracing); one that is also a worker
            interceptor applies to the workers built on the client too.
    """
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    return await Client.connect(
        **config, plugins=[AgentRunPlugin()], runtime=runtime, interceptors=interceptors
    )
