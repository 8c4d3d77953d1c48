"""Tool calls as activities: a Python function's, or an MCP server's.

Every call is an activity of its own (``agentrun.tool.<name>``, ``agentrun.mcp.<server>``)
that the workflow schedules with the tool's timeouts, retries and task queue. A call
heartbeats once it has run a beat (0.3 s), so a stop reaches it in a few tenths of a
second and a dead worker's call moves to another worker after the tool's heartbeat
timeout; a quick call sends no heartbeat and opens no progress stream.

What a call can end in: a result; an error the model can mend (arguments that do not
validate, ``ModelRetry``, ``ToolFailed``), returned as the result's ``error``; or an
exception, which Temporal retries per the tool's policy (the workflow gives the model
the last one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_ai import ModelRetry, RunContext
from pydantic_ai.exceptions import ToolFailed
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.usage import RunUsage
from pydantic_core import to_jsonable_python
from temporalio import activity
from temporalio.contrib.workflow_streams import TopicHandle, WorkflowStreamClient
from temporalio.service import RPCError

from agentrun._constants import EVENTS_TOPIC, HEARTBEAT_EVERY
from agentrun._models import AgentEvent, ToolCallInput, ToolOutcome
from agentrun._tools import AgentTool, MCPServer, ToolContext

if TYPE_CHECKING:
    # The MCP client (fastmcp) is imported by a worker that has MCP servers only: it
    # costs an idle worker about 45 MB and its start a second or more.
    from pydantic_ai.mcp import MCPToolset
    from pydantic_ai.toolsets import ToolsetTool

logger = logging.getLogger(__name__)

# A tool's progress events are flushed to the run's stream this often.
PROGRESS_BATCH = timedelta(milliseconds=200)
ActivityFunction = Callable[[ToolCallInput], Coroutine[Any, Any, ToolOutcome]]


def function_tool_activity(tool: AgentTool) -> ActivityFunction:
    """The activity that calls ``tool``, registered as ``tool.activity``."""
    toolset = tool.toolset()
    # A tool without a ``prepare`` function is the same in every call: listed by the
    # first call and kept (a listing copies the run context and builds the definition).
    listed: ToolsetTool[ToolContext] | None = None

    async def call_tool(call: ToolCallInput) -> ToolOutcome:
        nonlocal listed
        async with _heartbeating(), _progress_stream(call) as progress:
            ctx = _run_context(call, progress)
            prepared = listed or (await toolset.get_tools(ctx))[tool.name]
            if tool.tool.prepare is None:
                listed = prepared
            try:
                arguments = prepared.args_validator.validate_python(call.args)
            except ValidationError as err:
                return _mendable(f"Invalid arguments for {tool.name}: {_problems(err)}")
            try:
                result = await toolset.call_tool(tool.name, arguments, ctx, prepared)
            except (ModelRetry, ToolFailed) as err:
                return _mendable(str(err))
            return ToolOutcome(content=_content(result))

    return activity.defn(name=tool.activity)(call_tool)


class MCPTools:
    """The tools of a worker's MCP servers: their lists read once, calls as activities."""

    def __init__(self, servers: list[MCPServer]) -> None:
        """Keep the servers; nothing is started until a list or a call needs one."""
        self.servers = {server.name: server for server in servers}
        # One client per server and worker: a stdio server's process is started once
        # and kept for the worker's later lists and calls (its pipes close with it).
        self._clients = {server.name: _toolset(server) for server in servers}
        self._lists: dict[str, list[ToolDefinition]] = {}
        self._locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in self.servers}

    async def definitions(self, name: str) -> list[ToolDefinition]:
        """The tools of server ``name``, as agents see them (prefixed), cached per worker.

        Raises:
            Exception: the server cannot be reached or listed; the message says why.
        """
        cached = self._lists.get(name)
        if cached is not None:
            return cached
        server = self.servers[name]
        async with self._locks[name]:
            if name not in self._lists:
                listed = await self._clients[name].list_tools()
                self._lists[name] = [_definition(server, tool) for tool in listed]
        return self._lists[name]

    def activities(self) -> list[ActivityFunction]:
        """One activity per server, ``agentrun.mcp.<server>``, calling its tools."""
        return [self._call_activity(server) for server in self.servers.values()]

    def _call_activity(self, server: MCPServer) -> ActivityFunction:
        client = self._clients[server.name]

        async def call_mcp_tool(call: ToolCallInput) -> ToolOutcome:
            async with _heartbeating():
                try:
                    result = await client.direct_call_tool(call.tool, call.args)
                except (ModelRetry, ToolFailed) as err:
                    return _mendable(str(err))
            return ToolOutcome(content=_content(result))

        return activity.defn(name=server.activity)(call_mcp_tool)


def _toolset(server: MCPServer) -> MCPToolset[Any]:
    """A client of ``server``: each list or call opens a session on it."""
    from pydantic_ai.mcp import MCPToolset

    if server.url is not None:
        return MCPToolset(server.url, id=server.name, read_timeout=server.timeout.total_seconds())
    from fastmcp.client.transports import StdioTransport

    transport = StdioTransport(
        command=server.command or "",
        args=list(server.args),
        env=dict(server.env) if server.env is not None else None,
        cwd=server.cwd,
    )
    return MCPToolset(transport, id=server.name, read_timeout=server.timeout.total_seconds())


