"""A long thread reaches every turn whole, though turns are sent only what is new."""

from __future__ import annotations

import hashlib
import json
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from agentrun import (
    AgentRegistry,
    AgentRunClient,
    AgentRunPlugin,
    AgentSpec,
    Message,
    ScriptedAgent,
    Step,
    StepContext,
)
from tests.helpers import history_events, script, tool


def fingerprint(thread: list[Message]) -> str:
    """How many messages, and a digest of what they say."""
    text = json.dumps([(m.role, m.content, m.tool_call_id) for m in thread])
    return f"{len(thread)}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class CountingAgent(ScriptedAgent):
    """The scripted agent, whose ``say: "{seen}"`` tells the thread it was given."""

    async def step(self, ctx: StepContext) -> Step:
        seen = fingerprint(ctx.thread)
        step = await super().step(ctx)
        for message in step.messages:
            message.content = message.content.replace("{seen}", seen)
        return step


async def test_every_turn_of_a_long_thread_sees_it_whole_across_two_workers(
    temporal: Client, owner: str
):
    queue = f"test-{uuid.uuid4().hex[:10]}"
    registry = AgentRegistry([AgentSpec(id="counter", runtime=CountingAgent())])
    turns = 40
    big = "x" * 20_000  # over the inline limit from the first turn on
    steps = [{"say": big}] + [{"say": "{seen}"}, tool("agent_output", run_id="none")] * turns
    # Two workers on one queue (a client each): turns land on either, with or without a
    # copy of the thread.
    first = await Client.connect(
        temporal.service_client.config.target_host, plugins=[AgentRunPlugin(agents=registry)]
    )
    other = await Client.connect(
        temporal.service_client.config.target_host, plugins=[AgentRunPlugin(agents=registry)]
    )
    async with Worker(first, task_queue=queue), Worker(other, task_queue=queue):
        runs = AgentRunClient(temporal, queue)
        run_id = await runs.start(owner, "counter", script(*steps, {"say": "{seen}"}))
        summary = await runs.wait(owner, run_id, timeout=120)
        thread = await runs.thread(owner, run_id)
    assert summary.status == "completed" and thread is not None
    said = [(i, m.content) for i, m in enumerate(thread) if m.content[:1].isdigit()]
    assert len(said) == turns + 1
    # What each turn's agent saw is exactly the run's thread up to that message.
    assert [content for _, content in said] == [fingerprint(thread[:i]) for i, _ in said]
    # And no turn after the first carried the thread in its input: only what was new.
    inputs = [
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
        for e in await history_events(temporal, run_id)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    turn_inputs = [i for i in inputs if "turn" in i]
    assert len(turn_inputs) == turns + 1
    assert all(t["thread_by_query"] for t in turn_inputs)
    assert max(len(t["messages"]) for t in turn_inputs) <= 3
    # A turn's tail ends where its thread does: the first thing the turn says.
    assert [t["tail_from"] + len(t["messages"]) for t in turn_inputs[1:]] == [
        i for i, _ in said[1:]
    ]
