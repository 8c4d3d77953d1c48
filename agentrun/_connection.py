"""Connecting to Temporal through its standard environment configuration."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Plugin
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from agentrun._constants import DEFAULT_ADDRESS
from agentrun._plugin import AgentRunPlugin

# temporalio's message when Client.connect cannot reach the server.
CONNECT_FAILED = "Failed client connect"
# What a command or worker that cannot reach Temporal exits with (``agentrun`` exit 3).
EXIT_UNREACHABLE = 3


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    plugin: AgentRunPlugin | None = None,
    runtime: Runtime | None = None,
    plugins: Sequence[Plugin] = (),
) -> Client:
    """A client with ``AgentRunPlugin``, configured like every Temporal tool.

    The address, namespace, TLS and API key come from ``TEMPORAL_*`` variables and
    ``temporal.toml`` (default ``localhost:7233``), as for the ``temporal`` CLI.

    Args:
        address: Overrides the configured address (``host:port``).
        namespace: Overrides the configured namespace.
        plugin: agentrun's plugin; ``AgentRunPlugin()`` (from the environment) when None.
        runtime: The SDK runtime (e.g. one serving Prometheus metrics); the default
            runtime when None. Workers built on the client use it too.
        plugins: More client plugins (e.g. tracing); they apply to the workers built on
            the client too.
    """
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    return await Client.connect(
        **config, plugins=[plugin or AgentRunPlugin(), *plugins], runtime=runtime
    )


def configured_address(address: str | None = None) -> str:
    """The address a command or worker connects to, for messages."""
    if address:
        return address
    config = ClientConfig.load_client_connect_config()
    return str(config.get("target_host") or DEFAULT_ADDRESS)


def unreachable_message(target: str, err: RuntimeError) -> str | None:
    """One line for a connect that failed, or None when ``err`` is no failed connect."""
    text = str(err)
    if not text.startswith(CONNECT_FAILED):
        return None
    reason = "connection refused" if "ConnectionRefused" in text else " ".join(text.split())
    reason = reason if len(reason) <= 200 else reason[:199] + "…"
    return (
        f"cannot reach Temporal at {target} (start one with `agentrun server`, or set "
        f"TEMPORAL_ADDRESS): {reason}"
    )