def _definition(server: MCPServer, tool: Any) -> ToolDefinition:
    return ToolDefinition(
        name=server.tool_name(tool.name),
        description=tool.description or "",
        parameters_json_schema=tool.input_schema or {"type": "object", "properties": {}},
    )


def _run_context(call: ToolCallInput, progress: Callable[[str], None]) -> RunContext[ToolContext]:
    """What the tool (and its ``prepare``) sees: the call's ``ToolContext`` as deps."""
    attempt = activity.info().attempt
    context = ToolContext(
        run_id=call.run_id,
        owner_thread_id=call.owner_thread_id,
        agent_id=call.agent_id,
        call_id=call.call_id,
        tool_name=call.tool,
        attempt=attempt,
        _progress=progress,
    )
    return RunContext(
        deps=context,
        model=None,  # type: ignore[arg-type]  # a call runs outside any model request
        usage=RunUsage(),
        tool_name=call.tool,
        tool_call_id=call.call_id,
        retry=attempt - 1,
    )


def _mendable(message: str) -> ToolOutcome:
    error = {"error": {"code": "tool_error", "message": message}}
    return ToolOutcome(content=json.dumps(error), error=message)


def _problems(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'arguments'}: {item['msg']}"
        for item in err.errors(include_url=False)
    )


def _content(result: Any) -> str:
    """A tool's result as the tool message's content: text as it is, anything else JSON."""
    value = getattr(result, "return_value", result)  # a ToolReturn carries its value
    if isinstance(value, str):
        return value
    return json.dumps(to_jsonable_python(value), ensure_ascii=False)


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while the tool runs: the only way a cancel or a dead worker is seen.

    The first heartbeat goes out after one beat, not at the start (where the SDK would
    send it at once): a call over by then sends none, each being a write on the server,
    and starts no task. A stop still reaches a slow tool with a heartbeat's response,
    a few tenths of a second; a silent call still times out after its heartbeat
    timeout, which the server counts from the call's start.
    """
    loop = asyncio.get_running_loop()
    beats: list[asyncio.Task[None]] = []
    first = loop.call_later(HEARTBEAT_EVERY, lambda: beats.append(loop.create_task(_beat())))
    try:
        yield
    finally:
        first.cancel()
        if beats:
            beats[0].cancel()
            await asyncio.gather(beats[0], return_exceptions=True)


async def _beat() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY)


@contextlib.asynccontextmanager
async def _progress_stream(call: ToolCallInput) -> AsyncIterator[Callable[[str], None]]:
    """A function that streams progress text as the run's ``tool_progress`` events."""
    progress = _Progress(call)
    try:
        yield progress.report
    finally:
        await progress.close()


class _Progress:
    """A call's progress lines, on the run's stream as ``tool_progress`` events.

    The stream opens with the first line: most calls report none, and those cost no
    stream client and no flushing task. The stream lives on the event loop; a sync
    tool runs in a thread, whose lines are handed to the loop.
    """

    def __init__(self, call: ToolCallInput) -> None:
        self._call = call
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._topic: TopicHandle[AgentEvent] | None = None
        self._entering: asyncio.Task[WorkflowStreamClient] | None = None
        self._closed = False
        # Read here: a thread the tool runs in need not carry the activity's context.
        self._info, self._client = activity.info(), activity.client()

    def report(self, text: str) -> None:
        """Stream ``text``, from the tool's coroutine or from its thread."""
        call = self._call
        event = AgentEvent(
            run_id=call.run_id, epoch=call.epoch, kind="tool_progress", text=f"{call.tool}: {text}"
        )
        if threading.get_ident() == self._loop_thread:
            self._publish(event)
        else:  # queued before the thread's result, so published before the call ends
            self._loop.call_soon_threadsafe(self._publish, event)

    def _publish(self, event: AgentEvent) -> None:
        if self._closed:  # a thread the tool left behind, after the call
            return
        if self._topic is None:
            self._topic = self._open()
        self._topic.publish(event)

    def _open(self) -> TopicHandle[AgentEvent]:
        # Pinned to the execution that scheduled the call, like a turn's events.
        info = self._info
        handle = self._client.get_workflow_handle(
            info.workflow_id or "", run_id=info.workflow_run_id
        )
        stream = WorkflowStreamClient(handle, client=self._client, batch_interval=PROGRESS_BATCH)
        # Entering starts the stream's background flushing, which needs the loop.
        self._entering = self._loop.create_task(stream.__aenter__())
        return stream.topic(EVENTS_TOPIC, type=AgentEvent)

    async def close(self) -> None:
        """Send what is left: progress is best effort, it never costs a call its result."""
        self._closed = True
        if self._entering is None:
            return
        stream = await self._entering
        try:
            await stream.__aexit__(None, None, None)
        except RPCError as err:
            call = self._call
            logger.warning("Progress of %s in %s not streamed: %s", call.tool, call.run_id, err)
