"""agentrun's Temporal wiring in one plugin, for the worker, the client and the tests.

``Client.connect(..., plugins=[AgentRunPlugin()])`` is all a worker needs: any
``Worker(client, task_queue="agentrun")`` built on that client serves ``AgentRun``.
"""

from __future__ import annotations

import dataclasses
import functools
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)
from temporalio.plugin import SimplePlugin
from temporalio.worker import PollerBehaviorSimpleMaximum, WorkerConfig, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from agentrun._codec import EncryptionCodec, codec_from_settings, tolerant_codec
from agentrun._constants import HEARTBEAT_THROTTLE
from agentrun._converter import SharedPydanticPayloadConverter
from agentrun._observability import RunMetricsInterceptor
from agentrun._payload_guard import PayloadGuard, PayloadLimit, PayloadTooLargeError
from agentrun._settings import AgentRunSettings, load_settings
from agentrun._storage import StorageSettings
from agentrun._storage_guard import tolerant_storage

if TYPE_CHECKING:
    # Imported where used: a client (the command line) never loads agents or tools.
    from pydantic_ai import Tool

    from agentrun._agents import AgentRegistry, AgentSpec
    from agentrun._tools import AgentTool, MCPServer

# Worker tuning for agentrun's task queue, applied where the worker kept the SDK's
# default. A cancel reaches a turn only through a heartbeat, and the SDK's throttle
# (up to 60 s) would hold a stop back for seconds: 0.3 s keeps it near half a second.
GRACEFUL_SHUTDOWN = timedelta(seconds=5)  # turns reach a checkpoint before a cancel
# A run cached on a worker that died goes to another worker after this long (the SDK
# waits 10 s); live workers take sticky tasks at once.
STICKY_TIMEOUT = timedelta(seconds=2)
WORKFLOW_TASK_POLLS = PollerBehaviorSimpleMaximum(maximum=20)
NONSTICKY_POLL_RATIO = 0.05  # of the polls, on the shared queue: one
_SDK_POLLS = PollerBehaviorSimpleMaximum(maximum=5)
_SDK_NONSTICKY_RATIO = 0.2
_SDK_DEFAULTS: dict[str, object] = {
    "max_heartbeat_throttle_interval": timedelta(seconds=60),
    "default_heartbeat_throttle_interval": timedelta(seconds=30),
    "graceful_shutdown_timeout": timedelta(),
    "sticky_queue_schedule_to_start_timeout": timedelta(seconds=10),
}


def _passthrough_modules() -> tuple[str, ...]:
    """Modules the workflow sandbox shares instead of re-importing for every run.

    Every module of agentrun, the workflows too: the models, the delegation rules and
    the workflow code are deterministic and keep no state at module level (constants
    only). The sandbox executed the workflow modules again for every run's start, 15 ms
    of the worker's time each (BENCHMARKS.md); ``tests/test_sandbox.py`` still runs the
    workflow code through the strict sandbox, re-imported, so its checks apply to it.
    pydantic and pydantic_core are heavy, and side-effect free at import. beartype:
    once an MCP client is imported (its dependency ``py-key-value-aio`` installs
    ``beartype.claw``'s import hook), every module the sandbox imports is loaded through
    that hook, which imports beartype's ~370 modules into each run's sandbox.
    """
    import agentrun

    own = [f"agentrun.{module.name}" for module in pkgutil.iter_modules(agentrun.__path__)]
    return (*own, "pydantic", "pydantic_core", "annotated_types", "beartype")


@dataclasses.dataclass(frozen=True)
class PayloadSettings:
    """How payloads travel: large ones by reference, all of them encrypted if asked."""

    storage: StorageSettings = dataclasses.field(default_factory=StorageSettings.off)
    codec: PayloadCodec | None = None

    @classmethod
    def from_settings(cls, settings: AgentRunSettings) -> PayloadSettings:
        """Storage and encryption as ``settings`` configure them (docs/settings.md).

        Raises:
            ValueError: a setting cannot be used (``StorageConfigError``, ``CodecError``).
        """
        return cls(StorageSettings.from_settings(settings), codec_from_settings(settings))

    def describe(self) -> str:
        """One line for a worker's log: where large payloads go, and the encryption."""
        codec = self.codec
        if isinstance(codec, EncryptionCodec):
            sealed = f"encrypted with key {codec.key_id!r} (reads {', '.join(codec.key_ids)})"
        else:
            sealed = "not encrypted" if codec is None else f"encoded by {type(codec).__name__}"
        return f"{self.storage.describe()}; {sealed}"

    def limit(self) -> PayloadLimit:
        """The largest value one payload may carry with these settings."""
        converter = pydantic_data_converter.payload_converter
        if self.storage.driver is None:
            return PayloadLimit.inline(converter)
        return PayloadLimit.stored(self.storage.max_payload_size, converter)


