"""The turn activity: runs an agent step by step, streaming events and checkpointing.

A turn ends when the agent finishes, fails or calls delegation tools (the workflow
executes those). Events reach the run's stream in batches (``STREAM_BATCH_INTERVAL``),
not one signal per step: a signal is four history events. A checkpoint is heartbeated
only once the events of its steps are on the stream, so a retry on another worker
resumes from the last checkpoint that reached the server and skips the events its
dead attempt had already published; nothing between is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import ValidationError
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.contrib.workflow_streams import TopicHandle, WorkflowStreamClient
from temporalio.service import RPCError

from agentrun._agents import (
    AgentRegistry,
    AgentSpec,
    RetryableStepError,
    Step,
    StepContext,
    delegation_instructions,
)
from agentrun._constants import (
    EVENTS_TOPIC,
    MAX_RUNS_PER_TREE,
    QUERY_THREAD,
    STREAM_BATCH_INTERVAL,
    STREAM_UNWATCHED_BATCH_INTERVAL,
    TURN_ACTIVITY,
)
from agentrun._models import (
    AgentEvent,
    AgentPolicy,
    Message,
    ToolCall,
    TurnCheckpoint,
    TurnInput,
    TurnResult,
)
from agentrun._observability import count_tokens
from agentrun._usage import BudgetScope, Usage
from agentrun.activities._beat import Batching, Progress, beating
from agentrun.activities._owners import OwnerSlots
from agentrun.activities._threads import ThreadCache
from agentrun.activities._toolbox import Toolbox, toolbox
from agentrun.activities.budgets import spent_budget
from agentrun.activities.tools import MCPTools, function_tool_activity

logger = logging.getLogger(__name__)

# Attempts of a turn whose agent's MCP server cannot be listed, before the run fails.
MCP_LIST_ATTEMPTS = 5
# The longest a turn's steps keep the worker's event loop to themselves.
YIELD_EVERY = 0.02


class _TurnEvents:
    """Numbers a turn's events and drops the ones a previous attempt published.

    Events wait in ``progress.unsent`` for the turn's beat to send them; the ones still
    there when the turn ends go back in its result, for the workflow to publish.
    """

    def __init__(self, progress: Progress, turn: TurnInput, start: int) -> None:
        self._progress = progress
        self._turn = turn
        self.seq = start
        self.published_up_to = -1

    def publish(self, kind: str, **fields: Any) -> None:
        event = AgentEvent.model_validate(
            {
                "run_id": self._turn.run_id,
                "epoch": self._turn.epoch,
                "turn": self._turn.turn,
                "seq": self.seq,
                "kind": kind,
                **fields,
            }
        )
        if event.seq > self.published_up_to:
            self._progress.unsent.append(event)
            self._progress.wake.set()
        self.seq += 1

    def message(self, message: Message, usage: Usage | None = None) -> None:
        self.publish("message", message=message, usage=usage)
        for call in message.tool_calls:
            self.publish("tool_call", tool_call=call)


class TurnActivities:
    """The turn activity, bound to a worker's agent registry."""

    def __init__(
        self,
        registry: AgentRegistry,
        batch: timedelta = STREAM_BATCH_INTERVAL,
        owner_cap: int = 50,
        unwatched_batch: timedelta = STREAM_UNWATCHED_BATCH_INTERVAL,
        max_runs_per_tree: int = MAX_RUNS_PER_TREE,
    ) -> None:
        """Keep the registry the turns resolve agent ids in, the stream's batching (while
        someone follows a run, and while nobody does), how many turns of one owner
        thread may run here at once, and how many runs one tree may have."""
        self._registry = registry
        self._max_runs_per_tree = max_runs_per_tree
        self._batching = Batching(followed=batch, unwatched=max(batch, unwatched_batch))
        self._owners = OwnerSlots(owner_cap)
        self._threads = ThreadCache()
        self.mcp = MCPTools(list(registry.mcp_servers.values()))

    @activity.defn(name=TURN_ACTIVITY)
    async def run_turn(self, turn: TurnInput) -> TurnResult:
        """Run one turn of ``turn.agent_id`` on ``turn.messages``, in one of its owner's
        slots (a turn over the owner's share is retried later)."""
        with self._owners.slot(turn.owner_thread_id):
            return await self._turn(turn)

    async def _turn(self, turn: TurnInput) -> TurnResult:
        spec = self._registry.get(turn.agent_id)
        if spec is None:
            return TurnResult(error=f"Unknown or unavailable agent_id: {turn.agent_id}")
        info = activity.info()
        client = activity.client()
        # Pinned to this execution: a late turn of a stopped epoch cannot publish to
        # the run's next epoch.
        handle = client.get_workflow_handle(info.workflow_id or "", run_id=info.workflow_run_id)
        # Flushed by the turn's beat (activities/_beat.py), not by the client's own timer.
        stream = WorkflowStreamClient(handle, client=client)
        progress = Progress(
            _restored_checkpoint() or TurnCheckpoint(stream_offset=turn.stream_offset)
        )
        # Heartbeat all along, from the first beat: the stream query a retry makes can
        # wait on a workflow task, and a silent turn would time out.
        topic = stream.topic(EVENTS_TOPIC, type=AgentEvent)
        try:
            return await self._beating_turn(spec, turn, progress, stream, topic, handle)
        except RetryableStepError as err:
            await _tell_retrying(stream, topic, turn, err)
            raise

    async def _beating_turn(
        self,
        spec: AgentSpec,
        turn: TurnInput,
        progress: Progress,
        stream: WorkflowStreamClient,
        topic: TopicHandle[AgentEvent],
        handle: WorkflowHandle[Any, Any],
    ) -> TurnResult:
        info = activity.info()
        async with beating(progress, stream, topic, handle, turn, self._batching):
            if turn.thread_by_query:
                # A long thread is not carried in the turn's input: the worker's copy
                # plus the messages since the last turn, or a read of the whole thread.
                async def read() -> list[Message]:
                    whole: list[Message] = await handle.query(
                        QUERY_THREAD, result_type=list[Message]
                    )
                    return whole

                thread = await self._threads.thread(info.workflow_run_id or "", turn, read)
                turn = turn.model_copy(update={"messages": thread})
            events = _TurnEvents(progress, turn, progress.checkpoint.events_published)
            if info.attempt > 1:
                events.published_up_to = await _published_up_to(
                    stream, turn, progress.checkpoint.stream_offset
                )
                if not spec.runtime.replays_exactly:
                    events.seq = max(events.seq, events.published_up_to + 1)
            result = await self._steps(spec, turn, progress, events)
        # The last events travel with the result: no signal, no workflow task of their own.
        return result.model_copy(
            update={"events": progress.unsent, "steps": progress.checkpoint.steps}
        )

    async def _steps(
        self,
        spec: AgentSpec,
        turn: TurnInput,
        progress: Progress,
        events: _TurnEvents,
    ) -> TurnResult:
        policy = self._policy(spec)
        box = await self._toolbox(spec, policy)
        if isinstance(box, str):
            return TurnResult(error=box, policy=policy)
        if not progress.checkpoint.steps:  # before the turn's model request
            stop = await spent_budget(turn.owner_thread_id, _scopes(turn, spec))
            if stop is not None:
                return TurnResult(
                    agent_state=dict(turn.agent_state), policy=policy, budget_exceeded=stop
                )
        asked = _unanswered(turn.messages, box) if not progress.checkpoint.steps else []
        if asked:  # a stop cut them off while they awaited a decision: ask again
            return TurnResult(
                agent_state=dict(turn.agent_state),
                tool_calls=asked,
                policy=policy,
                routes=[box.route(call) for call in asked],
            )
        # The same for every step of the turn: its policy, children and registry hold.
        instructions = delegation_instructions(
            policy.visible_agents, self._registry.describe, turn.children
        )
        yielded = _Yielding()
        try:
            while not progress.checkpoint.ended:
                step = await self._safe_step(
                    spec, turn, progress.checkpoint, events, _Tools(box, instructions)
                )
                for message in step.messages:
                    events.message(message, step.usage)
                count_tokens(spec.id, step.usage)
                progress.checkpoint = _advance(progress.checkpoint, step, events.seq)
                await yielded.now_and_then()
        except asyncio.CancelledError:
            if not _stop_requested():
                raise
            # A stop: hand back what the turn produced so the thread keeps it.
            return TurnResult(
                messages=progress.checkpoint.messages,
                agent_state=progress.checkpoint.agent_state,
                stopped=True,
                policy=policy,
                usage=progress.checkpoint.usage,
            )
        return TurnResult(
            messages=progress.checkpoint.messages,
            agent_state=progress.checkpoint.agent_state,
            tool_calls=progress.checkpoint.tool_calls,
            error=progress.checkpoint.error,
            policy=policy,
            routes=[box.route(call) for call in progress.checkpoint.tool_calls],
            usage=progress.checkpoint.usage,
        )

    def _policy(self, spec: AgentSpec) -> AgentPolicy:
        policy = self._registry.policy(spec)
        return policy.model_copy(update={"max_runs_per_tree": self._max_runs_per_tree})

    async def _toolbox(self, spec: AgentSpec, policy: AgentPolicy) -> Toolbox | str:
        """The agent's tools; an MCP server that cannot be listed is retried a few times,
        then the run fails saying which server and why (no turn retries forever)."""
        try:
            return await toolbox(self._registry, spec, self.mcp, bool(policy.visible_agents))
        except Exception as err:
            message = f"Cannot list the tools of an MCP server of '{spec.id}': {err}"
            if activity.info().attempt < MCP_LIST_ATTEMPTS:
                # The message says it all: a chained client error can make the failure
                # too big for Temporal to keep (agentrun/_agents/_model.py).
                raise RetryableStepError(message) from None
            return message

    def tool_activities(self) -> list[Callable[..., Any]]:
        """An activity per function tool and per MCP server of the registry."""
        functions = [function_tool_activity(t) for t in self._registry.tools.values()]
        return [*functions, *self.mcp.activities()]

    async def _safe_step(
        self,
        spec: AgentSpec,
        turn: TurnInput,
        checkpoint: TurnCheckpoint,
        events: _TurnEvents,
        tools: _Tools,
    ) -> Step:
        """The agent's next step; an error that retrying cannot mend becomes the run's."""
        try:
            return await spec.runtime.step(_context(turn, checkpoint, events, tools))
        except RetryableStepError:
            raise
        except Exception as err:
            logger.exception("Agent %r failed in run %s", spec.id, turn.run_id)
            message = f"Agent '{spec.id}' failed: {type(err).__name__}: {err}"
            return Step(state=checkpoint.agent_state, error=message)


