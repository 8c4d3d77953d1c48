"""Tools an agent calls, each call its own activity: Python functions and MCP servers.

A tool is defined once (``AgentTool``: name, argument schema, description, activity
options) and everything else derives from that definition: what a model is offered,
what the ``scripted`` agent may call, which activity the workflow schedules, and what
the docs list. Functions are described the pydantic-ai way: type hints give the
argument schema, the docstring the description.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydantic_ai import FunctionToolset, Tool
from pydantic_ai.tools import ToolDefinition

__all__ = [
    "DEFAULT_TOOL_HEARTBEAT",
    "DEFAULT_TOOL_RETRIES",
    "DEFAULT_TOOL_TIMEOUT",
    "DELEGATION_TOOLS",
    "DELEGATION_TOOL_NAMES",
    "AgentTool",
    "MCPServer",
    "ToolContext",
    "as_tool",
]

# What a model that may delegate is offered; the workflow executes these itself.
DELEGATION_TOOLS: list[ToolDefinition] = [
    ToolDefinition(
        name="agent_run",
        description="Run or resume a registry agent; can run in background",
        parameters_json_schema={
            "type": "object",
            "properties": {
                "agent_id": {"type": "string", "description": "agent to run (new run)"},
                "prompt": {"type": "string", "description": "what to ask it"},
                "run_id": {
                    "type": "string",
                    "description": "a run you started: check or resume it",
                },
                "fork_context": {"type": "boolean", "description": "give it your conversation"},
                "background": {"type": "boolean", "description": "return at once, running"},
            },
        },
    ),
    ToolDefinition(
        name="agent_stop",
        description="Stop a background agent run by run_id",
        parameters_json_schema={
            "type": "object",
            "properties": {"run_id": {"type": "string"}},
            "required": ["run_id"],
        },
    ),
    ToolDefinition(
        name="agent_output",
        description="Retrieve the latest output from a sub-agent run",
        parameters_json_schema={
            "type": "object",
            "properties": {"run_id": {"type": "string"}},
            "required": ["run_id"],
        },
    ),
]
DELEGATION_TOOL_NAMES = frozenset(tool.name for tool in DELEGATION_TOOLS)
DEFAULT_TOOL_TIMEOUT = timedelta(minutes=5)
DEFAULT_TOOL_RETRIES = 3
# A dead worker's call moves to another worker after this long; a stop reaches a
# running call with the next heartbeat (a few tenths of a second).
DEFAULT_TOOL_HEARTBEAT = timedelta(seconds=5)
FUNCTION_ACTIVITY_PREFIX = "agentrun.tool."
MCP_ACTIVITY_PREFIX = "agentrun.mcp."


@dataclasses.dataclass
class ToolContext:
    """What a tool that takes a context sees, as ``RunContext[ToolContext].deps``.

    Declare it as the first parameter: ``def search(ctx: RunContext[ToolContext], q: str)``.

    Attributes:
        run_id: The run whose agent called the tool.
        owner_thread_id: The run's owner thread.
        agent_id: The calling agent.
        call_id: The model's id for this call.
        tool_name: The tool's name.
        attempt: This call's attempt (1 first; a retry after a crash or an error is 2, ...).
    """

    run_id: str
    owner_thread_id: str
    agent_id: str
    call_id: str
    tool_name: str
    attempt: int = 1
    _progress: Callable[[str], None] = dataclasses.field(default=lambda text: None, repr=False)

    def progress(self, text: str) -> None:
        """Stream a line of progress as a ``tool_progress`` event of the run."""
        self._progress(text)


@dataclasses.dataclass(frozen=True)
class AgentTool:
    """A Python function agents can call; every call is an activity of its own.

    Build one with ``as_tool`` (or pass the function, or a ``pydantic_ai.Tool``, to
    ``AgentRunPlugin(tools=[...])``, which does).

    Attributes:
        tool: The pydantic-ai tool: the function, its name, schema and description.
        timeout: Start-to-close timeout of one attempt.
        retries: How often a call that raised is retried before the model gets the error.
        heartbeat_timeout: How long a silent call waits before another worker retries it.
        task_queue: The task queue of its activity, when a worker elsewhere must run it.
        approval: Whether each call waits for the run owner's decision before it runs.
        approval_timeout: How long a call waits for that decision before it is denied
            (``Approval timed out``); None: as long as it takes.
    """

    tool: Tool[Any]
    timeout: timedelta = DEFAULT_TOOL_TIMEOUT
    retries: int = DEFAULT_TOOL_RETRIES
    heartbeat_timeout: timedelta = DEFAULT_TOOL_HEARTBEAT
    task_queue: str | None = None
    approval: bool = False
    approval_timeout: timedelta | None = None

    @property
    def name(self) -> str:
        """The name models and scripts call it by."""
        return self.tool.name

    @property
    def definition(self) -> ToolDefinition:
        """What a model is offered: name, description and argument schema."""
        return self.tool.tool_def

    @property
    def activity(self) -> str:
        """The activity type of its calls (shown in the Web UI and ``describe``)."""
        return f"{FUNCTION_ACTIVITY_PREFIX}{self.name}"

    def toolset(self) -> FunctionToolset[ToolContext]:
        """A pydantic-ai toolset of this one tool, which validates and calls it."""
        return FunctionToolset([self.tool])


def as_tool(
    function: Callable[..., Any] | Tool[Any] | AgentTool,
    *,
    name: str | None = None,
    timeout: timedelta | float | None = None,
    retries: int | None = None,
    heartbeat_timeout: timedelta | float | None = None,
    task_queue: str | None = None,
    approval: bool | None = None,
    approval_timeout: timedelta | float | None = None,
) -> AgentTool:
    """An ``AgentTool`` from a function, a ``pydantic_ai.Tool`` or an ``AgentTool``.

    Args:
        function: The tool. A function's type hints give its argument schema and its
            docstring the description; a first parameter ``RunContext[ToolContext]``
            receives the call's context.
        name: The name models call it by (default: the function's).
        timeout: Seconds (or a timedelta) one attempt may take (default 5 minutes).
        retries: Retries of a call that raised (default 3).
        heartbeat_timeout: Seconds before a silent call is retried elsewhere (default 5).
        task_queue: The task queue of its activity (default: the run's).
        approval: Each call waits for the run owner's decision (default False).
        approval_timeout: Seconds (or a timedelta) a call waits for it before it is
            denied (default: no limit).

    Raises:
        ValueError: a value is out of range; the message names it.
    """
    base = function if isinstance(function, AgentTool) else None
    if isinstance(function, AgentTool):
        tool = function.tool
    elif isinstance(function, Tool):
        tool = function
    else:
        tool = Tool(function)
    if name is not None and name != tool.name:
        tool = Tool(tool.function, name=name, takes_ctx=tool.takes_ctx)
    built = AgentTool(
        tool=tool,
        timeout=_duration(timeout, base.timeout if base else DEFAULT_TOOL_TIMEOUT, "timeout"),
        retries=retries if retries is not None else base.retries if base else DEFAULT_TOOL_RETRIES,
        heartbeat_timeout=_duration(
            heartbeat_timeout,
            base.heartbeat_timeout if base else DEFAULT_TOOL_HEARTBEAT,
            "heartbeat_timeout",
        ),
        task_queue=task_queue or (base.task_queue if base else None),
        approval=approval if approval is not None else bool(base and base.approval),
        approval_timeout=_optional_duration(
            approval_timeout, base.approval_timeout if base else None, "approval_timeout"
        ),
    )
    if not 0 <= built.retries <= 100:
        raise ValueError(f"tool {built.name!r}: retries={built.retries}: expected 0 to 100")
    return built


def _optional_duration(
    value: timedelta | float | None, default: timedelta | None, what: str
) -> timedelta | None:
    if value is None:
        return default
    return _duration(value, timedelta(), what)


def _duration(value: timedelta | float | None, default: timedelta, what: str) -> timedelta:
    if value is None:
        return default
    duration = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if duration <= timedelta() or duration > timedelta(days=7):
        raise ValueError(f"{what}={value!r}: expected a duration from 0 to 7 days")
    return duration


@dataclasses.dataclass(frozen=True)
class MCPServer:
    """An MCP server whose tools agents can call, each call an activity.

    Give ``command`` (with ``args``, ``env``, ``cwd``: a stdio server the worker starts)
    or ``url`` (a streamable HTTP server). Its tool list is read in the worker and kept
    there; its tools keep the server's names unless ``prefix`` is set
    (``prefix_name``).

    Attributes:
        name: The server's name in the registry (agents list it in ``mcp_servers``).
        command: The program of a stdio server.
        args: Its arguments.
        env: Its environment (default: the worker's).
        cwd: Its working directory (default: the worker's).
        url: The URL of a streamable HTTP server.
        prefix: Prepended to its tool names as ``prefix_name``.
        timeout: Start-to-close timeout of one call.
        retries: Retries of a call that failed (a connection lost, the server down).
        heartbeat_timeout: How long a silent call waits before another worker retries it.
        task_queue: The task queue of its calls' activities.
    """

    name: str
    command: str | None = None
    args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    url: str | None = None
    prefix: str | None = None
    timeout: timedelta = timedelta(minutes=1)
    retries: int = DEFAULT_TOOL_RETRIES
    heartbeat_timeout: timedelta = DEFAULT_TOOL_HEARTBEAT
    task_queue: str | None = None

    def __post_init__(self) -> None:
        """Exactly one of ``command`` and ``url``."""
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: give exactly one of command and url")

    @property
    def activity(self) -> str:
        """The activity type of calls to its tools."""
        return f"{MCP_ACTIVITY_PREFIX}{self.name}"

    def tool_name(self, server_name: str) -> str:
        """The name agents call one of its tools by."""
        return f"{self.prefix}_{server_name}" if self.prefix else server_name

    def server_name(self, tool_name: str) -> str:
        """The server's own name of a tool agents call ``tool_name``."""
        return tool_name.removeprefix(f"{self.prefix}_") if self.prefix else tool_name
