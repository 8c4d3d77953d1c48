"""What a whole tree spends, and budgets that stop it (docs/budgets.md).

A model-driven planner on a local OpenAI-compatible server (which reports usage)
delegates to two researchers that keep calling a tool; scripted fan-outs test the
limits on runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    PollWorkflowTaskQueueRequest,
    RespondWorkflowTaskCompletedRequest,
)
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRegistry, AgentRunClient, AgentSpec, Budget, ModelAgent, ScriptedAgent
from agentrun._agents._registry_file import build_model
from agentrun._models import ReserveInput, ReserveRuns
from agentrun._plugin import AgentRunPlugin
from agentrun._settings import AgentRunSettings
from agentrun._usage import Usage
from agentrun.activities.budgets import UNPROCESSED_ATTEMPTS, reserve_runs
from tests.conftest import agentrun_client, server_address
from tests.fake_openai import DIG_ROUNDS, FakeOpenAI
from tests.helpers import agentrun_cli, eventually

# Each run of the scripted fan-out starts this many children, four levels deep: 11,110
# runs if nothing stops it.
FAN = 10
LEVELS = 4
CAP = 30  # the worker's AGENTRUN_MAX_RUNS_PER_TREE in the fan-out tests


def worker_client(
    env: WorkflowEnvironment, fake: FakeOpenAI, settings: AgentRunSettings | None = None
) -> Client:
    def model(name: str) -> ModelAgent:
        return ModelAgent(build_model(f"openai:{name}", fake.base_url))

    registry = AgentRegistry(
        [
            AgentSpec(id="scripted", runtime=ScriptedAgent(), allow_self=True),
            AgentSpec(id="planner", runtime=model("fanout"), allowed_agents=("researcher",)),
            AgentSpec(id="researcher", runtime=model("digger"), allowed_agents=()),
            AgentSpec(
                id="frugal",
                runtime=model("fanout"),
                allowed_agents=("researcher",),
                budget=Budget(tokens=150),
            ),
        ]
    )
    settings = settings or AgentRunSettings(max_runs_per_tree=CAP)
    plugin = AgentRunPlugin(settings, agents=registry)
    return Client(env.client.service_client, namespace=env.client.namespace, plugins=[plugin])


@pytest.fixture
async def runs(
    env: WorkflowEnvironment, queue: str, fake_openai: FakeOpenAI
) -> AsyncIterator[AgentRunClient]:
    async with Worker(worker_client(env, fake_openai), task_queue=queue):
        yield AgentRunClient(env.client, queue)


def reported(fake: FakeOpenAI) -> Usage:
    total = Usage()
    for u in fake.usages:
        total += Usage(
            requests=1, input_tokens=u["prompt_tokens"], output_tokens=u["completion_tokens"]
        )
    return total


async def tree_statuses(runs: AgentRunClient, owner: str, root: str) -> dict[str, str]:
    return {run.summary.run_id: run.summary.status for run in await runs.subtree(owner, root)}


async def test_a_tree_totals_what_every_run_in_it_spent(
    env: WorkflowEnvironment, runs: AgentRunClient, fake_openai: FakeOpenAI, queue: str, owner: str
):
    root = await runs.start(owner, "planner", "Look into tides and winds")
    final = await runs.wait(owner, root, timeout=120)
    assert (final.status, final.assistant) == ("completed", "Both are in.")

    spent = reported(fake_openai)
    assert spent.requests == 2 + 2 * (DIG_ROUNDS + 1)
    tree = await runs.spend(owner, root)
    assert (tree.requests, tree.input_tokens, tree.output_tokens) == (
        spent.requests,
        spent.input_tokens,
        spent.output_tokens,
    )
    # Each tool call counted in the run that made it: 2 delegations, 5 digs each.
    assert tree.tool_calls == 2 + 2 * DIG_ROUNDS
    child = await runs.spend(owner, f"{root}.1-researcher")
    assert child.requests == DIG_ROUNDS + 1 and child.tokens < tree.tokens

    address = server_address(env)
    shown = await agentrun_cli(address, queue, owner, "show", root)
    assert f"{tree.tokens:,} tokens" in shown.stdout  # the tree usage row
    drawn = await agentrun_cli(address, queue, owner, "tree", root, "--once")
    assert f"tree {tree.tokens:,}" in drawn.stdout
    listed = await agentrun_cli(address, queue, owner, "ls", "--all", "--sort", "tokens", "--json")
    first = json.loads(listed.stdout)[0]
    assert (first["run_id"], first["tree_usage"]["requests"]) == (root, spent.requests)


async def test_a_token_budget_stops_the_whole_tree_and_a_larger_one_carries_on(
    runs: AgentRunClient, fake_openai: FakeOpenAI, owner: str
):
    budget = 400
    root = await runs.start(owner, "planner", "Look into it", budget=Budget(tokens=budget))
    final = await runs.wait(owner, root, timeout=120)

    assert final.status == "stopped"
    assert final.error is not None and final.error.startswith("Budget exceeded: ")
    assert final.error.endswith(f" of {budget} tokens")
    statuses = await tree_statuses(runs, owner, root)
    assert len(statuses) == 3 and set(statuses.values()) == {"stopped"}
    # Spent, and by no more than one response per run that was running.
    tree = await runs.spend(owner, root)
    largest = max(u["prompt_tokens"] + u["completion_tokens"] for u in fake_openai.usages)
    assert budget <= tree.tokens <= budget + len(statuses) * largest
    assert tree.tokens == reported(fake_openai).tokens

    resumed = await runs.resume(owner, root, budget=Budget(tokens=100 * budget))
    assert resumed.budget == Budget(tokens=100 * budget)
    final = await runs.wait(owner, root, timeout=120)
    assert (final.status, final.assistant, final.error) == ("completed", "Both are in.", None)
    # Both epochs of the root and every child, stopped or not: exactly what was reported.
    after = await runs.spend(owner, root)
    assert (after.requests, after.tokens) == (
        reported(fake_openai).requests,
        reported(fake_openai).tokens,
    )


async def test_an_agents_default_budget_covers_its_runs(
    runs: AgentRunClient, fake_openai: FakeOpenAI, owner: str
):
    root = await runs.start(owner, "frugal", "Look into it")
    final = await runs.wait(owner, root, timeout=120)
    assert final.status == "stopped" and final.budget == Budget(tokens=150)
    assert final.error is not None and final.error.endswith(" of 150 tokens")


def fan_out(levels: int = LEVELS, together: bool = False) -> str:
    """A script that starts ``FAN`` background children, each this script one level
    down, then says it is done: one child per step, or (``together``) all in one
    ``tools`` step, as a model's response with parallel tool calls."""
    leaf = json.dumps({"steps": [{"say": "leaf"}]})
    child = leaf if levels == 1 else fan_out(levels - 1, together)
    calls = [
        {"tool": "agent_run", "args": {"agent_id": "scripted", "prompt": child, "background": True}}
        for _ in range(FAN)
    ]
    steps = [{"tools": calls}] if together else calls
    return json.dumps({"steps": [*steps, {"say": f"started {FAN}"}]})


