"""Scenario 8: a ten-step agent run, agentrun against pydantic-ai's own Temporal durability.

One ``FunctionModel`` drives both: calls 1..9 each ask for one ``agent_output`` tool
call, call 10 answers. agentrun runs it as a registry agent (``agent_output`` on an
unknown run_id: the workflow answers an error at once, nothing is delegated); the peer
is a plain pydantic-ai ``Agent`` with a trivial ``agent_output`` function tool and the
``TemporalDurability`` capability, run by a workflow of its own on a worker with the
``PydanticAIPlugin``. Both workers share one fresh server and agentrun's
settings; sequential runs alternate between them so a load change hits both.
"""

from __future__ import annotations

import time
import uuid

from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import (
    PydanticAIPlugin,
    PydanticAIWorkflow,
    TemporalDurability,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from agentrun._agents import AgentRegistry, AgentSpec
    from agentrun._agents._model import ModelAgent
    from agentrun._client import AgentRunClient
    from agentrun._constants import HEARTBEAT_THROTTLE
    from agentrun._plugin import GRACEFUL_SHUTDOWN, STICKY_TIMEOUT
    from agentrun._settings import load_settings
    from bench._harness import (
        QUICK,
        Figure,
        Report,
        agentrun_worker,
        fresh_server,
        new_owner,
        new_queue,
        percentile,
    )

STEPS = 10
ANSWER = "ten steps done"


def ten_steps(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Model calls 1..9 ask for one tool call each; call 10 answers."""
    done = sum(
        isinstance(part, ToolReturnPart)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
    )
    if done < STEPS - 1:
        call = ToolCallPart("agent_output", {"run_id": "none"}, tool_call_id=f"call-{done + 1}")
        return ModelResponse(parts=[call])
    return ModelResponse(parts=[TextPart(ANSWER)])


async def agent_output(run_id: str) -> str:
    """The peer's tool: answers at once, like agentrun's ``agent_output`` on an unknown id."""
    return f"Unknown run_id: {run_id}"


PEER = Agent(
    FunctionModel(ten_steps),
    name="peer",
    tools=[agent_output],
    capabilities=[TemporalDurability()],
)


@workflow.defn(name="PeerTenSteps")
class PeerTenSteps(PydanticAIWorkflow):
    """The peer's run: pydantic-ai's durable agent loop inside one workflow."""

    __pydantic_ai_agents__ = (PEER,)

    @workflow.run
    async def run(self, prompt: str) -> str:
        result = await PEER.run(prompt)
        return result.output


def peer_worker(client: Client, queue: str) -> Worker:
    """The peer's worker (the client carries the plugin), with agentrun's settings."""
    return Worker(
        client,
        task_queue=queue,
        workflows=[PeerTenSteps],
        max_concurrent_activities=load_settings().max_concurrent_turns,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT,
    )


async def _agentrun_once(runs: AgentRunClient, owner: str) -> tuple[float, str]:
    start = time.perf_counter()
    run_id = await runs.start(owner, "ten-steps", "go")
    await runs.temporal.get_workflow_handle(run_id).result()
    return time.perf_counter() - start, run_id


async def _peer_once(client: Client, queue: str) -> tuple[float, str]:
    workflow_id = f"peer-{uuid.uuid4().hex[:12]}"
    start = time.perf_counter()
    answer = await client.execute_workflow(PeerTenSteps.run, "go", id=workflow_id, task_queue=queue)
    elapsed = time.perf_counter() - start
    assert answer == ANSWER, answer
    return elapsed, workflow_id


async def _events(client: Client, workflow_id: str) -> int:
    return len((await client.get_workflow_handle(workflow_id).fetch_history()).events)


def _registry() -> AgentRegistry:
    """agentrun's side: the same model as a registry agent that delegates to nobody."""
    model = ModelAgent(FunctionModel(ten_steps))
    return AgentRegistry([AgentSpec(id="ten-steps", runtime=model, allowed_agents=())])


async def _alternate(
    runs: AgentRunClient, owner: str, plugged: Client, peer_queue: str, count: int
) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """``count`` timed runs each, alternating, after two warm-ups each."""
    ours: list[tuple[float, str]] = []
    theirs: list[tuple[float, str]] = []
    for _ in range(count + 2):
        ours.append(await _agentrun_once(runs, owner))
        theirs.append(await _peer_once(plugged, peer_queue))
    summary = await runs.wait(owner, ours[-1][1], timeout=30)
    assert (summary.status, summary.assistant) == ("completed", ANSWER), summary
    return ours[2:], theirs[2:]


async def run(report: Report) -> None:
    """Scenario 8: p50/p95 wall time of a ten-step run, sequential, alternating."""
    count = 5 if QUICK else 20
    async with fresh_server() as server:
        plugged = await Client.connect(server.address, plugins=[PydanticAIPlugin()])
        peer_queue = new_queue("peer")
        async with (
            agentrun_worker(server.client, _registry()) as queue,
            peer_worker(plugged, peer_queue),
        ):
            runs = AgentRunClient(server.client, queue)
            ours, theirs = await _alternate(runs, new_owner(), plugged, peer_queue, count)
            ours_events = await _events(server.client, ours[-1][1])
            theirs_events = await _events(plugged, theirs[-1][1])
    report.samples["peer_agentrun"] = [seconds for seconds, _ in ours]
    report.samples["peer_pydantic_ai"] = [seconds for seconds, _ in theirs]
    _figures(report, report.samples["peer_agentrun"], report.samples["peer_pydantic_ai"])
    report.add(Figure("peer", "history events per run, agentrun", ours_events, "events"))
    report.add(Figure("peer", "history events per run, pydantic-ai", theirs_events, "events"))


def _figures(report: Report, ours: list[float], theirs: list[float]) -> None:
    s = "peer"
    for label, values in (("agentrun", ours), ("pydantic-ai temporal", theirs)):
        report.add(Figure(s, f"{label} p50", percentile(values, 50) * 1000, "ms"))
        report.add(Figure(s, f"{label} p95", percentile(values, 95) * 1000, "ms"))
    ratio = percentile(ours, 50) / percentile(theirs, 50)
    report.add(Figure(s, "wall time p50 ratio agentrun/peer", ratio, "x", "<= 1.0", ratio <= 1.0))
