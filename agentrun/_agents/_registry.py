"""The agents a worker can run, by agent id, with their delegation policies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from agentrun._agents._runtime import AgentRuntime
from agentrun._constants import MAX_DEPTH
from agentrun._models import AgentPolicy
from agentrun._tools import DELEGATION_TOOL_NAMES, AgentTool, MCPServer
from agentrun._usage import Budget

_T = TypeVar("_T")


@dataclass(frozen=True)
class AgentSpec:
    """One registry entry.

    Attributes:
        id: The agent id runs name.
        runtime: What executes the agent.
        description: One line shown to agents that may delegate to it.
        allowed_agents: When set, the only agents it may delegate to (empty: none).
        excluded_agents: Agents it may never delegate to.
        max_depth: The deepest level (root = 0) a run it starts may have.
        allow_self: Whether it may delegate to its own agent id. Only for agents
            whose recursion is bounded by construction, like ``scripted``.
        tools: The tools it may call, by name; None: every tool the worker has.
        mcp_servers: The MCP servers whose tools it may call; None: every one.
        excluded_tools: Tools it never gets, delegation tools included.
        approval_tools: Tools whose every call by it waits for the owner's decision,
            delegation tools included (``agent_run``), on top of tools that always do.
        budget: The budget of a run of it that is started without one: over the run
            and everything it delegates (``agentrun.Budget``).
    """

    id: str
    runtime: AgentRuntime
    description: str = ""
    allowed_agents: tuple[str, ...] | None = None
    excluded_agents: tuple[str, ...] = ()
    max_depth: int = MAX_DEPTH
    allow_self: bool = False
    tools: tuple[str, ...] | None = ()
    mcp_servers: tuple[str, ...] | None = ()
    excluded_tools: tuple[str, ...] = ()
    approval_tools: tuple[str, ...] = ()
    budget: Budget | None = None


class AgentRegistry:
    """Agent specs by id, and the tools and MCP servers they call."""

    def __init__(
        self,
        specs: Iterable[AgentSpec],
        tools: Iterable[AgentTool] = (),
        mcp_servers: Iterable[MCPServer] = (),
    ) -> None:
        """Index everything by name.

        Raises:
            ValueError: a duplicate name, a tool named like a delegation tool, or an
                agent that lists a tool or server the registry does not have.
        """
        self._specs: dict[str, AgentSpec] = {}
        for spec in specs:
            if spec.id in self._specs:
                raise ValueError(f"Agent id {spec.id!r} is registered twice")
            self._specs[spec.id] = spec
        self.tools = _by_name((tool.name, tool) for tool in tools)
        self.mcp_servers = _by_name((server.name, server) for server in mcp_servers)
        clash = sorted(set(self.tools) & DELEGATION_TOOL_NAMES)
        if clash:
            raise ValueError(f"Tool {clash[0]!r} clashes with the delegation tool of that name")
        for spec in self._specs.values():
            self._check_references(spec)

    def _check_references(self, spec: AgentSpec) -> None:
        for key, known in (("tools", self.tools), ("mcp_servers", self.mcp_servers)):
            unknown = sorted(set(getattr(spec, key) or ()) - set(known))
            if unknown:
                raise ValueError(f"Agent {spec.id!r} lists unknown {key} {unknown}")

    def with_tools(
        self, tools: Iterable[AgentTool], mcp_servers: Iterable[MCPServer]
    ) -> AgentRegistry:
        """This registry with more tools and MCP servers."""
        specs = [spec for spec in self._specs.values()]
        return AgentRegistry(
            specs,
            [*self.tools.values(), *tools],
            [*self.mcp_servers.values(), *mcp_servers],
        )

    def tools_of(self, spec: AgentSpec) -> list[AgentTool]:
        """The function tools ``spec`` may call."""
        names = self.tools if spec.tools is None else spec.tools
        return [self.tools[n] for n in names if n not in spec.excluded_tools]

    def servers_of(self, spec: AgentSpec) -> list[MCPServer]:
        """The MCP servers whose tools ``spec`` may call."""
        names = self.mcp_servers if spec.mcp_servers is None else spec.mcp_servers
        return [self.mcp_servers[n] for n in names]

    def get(self, agent_id: str) -> AgentSpec | None:
        """The spec for ``agent_id``, or None."""
        return self._specs.get(agent_id)

    def ids(self) -> list[str]:
        """All agent ids, sorted."""
        return sorted(self._specs)

    def specs(self) -> list[AgentSpec]:
        """All agent specs, sorted by id."""
        return [self._specs[agent_id] for agent_id in self.ids()]

    def policy(self, spec: AgentSpec) -> AgentPolicy:
        """The agents ``spec`` may delegate to (docs/delegation.md §4), and its depth limit."""
        visible = [
            other
            for other in self.ids()
            if (other != spec.id or spec.allow_self)
            and (spec.allowed_agents is None or other in spec.allowed_agents)
            and other not in spec.excluded_agents
        ]
        return AgentPolicy(visible_agents=visible, max_depth=spec.max_depth, budget=spec.budget)

    def describe(self, agent_id: str) -> str:
        """The one-line description of ``agent_id`` (empty when unknown)."""
        spec = self._specs.get(agent_id)
        return spec.description if spec else ""


def _by_name(named: Iterable[tuple[str, _T]]) -> dict[str, _T]:
    found: dict[str, _T] = {}
    for name, value in named:
        if name in found:
            raise ValueError(f"{name!r} is registered twice")
        found[name] = value
    return found