async def test_the_per_tree_cap_refuses_runs_beyond_it_and_the_tree_goes_on(
    runs: AgentRunClient, owner: str
):
    root = await runs.start(owner, "scripted", fan_out())
    final = await runs.wait(owner, root, timeout=180)
    assert final.status == "completed"
    statuses = await tree_statuses(runs, owner, root)
    assert len(statuses) == CAP and set(statuses.values()) == {"completed"}
    results = []
    for run_id in statuses:
        thread = await runs.thread(owner, run_id) or []
        results += [json.loads(m.content) for m in thread if m.role == "tool"]
    started = [r for r in results if not r.get("error")]
    refused = [r["error"]["message"] for r in results if r.get("error")]
    assert len(started) == CAP - 1 and refused
    assert all(f"(AGENTRUN_MAX_RUNS_PER_TREE={CAP})" in message for message in refused)


async def test_a_runs_budget_stops_a_fan_out_with_no_run_left_running(
    runs: AgentRunClient, owner: str
):
    root = await runs.start(owner, "scripted", fan_out(), budget=Budget(runs=12))
    final = await runs.wait(owner, root, timeout=180)
    assert final.status == "stopped"
    assert final.error == "Budget exceeded: 12 of 12 runs"
    statuses = await tree_statuses(runs, owner, root)
    assert len(statuses) == 12 and "running" not in statuses.values()


