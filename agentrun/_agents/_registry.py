"""The agents a worker can run, by agent id, with their delegation policies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agentrun._agents._runtime import AgentRuntime
from agentrun._constants import MAX_DEPTH
from agentrun._models import AgentPolicy


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
    """

    id: str
    runtime: AgentRuntime
    description: str = ""
    allowed_agents: tuple[str, ...] | None = None
    excluded_agents: tuple[str, ...] = ()
    max_depth: int = MAX_DEPTH
    allow_self: bool = False


class AgentRegistry:
    """Agent specs by id."""

    def __init__(self, specs: Iterable[AgentSpec]) -> None:
        """Index ``specs`` by id; a duplicate id is a ValueError naming it."""
        self._specs: dict[str, AgentSpec] = {}
        for spec in specs:
            if spec.id in self._specs:
                raise ValueError(f"Agent id {spec.id!r} is registered twice")
            self._specs[spec.id] = spec

    def get(self, agent_id: str) -> AgentSpec | None:
        """The spec for ``agent_id``, or None."""
        return self._specs.get(agent_id)

    def ids(self) -> list[str]:
        """All agent ids, sorted."""
        return sorted(self._specs)

    def policy(self, spec: AgentSpec) -> AgentPolicy:
        """The agents ``spec`` may delegate to (docs/delegation.md §4), and its depth limit."""
        visible = [
            other
            for other in self.ids()
            if (other != spec.id or spec.allow_self)
            and (spec.allowed_agents is None or other in spec.allowed_agents)
            and other not in spec.excluded_agents
        ]
        return AgentPolicy(visible_agents=visible, max_depth=spec.max_depth)

    def describe(self, agent_id: str) -> str:
        """The one-line description of ``agent_id`` (empty when unknown)."""
        spec = self._specs.get(agent_id)
        return spec.description if spec else ""