def _data_converter(existing: DataConverter | None, settings: PayloadSettings) -> DataConverter:
    # JSON through pydantic (docs/contract.md), keeping any codec the operator configured.
    codec = settings.codec or (existing.payload_codec if existing else None)
    storage = settings.storage.external_storage()
    if storage is None and existing is not None:
        storage = existing.external_storage
    storage = tolerant_storage(storage)  # a crafted reference never wedges a task
    # The SDK encodes before it stores, so the blobs in external storage are
    # encrypted as well. With a codec, failure messages (which can quote a prompt)
    # are encoded too instead of staying readable in the history.
    failures = (
        DefaultFailureConverterWithEncodedAttributes
        if codec
        else pydantic_data_converter.failure_converter_class
    )
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=SharedPydanticPayloadConverter,
        payload_codec=codec,
        external_storage=storage,
        failure_converter_class=failures,
    )


def _workflow_runner(existing: WorkflowRunner | None) -> WorkflowRunner:
    runner = existing or SandboxedWorkflowRunner()
    if not isinstance(runner, SandboxedWorkflowRunner):
        return runner
    restrictions = runner.restrictions.with_passthrough_modules(*_passthrough_modules())
    return dataclasses.replace(runner, restrictions=restrictions)


class AgentRunPlugin(SimplePlugin):
    """Everything a Temporal client and worker need to run agentrun.

    Registers the ``AgentRun`` workflow, the turn and run-reading activities, pydantic
    JSON payloads, external storage and encryption of large payloads, the sandbox
    pass-through, the payload size guard and agentrun's metrics. A worker built on a
    client with the plugin also gets agentrun's tuning wherever it kept the SDK's
    defaults (heartbeat throttle, graceful shutdown, sticky timeout, activity slots):
    pass your own values to ``Worker`` to keep them.

    Example:
        ```python
        client = await Client.connect("localhost:7233", plugins=[AgentRunPlugin()])
        await Worker(client, task_queue="agentrun").run()
        ```
    """

    def __init__(
        self,
        settings: AgentRunSettings | None = None,
        *,
        agents: AgentRegistry | Iterable[AgentSpec] = (),
        agents_file: str | Path | None = None,
        payloads: PayloadSettings | None = None,
        tools: Iterable[Callable[..., Any] | Tool[Any] | AgentTool] = (),
        mcp_servers: Iterable[MCPServer] = (),
    ) -> None:
        """Build the plugin; with no arguments, from the environment and ``agents.toml``.

        Args:
            settings: agentrun's settings; read from ``AGENTRUN_*`` variables when None.
            agents: Agents defined in code, added to the built-in ``scripted`` agent and
                the registry file's; an ``AgentRegistry`` is used as it is instead.
            agents_file: The registry file; default ``settings.agents``, else
                ``agents.toml`` in the working directory when there is one.
            payloads: Storage and encryption; from ``settings`` when None.
            tools: Tools agents may call: functions (their name, type hints and
                docstring describe them), ``pydantic_ai.Tool``s, or ``as_tool(...)``
                with activity options. Each call is an activity of its own.
            mcp_servers: MCP servers whose tools agents may call.

        Raises:
            SettingsError: an ``AGENTRUN_*`` variable has a bad value.
            ValueError: the storage or encryption settings cannot be used.
        """
        self.settings = settings or load_settings()
        self.payloads = payloads or PayloadSettings.from_settings(self.settings)
        self._agents = agents
        self._agents_file = agents_file or self.settings.agents
        self._tools = _as_tools(tools)
        self._mcp_servers = list(mcp_servers)
        self._registry: AgentRegistry | None = None
        super().__init__(
            "agentrun",
            data_converter=functools.partial(_data_converter, settings=self.payloads),
            workflow_runner=_workflow_runner,
            workflows=_workflows,
            # PayloadGuard checks every payload's size where it leaves, so an oversized
            # one fails its run with a clear message instead of a task retried forever;
            # it guards every workflow on the worker, hence its error type worker-wide.
            interceptors=[PayloadGuard(self.payloads.limit()), RunMetricsInterceptor()],
            workflow_failure_exception_types=[PayloadTooLargeError],
        )

    def registry(self) -> AgentRegistry:
        """The agents this plugin's workers serve, read and checked once.

        Raises:
            RegistryError: the registry file is bad; the message names file and key.
        """
        if self._registry is None:
            self._registry = _registry(
                self._agents, self._agents_file, self._tools, self._mcp_servers
            )
        return self._registry

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        """Add agentrun's activities, and its tuning where the worker kept the defaults."""
        from agentrun._turn_retries import log_retries_in_one_line
        from agentrun.activities import (
            TurnActivities,
            check_budget,
            read_run,
            read_run_summary,
            reserve_runs,
            stop_for_budget,
        )

        config = super().configure_worker(config)
        if "client" in config:
            config["client"] = _worker_client(config["client"])
        turns = TurnActivities(
            self.registry(),
            self.settings.stream_batch_interval,
            self.settings.owner_turn_cap,
            self.settings.stream_unwatched_batch_interval,
            max_runs_per_tree=self.settings.max_runs_per_tree,
        )
        ours: list[Callable[..., Any]] = [
            turns.run_turn,
            read_run,
            read_run_summary,
            reserve_runs,
            check_budget,
            stop_for_budget,
            *turns.tool_activities(),
        ]
        config["activities"] = [*config.get("activities", []), *ours]
        _tune(config, self.settings)
        log_retries_in_one_line()
        return config


