"""The tools one agent has in one turn, and how each call it makes is executed.

The turn's worker resolves every call once, into a ``ToolRoute`` the workflow follows:
a delegation tool the workflow runs itself, a tool whose activity calls it (with the
tool's timeouts, retries and task queue), or a result known already (an unknown tool).
Resolved here, from the registry this worker has, the workflow needs none of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import JsonValue
from pydantic_ai.tools import ToolDefinition

from agentrun._agents import AgentRegistry, AgentSpec
from agentrun._delegation import error_result
from agentrun._models import ToolCall, ToolRoute
from agentrun._tools import DELEGATION_TOOLS, AgentTool, MCPServer
from agentrun.activities.tools import MCPTools

SUMMARY_CHARS = 200


@dataclass
class Toolbox:
    """What one agent is offered, and the route of each tool it may call."""

    agent_id: str
    definitions: list[ToolDefinition] = field(default_factory=list)
    functions: dict[str, AgentTool] = field(default_factory=dict)
    mcp: dict[str, MCPServer] = field(default_factory=dict)  # by the tool's name
    delegation: frozenset[str] = frozenset()
    approval: frozenset[str] = frozenset()  # tools every call of which needs a decision

    def route(self, call: ToolCall) -> ToolRoute:
        """How the workflow executes ``call``."""
        approval = call.name in self.approval
        if call.name in self.delegation:
            return ToolRoute(call_id=call.id, kind="delegation", approval=approval)
        tool = self.functions.get(call.name)
        if tool is not None:
            route = self._activity(call, tool, tool.name)
            timeout = tool.approval_timeout.total_seconds() if tool.approval_timeout else None
            update = {"approval": approval or tool.approval, "approval_timeout": timeout}
            return route.model_copy(update=update)
        server = self.mcp.get(call.name)
        if server is not None:
            route = self._activity(call, server, server.server_name(call.name))
            return route.model_copy(update={"approval": approval})
        return ToolRoute(call_id=call.id, kind="result", content=self.unknown(call.name))

    def _activity(self, call: ToolCall, options: AgentTool | MCPServer, name: str) -> ToolRoute:
        """A call whose activity calls ``name``, with the tool's (or server's) options."""
        return ToolRoute(
            call_id=call.id,
            kind="activity",
            activity=options.activity,
            tool=name,
            summary=_summary(self.agent_id, call),
            start_to_close=options.timeout.total_seconds(),
            heartbeat=options.heartbeat_timeout.total_seconds(),
            attempts=options.retries + 1,
            task_queue=options.task_queue,
        )

    def unknown(self, name: str) -> str:
        """The result of a call to a tool this agent does not have."""
        available = ", ".join(sorted(d.name for d in self.definitions)) or "none"
        message = f"Unknown tool: {name}; available: {available}"
        return json.dumps(error_result("unknown_tool", message))


async def toolbox(
    registry: AgentRegistry, spec: AgentSpec, mcp: MCPTools, may_delegate: bool
) -> Toolbox:
    """The tools ``spec`` has: its own, its MCP servers', and delegation when it may.

    Raises:
        Exception: an MCP server of the agent cannot be listed (the turn retries).
    """
    box = Toolbox(agent_id=spec.id, approval=frozenset(spec.approval_tools))
    excluded = set(spec.excluded_tools)
    delegation = [tool for tool in DELEGATION_TOOLS if tool.name not in excluded]
    # A call to a delegation tool is always the workflow's, which answers one the agent
    # may not make with the delegation rules' own error; a model is offered them only
    # when it may delegate to someone.
    box.delegation = frozenset(tool.name for tool in delegation)
    if may_delegate:
        box.definitions += delegation
    for tool in registry.tools_of(spec):
        box.functions[tool.name] = tool
        box.definitions.append(tool.definition)
    for server in registry.servers_of(spec):
        for definition in await mcp.definitions(server.name):
            if definition.name in excluded or definition.name in box.functions:
                continue
            box.mcp[definition.name] = server
            box.definitions.append(definition)
    return box


def _summary(agent_id: str, call: ToolCall) -> str:
    """``researcher: search_web(query='…')``, as the Web UI shows the activity."""
    arguments = ", ".join(f"{key}={_short(value)}" for key, value in call.args.items())
    text = f"{agent_id}: {call.name}({arguments})"
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 2] + "…)"


def _short(value: JsonValue) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:59] + "…"
