"""Agents: the runtime interface turns drive, the registry, and the built-in agents."""

from agentrun._agents._context import children_reminder, delegation_instructions
from agentrun._agents._registry import AgentRegistry, AgentSpec
from agentrun._agents._runtime import AgentRuntime, RetryableStepError, Step, StepContext
from agentrun._agents._scripted import ScriptedAgent

__all__ = [
    "AgentRegistry",
    "AgentRuntime",
    "AgentSpec",
    "RetryableStepError",
    "ScriptedAgent",
    "Step",
    "StepContext",
    "children_reminder",
    "default_registry",
    "delegation_instructions",
]


def default_registry() -> AgentRegistry:
    """The registry every worker has: the built-in ``scripted`` agent.

    ``scripted`` may delegate to itself: its scripts are finite, and the depth
    limit still bounds a tree of them. It may call every tool the worker has.
    """
    scripted = AgentSpec(
        id="scripted",
        runtime=ScriptedAgent(),
        description="deterministic agent that follows a JSON script",
        allow_self=True,
        tools=None,
        mcp_servers=None,
    )
    return AgentRegistry([scripted])