class _Tools(NamedTuple):
    """What an agent's every step of a turn is given besides its thread."""

    box: Toolbox
    instructions: str


def _context(
    turn: TurnInput, checkpoint: TurnCheckpoint, events: _TurnEvents, tools: _Tools
) -> StepContext:
    return StepContext(
        run_id=turn.run_id,
        agent_id=turn.agent_id,
        epoch=turn.epoch,
        turn=turn.turn,
        thread=[*turn.messages, *checkpoint.messages],
        state=checkpoint.agent_state if checkpoint.steps else dict(turn.agent_state),
        instructions=tools.instructions,
        emit_text=lambda text: events.publish("text_delta", text=text),
        tools=tools.box.definitions,
    )


class _Yielding:
    """Hands the event loop back between steps that awaited nothing (scripted ``say``s),
    so heartbeats, other turns, queries and a SIGTERM are not held back. Not after every
    step: a short turn that never yields sends its events with its result, no signal."""

    def __init__(self) -> None:
        self._since = time.monotonic()

    async def now_and_then(self) -> None:
        if time.monotonic() - self._since >= YIELD_EVERY:
            await asyncio.sleep(0)
            self._since = time.monotonic()


async def _tell_retrying(
    stream: WorkflowStreamClient,
    topic: TopicHandle[AgentEvent],
    turn: TurnInput,
    err: RetryableStepError,
) -> None:
    """A ``turn_retrying`` event on the run's stream: the provider's message and the
    attempt to come (Temporal retries the turn with backoff). Best effort."""
    attempt = activity.info().attempt + 1
    text = f"attempt {attempt} next (Temporal retries the turn): {err}"
    event = AgentEvent(
        run_id=turn.run_id, epoch=turn.epoch, turn=turn.turn, kind="turn_retrying", text=text
    )
    topic.publish(event)
    try:
        await stream.flush()
    except RPCError as failed:
        logger.warning("Could not tell run %s of its retry: %s", turn.run_id, failed)


