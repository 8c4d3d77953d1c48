"""A person in the loop: calls that wait for the owner's decision, messages to running
runs (docs/approvals.md). Every test runs on the real dev server and a real worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import (
    AgentRegistry,
    AgentRunClient,
    AgentSpec,
    DelegationError,
    ModelAgent,
    ScriptedAgent,
    as_tool,
    connect,
)
from agentrun._constants import AWAITING_APPROVAL, UPDATE_DECIDE_TOOL_CALL
from agentrun._models import PendingApproval
from agentrun._server import EmbeddedServer
from tests.conftest import agentrun_client, server_address
from tests.helpers import (
    agentrun_cli,
    child,
    current_details,
    eventually,
    history_events,
    run,
    script,
    spawn_worker,
    tool,
    tool_returns,
)
from tests.tool_functions import add, shout

MAIL = script(tool("send_mail", text="hello"), {"say": "done"})


def cautious_model() -> FunctionModel:
    """Delegates once; then answers with what the delegation gave back."""

    def decide(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = tool_returns(messages)
        if not returns:
            call = ToolCallPart(
                tool_name="agent_run",
                args={"agent_id": "scripted", "prompt": "child says hi"},
                tool_call_id="c-delegate",
            )
            return ModelResponse(parts=[call])
        return ModelResponse(parts=[TextPart(content=f"Got: {returns[0]}")])

    return FunctionModel(decide)


def registry() -> AgentRegistry:
    return AgentRegistry(
        tools=[
            as_tool(shout, name="send_mail", approval=True),
            as_tool(add, name="quick_add", approval=True, approval_timeout=1.5),
        ],
        specs=[
            AgentSpec(id="scripted", runtime=ScriptedAgent(), allow_self=True, tools=None),
            AgentSpec(
                id="cautious",
                runtime=ModelAgent(cautious_model()),
                allowed_agents=("scripted",),
                approval_tools=("agent_run",),
            ),
        ],
    )


@pytest.fixture
async def runs(env: WorkflowEnvironment, queue: str) -> AsyncIterator[AgentRunClient]:
    async with Worker(agentrun_client(env.client, registry()), task_queue=queue):
        yield AgentRunClient(env.client, queue)


async def waiting(runs: AgentRunClient, owner: str, count: int = 1) -> list[PendingApproval]:
    return await eventually(lambda: runs.pending(owner), lambda p: len(p) == count)


async def listed_awaiting(temporal: Client, owner: str) -> list[str]:
    query = f"AwaitingApproval = true AND OwnerThreadId = '{owner}'"
    return [execution.id async for execution in temporal.list_workflows(query)]


async def awaiting_attribute(temporal: Client, run_id: str) -> bool | None:
    description = await temporal.get_workflow_handle(run_id).describe()
    return description.typed_search_attributes.get(AWAITING_APPROVAL)


async def test_a_call_waits_for_approval_found_by_list_query_and_approved_from_the_cli(
    env: WorkflowEnvironment, runs: AgentRunClient, temporal: Client, queue: str, owner: str
):
    address = server_address(env)
    following = asyncio.create_task(agentrun_cli(address, queue, owner, "run", "scripted", MAIL))
    [call] = await waiting(runs, owner)
    run_id = call.run_id
    assert (call.agent_id, call.tool, call.args) == ("scripted", "send_mail", {"text": "hello"})
    await eventually(lambda: listed_awaiting(temporal, owner), lambda ids: ids == [run_id])
    summary = await runs.summary(owner, run_id)
    assert summary is not None and summary.status == "running"
    decide = f"agentrun approve {run_id} {call.call_id} --owner {owner}"
    assert decide in await current_details(temporal, run_id)  # the Web UI's
    listing = await agentrun_cli(address, queue, owner, "pending")
    assert f"agentrun approve {run_id} {call.call_id}" in listing.stdout

    approved = await agentrun_cli(address, queue, owner, "approve", run_id)
    assert approved.returncode == 0, approved.stderr
    followed = await asyncio.wait_for(following, 120)
    assert followed.returncode == 0, followed.stderr
    assert decide in followed.stdout  # `agentrun run` showed how to decide
    final = await runs.wait(owner, run_id, timeout=60)
    assert (final.status, final.assistant) == ("completed", "done")
    thread = await runs.thread(owner, run_id)
    assert thread is not None and [m.content for m in thread if m.role == "tool"] == ["HELLO"]
    assert await awaiting_attribute(temporal, run_id) is False


async def test_a_denied_call_tells_the_agent_why_and_refused_decisions_leave_no_trace(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(owner, "scripted", MAIL)
    [call] = await waiting(runs, owner)
    before = len(await history_events(temporal, run_id))
    handle = temporal.get_workflow_handle(run_id)
    refused = [
        ({"owner_thread_id": "intruder", "call_id": call.call_id}, f"Unknown run_id: {run_id}"),
        ({"owner_thread_id": owner, "call_id": "nope"}, "Unknown call_id: nope"),
    ]
    for fields, message in refused:
        with pytest.raises(WorkflowUpdateFailedError) as raised:
            await handle.execute_update(UPDATE_DECIDE_TOOL_CALL, {**fields, "approved": True})
        assert message in str(raised.value.cause)
    assert len(await history_events(temporal, run_id)) == before
    with pytest.raises(DelegationError, match=f"^Unknown run_id: {run_id}$"):
        await runs.approve("intruder", run_id, call.call_id)

    await runs.deny(owner, run_id, call.call_id, reason="not today")
    with pytest.raises(DelegationError, match=r"already decided|is completed"):
        await runs.approve(owner, run_id, call.call_id)
    final = await runs.wait(owner, run_id, timeout=60)
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    assert [m.content for m in thread if m.role == "tool"] == ["User denied the action: not today"]
    assert final.assistant == "done"


async def test_a_waiting_run_writes_no_history_until_the_decision(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(owner, "scripted", MAIL)
    await waiting(runs, owner)
    await eventually(lambda: awaiting_attribute(temporal, run_id), lambda awaiting: awaiting)
    before = await history_events(temporal, run_id)
    await asyncio.sleep(5)
    assert len(await history_events(temporal, run_id)) == len(before)
    await runs.approve(owner, run_id)
    await runs.wait(owner, run_id, timeout=60)


async def test_an_approval_timeout_denies_the_call(runs: AgentRunClient, owner: str):
    run_id = await runs.start(owner, "scripted", script(tool("quick_add", a=1, b=2)))
    final = await runs.wait(owner, run_id, timeout=60)
    thread = await runs.thread(owner, run_id)
    assert thread is not None and [m.content for m in thread if m.role == "tool"] == [
        "Approval timed out"
    ]
    assert final.status == "completed"


async def test_a_stop_while_waiting_clears_the_wait_and_a_resumed_run_asks_again(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(owner, "scripted", MAIL)
    [call] = await waiting(runs, owner)
    stopped = await runs.stop_tree(owner, run_id)
    assert stopped[0].status == "stopped"
    assert await awaiting_attribute(temporal, run_id) is False
    assert await runs.pending(owner) == []

    await runs.resume(owner, run_id)
    [again] = await waiting(runs, owner)
    assert (again.run_id, again.call_id, again.tool) == (run_id, call.call_id, "send_mail")
    await runs.approve(owner, run_id, again.call_id)
    final = await runs.wait(owner, run_id, timeout=60)
    assert (final.status, final.epoch, final.assistant) == ("completed", 2, "done")


async def test_a_model_agent_asks_before_it_delegates(runs: AgentRunClient, owner: str):
    approved = await runs.start(owner, "cautious", "plan")
    [call] = await waiting(runs, owner)
    assert (call.tool, call.args["prompt"]) == ("agent_run", "child says hi")
    await runs.approve(owner, approved)
    final = await runs.wait(owner, approved, timeout=60)
    assert final.assistant is not None and "child says hi" in final.assistant
    assert len(await runs.subtree(owner, approved)) == 2

    denied = await runs.start(owner, "cautious", "plan")
    await waiting(runs, owner)
    await runs.deny(owner, denied, reason="too costly")
    final = await runs.wait(owner, denied, timeout=60)
    assert final.assistant == "Got: User denied the action: too costly"
    assert len(await runs.subtree(owner, denied)) == 1


async def test_a_message_to_a_running_run_is_seen_by_its_next_turn(
    env: WorkflowEnvironment, runs: AgentRunClient, queue: str, owner: str
):
    # Done with its own turns, the run waits for its background child; a message
    # gets it another turn.
    steps = (run("scripted", child({"sleep": 600}), background=True), {"say": "first"})
    run_id = await runs.start(owner, "scripted", script(*steps))
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant == "first")
    sent = await agentrun_cli(server_address(env), queue, owner, "send", run_id, "and then this")
    assert sent.returncode == 0, sent.stderr
    await eventually(
        lambda: runs.summary(owner, run_id), lambda s: s and s.assistant == "and then this"
    )
    await runs.stop_tree(owner, run_id)
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    said = [m.content for m in thread if m.role == "assistant" and m.content]
    assert said == ["first", "and then this"]

    with pytest.raises(DelegationError, match=f"agentrun resume {run_id} TEXT"):
        await runs.send(owner, run_id, "too late")
    followed = await agentrun_cli(
        server_address(env), queue, owner, "run", "--from", run_id, "once more", "--detach"
    )
    assert followed.returncode == 0, followed.stderr
    new_run = followed.stdout.split()[0]
    again = await runs.wait(owner, new_run, timeout=60)
    assert again.assistant == "once more"
    continued = await runs.thread(owner, new_run)
    assert continued is not None and continued[: len(thread)] == thread


async def test_a_wait_survives_a_server_restart_and_a_decision_waits_for_a_worker(
    tmp_path: Path, queue: str, owner: str, processes: list[subprocess.Popen[bytes]]
):
    agents = tmp_path / "agents.toml"
    agents.write_text(
        '[tools]\nsend_mail = { function = "tests.tool_functions:shout", approval = true }\n'
    )
    first = EmbeddedServer(db=tmp_path / "approvals.db")
    await first.start()
    processes.append(spawn_worker(first.address, queue, AGENTRUN_AGENTS=str(agents)))
    runs = AgentRunClient(await connect(first.address), queue)
    run_id = await runs.start(owner, "scripted", MAIL)
    [call] = await waiting(runs, owner)

    assert first.pid is not None
    os.killpg(first.pid, signal.SIGKILL)  # the server and everything it held in memory
    await first.stop()
    second = EmbeddedServer(db=first.db, port=first.port, ui_port=first.ui_port)
    await second.start()
    try:
        [still] = await waiting(runs, owner)
        assert still.call_id == call.call_id
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(30)
        deciding = asyncio.create_task(runs.approve(owner, run_id, call.call_id))
        await asyncio.sleep(2)
        assert not deciding.done()  # no worker can take the decision yet: it waits
        processes.append(spawn_worker(second.address, queue, AGENTRUN_AGENTS=str(agents)))
        assert await asyncio.wait_for(deciding, 120) == call.call_id
        final = await runs.wait(owner, run_id, timeout=120)
        assert final.assistant == "done"
        thread = await runs.thread(owner, run_id)
        assert thread is not None and [m.content for m in thread if m.role == "tool"] == ["HELLO"]
    finally:
        await second.stop()
