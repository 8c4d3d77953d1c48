"""A turn retried after its last step hands back that step's ending, not a new step."""

from __future__ import annotations

import dataclasses
import json

from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from agentrun import AgentRegistry, AgentRunClient, AgentSpec, Message, Step, StepContext, ToolCall
from agentrun._models import TurnCheckpoint, TurnInput
from agentrun.activities import TurnActivities
from tests.helpers import eventually, script


class MustNotRun:
    replays_exactly = True

    async def step(self, ctx: StepContext) -> Step:
        raise AssertionError("the agent ran again after its turn had ended")


async def test_retry_after_the_ending_step_returns_the_checkpointed_ending(
    runs: AgentRunClient, temporal: Client, owner: str
):
    # A real run hosts the stream the retried turn reads; its own worker sleeps.
    run_id = await runs.start(owner, "scripted", script({"sleep": 60}))
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s is not None)
    execution = (await temporal.get_workflow_handle(run_id).describe()).run_id
    call = ToolCall(id="call-1", name="agent_run", args={"agent_id": "x", "prompt": "y"})
    said = Message(role="assistant", content="delegating", tool_calls=[call])
    ended = TurnCheckpoint(
        steps=2, messages=[said], ended=True, tool_calls=[call], events_published=3
    )

    environment = ActivityEnvironment(client=temporal)
    # The worker's converter (pydantic), as the turn has it in a worker.
    environment.payload_converter = temporal.data_converter.payload_converter
    environment.info = dataclasses.replace(
        environment.info,
        workflow_id=run_id,
        workflow_run_id=execution,
        attempt=2,
        heartbeat_details=[ended.model_dump(mode="json")],
    )
    registry = AgentRegistry([AgentSpec(id="careful", runtime=MustNotRun())])
    turn = TurnInput(
        run_id=run_id,
        owner_thread_id=owner,
        agent_id="careful",
        epoch=1,
        turn=1,
        depth=0,
        messages=[Message.user("go")],
    )
    result = await environment.run(TurnActivities(registry).run_turn, turn)
    assert result.tool_calls == [call]
    assert result.messages == [said]
    assert result.error is None and not result.stopped
    await runs.stop_tree(owner, run_id)


async def test_a_running_turn_heartbeats_its_latest_checkpoint_as_json(
    runs: AgentRunClient, temporal: Client, owner: str
):
    # What the server keeps for a retry (and `temporal workflow describe` shows): the
    # turn's latest checkpoint, one JSON payload, encoded once however often it beats.
    run_id = await runs.start(owner, "scripted", script({"say": "napping"}, {"sleep": 60}))
    handle = temporal.get_workflow_handle(run_id)

    async def checkpoint() -> dict[str, object] | None:
        pending = (await handle.describe()).raw_description.pending_activities
        if not pending or not pending[0].heartbeat_details.payloads:
            return None
        payload = pending[0].heartbeat_details.payloads[0]
        assert payload.metadata["encoding"] == b"json/plain"
        decoded: dict[str, object] = json.loads(payload.data)
        return decoded

    def slept(value: dict[str, object] | None) -> float:
        state = value.get("agent_state") if value else None
        return float(state.get("slept", 0)) if isinstance(state, dict) else 0.0

    first = await eventually(checkpoint, lambda c: slept(c) > 0)
    later = await eventually(checkpoint, lambda c: slept(c) > slept(first))
    restored = TurnCheckpoint.model_validate(later)
    assert restored.steps > TurnCheckpoint.model_validate(first).steps
    assert [m.content for m in restored.messages] == ["napping"]
    await runs.stop_tree(owner, run_id)
