"""Connecting to Temporal through its standard environment configuration."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.envconfig import ClientConfig

from agentrun.plugin import AgentRunPlugin

DEFAULT_ADDRESS = "localhost:7233"


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    """A client configured from ``TEMPORAL_*`` variables and ``temporal.toml``.

    Args:
        address: Overrides the configured address (``host:port``).
        namespace: Overrides the configured namespace.
    """
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    return await Client.connect(**config, plugins=[AgentRunPlugin()])
