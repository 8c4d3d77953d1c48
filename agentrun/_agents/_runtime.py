"""The interface a turn activity drives: an agent advances its thread one step at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import JsonValue
from pydantic_ai.tools import ToolDefinition

from agentrun._models import Message, ToolCall
from agentrun._usage import Usage


@dataclass
class StepContext:
    """What an agent sees when it takes a step.

    Attributes:
        run_id: The run the agent is executing.
        agent_id: The agent's id in the registry.
        epoch: The run's epoch.
        turn: The turn number within the epoch.
        thread: The whole thread so far, including what this turn produced.
        state: The agent's own checkpointed state (JSON), as the last step left it.
        instructions: What the agent is told about delegation (agents, reminder).
        emit_text: Streams a piece of assistant text as it is produced.
        tools: The tools the agent may call (its own, its MCP servers', and the
            delegation tools when it may delegate), as a model is offered them.
    """

    run_id: str
    agent_id: str
    epoch: int
    turn: int
    thread: list[Message]
    state: dict[str, JsonValue]
    instructions: str
    emit_text: Callable[[str], None]
    tools: list[ToolDefinition] = field(default_factory=list)


@dataclass
class Step:
    """What one step produced.

    A step ends the turn when it calls tools (the workflow executes them), when it
    reports an error, or when the agent is finished. Otherwise the activity
    checkpoints ``state`` and asks for the next step.
    """

    messages: list[Message] = field(default_factory=list)
    state: dict[str, JsonValue] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finished: bool = False
    error: str | None = None
    usage: Usage | None = None  # a model response's requests, tokens and cost


class RetryableStepError(Exception):
    """A step failed for a reason that may pass (rate limit, outage, lost connection).

    Temporal retries the turn, with backoff, from its last checkpoint. Any other
    exception from a step ends the run ``failed`` with its message: it would only fail
    again.
    """


class AgentRuntime(Protocol):
    """An agent implementation: scripted, or backed by a model.

    ``replays_exactly`` says whether a retried step produces the very same events
    (a deterministic agent): then a retry skips the events its dead attempt already
    published. A model's retried step says something new, so its events follow the
    published ones instead.
    """

    replays_exactly: bool

    async def step(self, ctx: StepContext) -> Step:
        """Take the next step on ``ctx.thread``; must be resumable from ``ctx.state``."""
        ...