def _scopes(turn: TurnInput, spec: AgentSpec) -> list[BudgetScope]:
    """The budgets the turn is under: its run's, with its agent's default when the run
    has no budget of its own yet (its first turn)."""
    if spec.budget is None or any(s.run_id == turn.run_id for s in turn.budgets):
        return turn.budgets
    return [*turn.budgets, BudgetScope(run_id=turn.run_id, budget=spec.budget)]


def _unanswered(thread: list[Message], box: Toolbox) -> list[ToolCall]:
    """The calls of the thread's last tool-calling message that need a decision and
    have no result: a run stopped while they waited, and is now resumed."""
    answered: set[str] = set()
    for message in reversed(thread):
        if message.role == "tool" and message.tool_call_id:
            answered.add(message.tool_call_id)
        if message.role == "assistant":
            return [
                call
                for call in message.tool_calls
                if call.id not in answered and box.route(call).approval
            ]  # an answer with no calls: the agent went on
    return []


def _advance(checkpoint: TurnCheckpoint, step: Step, events_published: int) -> TurnCheckpoint:
    return checkpoint.model_copy(
        update={
            "steps": checkpoint.steps + 1,
            "messages": [*checkpoint.messages, *step.messages],
            "agent_state": step.state,
            "events_published": events_published,
            "ended": step.finished or step.error is not None or bool(step.tool_calls),
            "tool_calls": step.tool_calls,
            "error": step.error,
            "usage": checkpoint.usage + step.usage if step.usage else checkpoint.usage,
        }
    )


def _stop_requested() -> bool:
    """Whether the cancel came from a stop (not a worker shutdown or timeout)."""
    details = activity.cancellation_details()
    return details is not None and details.cancel_requested


def _restored_checkpoint() -> TurnCheckpoint | None:
    """The last checkpoint a previous attempt heartbeated, validated; None if none."""
    details = activity.info().heartbeat_details
    if not details:
        return None
    try:
        return TurnCheckpoint.model_validate(details[0])
    except ValidationError as err:
        # A checkpoint written by an incompatible version: start the turn over.
        logger.warning("Ignoring unreadable turn checkpoint: %s", err)
        return None


async def _published_up_to(stream: WorkflowStreamClient, turn: TurnInput, offset: int) -> int:
    """The highest ``seq`` of this turn's events already on the stream."""
    end = await stream.get_offset()
    highest = -1
    if end <= offset:
        return highest
    async for item in stream.subscribe(EVENTS_TOPIC, from_offset=offset, result_type=AgentEvent):
        if (item.data.epoch, item.data.turn) == (turn.epoch, turn.turn):
            highest = max(highest, item.data.seq)
        if item.offset >= end - 1:
            break
    return highest