async def test_a_child_resumed_after_its_root_closed_counts_its_own_tree(
    runs: AgentRunClient, owner: str
):
    deep = json.dumps({"steps": [{"say": "deep"}]})
    child = {
        "steps": [
            {"sleep": 8},
            {"tool": "agent_run", "args": {"agent_id": "scripted", "prompt": deep}},
            {"say": "child done"},
        ]
    }
    script = {"steps": [{"tool": "agent_run", "args": {"agent_id": "scripted", "prompt": child}}]}
    root = await runs.start(owner, "scripted", json.dumps(script))
    child_id = f"{root}.1-scripted"
    await eventually(lambda: runs.summary(owner, child_id), lambda s: s is not None, timeout=60)
    await runs.stop_tree(owner, root)
    assert (await runs.wait(owner, root, timeout=60)).status == "stopped"

    await runs.resume(owner, child_id)  # its parent, and the tree's root, have closed
    final = await runs.wait(owner, child_id, timeout=120)
    assert (final.status, final.assistant) == ("completed", "child done")
    grandchild = await runs.summary(owner, f"{child_id}.1-scripted")
    assert grandchild is not None and grandchild.status == "completed"


@pytest.mark.skipif(not os.environ.get("AGENTRUN_STRESS"), reason="stress: make stress")
async def test_the_default_cap_stops_a_fan_out_at_a_thousand_runs(
    env: WorkflowEnvironment, queue: str, fake_openai: FakeOpenAI, owner: str
):
    settings = AgentRunSettings(max_concurrent_turns=400)  # the default cap: 1,000 runs
    async with Worker(worker_client(env, fake_openai, settings), task_queue=queue):
        runs = AgentRunClient(env.client, queue)
        # Each run starts its ten children from one step (one ask of the root each):
        # a step per child asks the root a thousand times, which a 2-core machine does
        # not finish (docs/budgets.md).
        root = await runs.start(owner, "scripted", fan_out(together=True))
        final = await runs.wait(owner, root, timeout=1800)
        statuses = await tree_statuses(runs, owner, root)
    assert final.status == "completed"
    assert len(statuses) == 1000 and set(statuses.values()) == {"completed"}


async def test_a_bad_budget_is_refused_naming_the_limit_and_the_value(
    env: WorkflowEnvironment, queue: str, owner: str
):
    done = await agentrun_cli(
        server_address(env), queue, owner, "run", "scripted", "hi", "--budget-cost", "0"
    )
    assert done.returncode == 2
    assert "cost_usd: Input should be greater than 0 (got 0.0)" in done.stderr


async def _ignore_workflow_tasks(client: Client, queue: str) -> None:
    """A worker that completes every workflow task of ``queue`` and takes nothing in
    it, as a worker whose task had timed out or moved under load does: the server
    rejects the updates those tasks carried (``UnprocessedUpdate``)."""
    service = client.workflow_service
    while True:
        task = await service.poll_workflow_task_queue(
            PollWorkflowTaskQueueRequest(
                namespace=client.namespace, task_queue=TaskQueue(name=queue), identity="silent"
            )
        )
        if task.task_token:
            await service.respond_workflow_task_completed(
                RespondWorkflowTaskCompletedRequest(
                    namespace=client.namespace, task_token=task.task_token, identity="silent"
                )
            )


@pytest.mark.parametrize("attempt", [1, UNPROCESSED_ATTEMPTS])
async def test_a_request_the_root_never_took_is_asked_again_before_it_is_refused(
    temporal: Client, owner: str, attempt: int
):
    queue = f"silent-{uuid.uuid4().hex[:8]}"
    root = await temporal.start_workflow("AgentRun", id=f"root-{owner}", task_queue=queue)
    silent = asyncio.create_task(_ignore_workflow_tasks(temporal, queue))
    env = ActivityEnvironment(client=agentrun_client(temporal))
    env.info = dataclasses.replace(env.info, attempt=attempt)
    ask = ReserveInput(
        root_run_id=root.id, request=ReserveRuns(owner_thread_id=owner, requester="r.1", count=1)
    )
    try:
        if attempt < UNPROCESSED_ATTEMPTS:
            # Not the root's answer: the activity fails this attempt, and Temporal asks again.
            asked_again = r"refused: .*wasn't processed.*\(asking again\)$"
            with pytest.raises(ApplicationError, match=asked_again):
                await env.run(reserve_runs, ask)
        else:
            grant = await env.run(reserve_runs, ask)
            assert grant.granted == 0 and grant.refused is not None
            assert grant.refused.startswith(
                f"the tree's root '{root.id}' refused: UnprocessedUpdate: "
            )
    finally:
        silent.cancel()
        await root.terminate()