def _worker_client(client: Client) -> Client:
    """``client`` with the codec a worker decodes with (``tolerant_codec``): a payload
    sealed with no configured key fails only what carries it, never a task for ever.
    Clients keep the strict codec, so a reader without the key gets a clear error."""
    config = client.config(active_config=True)
    converter = config["data_converter"]
    codec = tolerant_codec(converter.payload_codec)
    if codec is converter.payload_codec:
        return client
    # The plugins have configured this client already; the copy runs none again.
    config["data_converter"] = dataclasses.replace(converter, payload_codec=codec)
    config["plugins"] = []
    return Client(**config)


def _as_tools(tools: Iterable[Callable[..., Any] | Tool[Any] | AgentTool]) -> list[AgentTool]:
    listed = list(tools)
    if not listed:
        return []
    from agentrun._tools import as_tool

    return [as_tool(tool) for tool in listed]


def _workflows(existing: Sequence[type] | None) -> Sequence[type]:
    from agentrun.workflows import AgentRunWorkflow

    return [*(existing or []), AgentRunWorkflow]


def _registry(
    agents: AgentRegistry | Iterable[AgentSpec],
    file: str | Path | None,
    tools: list[AgentTool],
    mcp_servers: list[MCPServer],
) -> AgentRegistry:
    from agentrun._agents import AgentRegistry
    from agentrun._agents._registry_file import RegistryError, load_registry

    if isinstance(agents, AgentRegistry):
        try:
            return agents.with_tools(tools, mcp_servers)
        except ValueError as err:
            raise RegistryError(str(err)) from None
    return load_registry(file, extra=list(agents), tools=tools, mcp_servers=mcp_servers)


def _tune(config: WorkerConfig, settings: AgentRunSettings) -> None:
    """agentrun's worker settings, where the worker kept the SDK's defaults."""
    ours: dict[str, object] = {
        "max_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
        "default_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
        "graceful_shutdown_timeout": GRACEFUL_SHUTDOWN,
        "sticky_queue_schedule_to_start_timeout": STICKY_TIMEOUT,
    }
    loose: dict[str, Any] = config  # type: ignore[assignment]
    for key, value in ours.items():
        if loose.get(key) == _SDK_DEFAULTS[key]:
            loose[key] = value
    # Twenty workflow task polls, nineteen of them on the worker's sticky queue (the
    # SDK: five, four). A stop hands the worker a burst of tasks for runs it holds;
    # four polls took them too slowly, those that waited past STICKY_TIMEOUT went
    # back to the shared queue and were replayed from the start. New runs still come
    # one poll at a time: more at once held 1,000 starting runs at 411 MB, not 170.
    if (
        loose.get("workflow_task_poller_behavior") == _SDK_POLLS
        and loose.get("max_concurrent_workflow_task_polls") is None
        and loose.get("nonsticky_to_sticky_poll_ratio") == _SDK_NONSTICKY_RATIO
    ):
        loose["workflow_task_poller_behavior"] = WORKFLOW_TASK_POLLS
        loose["nonsticky_to_sticky_poll_ratio"] = NONSTICKY_POLL_RATIO
    # A sleeping or streaming turn holds its slot (the SDK's default is 100).
    if loose.get("max_concurrent_activities") is None and loose.get("tuner") is None:
        loose["max_concurrent_activities"] = settings.max_concurrent_turns
