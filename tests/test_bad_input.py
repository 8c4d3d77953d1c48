"""Bad input fails the run at once with a message naming the problem."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from agentrun import AgentRunClient
from agentrun._constants import DELEGATION_STATUS, WORKFLOW_TYPE
from tests.helpers import script

CASES: list[tuple[str, Any, str]] = [
    ("missing owner", {"agent_id": "scripted", "prompt": "hi"}, "owner_thread_id: Field required"),
    (
        "blank owner",
        {"owner_thread_id": " ", "agent_id": "scripted", "prompt": "hi"},
        "owner_thread_id",
    ),
    ("missing agent", {"owner_thread_id": "t", "prompt": "hi"}, "agent_id: Field required"),
    ("missing prompt", {"owner_thread_id": "t", "agent_id": "scripted"}, "'prompt' is required"),
    (
        "wrong types",
        {"owner_thread_id": "t", "agent_id": 42, "prompt": ["hi"]},
        "agent_id: Input should be a valid string (got 42)",
    ),
    (
        "bad message",
        {"owner_thread_id": "t", "agent_id": "scripted", "messages": [{"role": "robot"}]},
        "messages.0.role",
    ),
    ("not an object", ["owner", "agent"], "must be a JSON object, got list"),
    (
        "unknown agent",
        {"owner_thread_id": "t", "agent_id": "nobody", "prompt": "hi"},
        "Unknown or unavailable agent_id: nobody",
    ),
    (
        "malformed script",
        {"owner_thread_id": "t", "agent_id": "scripted", "prompt": script({"say": 1, "sleep": 2})},
        "Invalid script: step 1 must have exactly one of 'say', 'sleep', 'tool', 'tools', 'fail'",
    ),
    (
        "bad step value",
        {"owner_thread_id": "t", "agent_id": "scripted", "prompt": script({"sleep": "long"})},
        "Invalid script: step 1: sleep: Input should be a valid number",
    ),
    (
        "heartbeat timeout too short",
        {"owner_thread_id": "t", "agent_id": "scripted", "prompt": "hi", "heartbeat_timeout": 0.1},
        "heartbeat_timeout: Input should be greater than or equal to 1",
    ),
    (
        "a tool with no name",
        {"owner_thread_id": "t", "agent_id": "scripted", "prompt": script({"tool": ""})},
        "Invalid script: step 1: tool: String should have at least 1 character",
    ),
    (
        # A turn runs its script's steps between checkpoints: 20,000 of them once wedged
        # a worker, so a script is bounded.
        "a script too long",
        {"owner_thread_id": "t", "agent_id": "scripted", "prompt": script(*[{"say": "x"}] * 20000)},
        "Invalid script: 20000 steps, at most 5000",
    ),
]


@pytest.mark.parametrize(("name", "payload", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_fails_the_run_at_once_naming_the_problem(
    temporal: Client, runs: AgentRunClient, queue: str, name: str, payload: Any, expected: str
):
    handle = await temporal.start_workflow(
        WORKFLOW_TYPE, payload, id=f"bad-{queue}-{name.replace(' ', '-')}", task_queue=queue
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 60)  # a generous bound, not a timing
    assert expected in str(failure.value.cause)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.FAILED


async def test_agent_failure_fails_the_workflow_and_sets_status(
    temporal: Client, runs: AgentRunClient, owner: str
):
    run_id = await runs.start(
        owner, "scripted", script({"say": "trying"}, {"fail": "disk on fire"})
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await temporal.get_workflow_handle(run_id).result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.message == "disk on fire"
    description = await temporal.get_workflow_handle(run_id).describe()
    assert description.typed_search_attributes.get(DELEGATION_STATUS) == "failed"


async def test_worker_keeps_serving_good_runs_alongside_bad_ones(
    temporal: Client, runs: AgentRunClient, owner: str, queue: str
):
    good = [
        runs.start(owner, "scripted", script({"sleep": 0.3}, {"say": f"ok {i}"})) for i in range(3)
    ]
    bad = [
        temporal.start_workflow(
            WORKFLOW_TYPE, {"junk": i}, id=f"junk-{queue}-{i}", task_queue=queue
        )
        for i in range(3)
    ]
    good_ids, _ = await asyncio.gather(asyncio.gather(*good), asyncio.gather(*bad))
    for run_id in good_ids:
        summary = await runs.wait(owner, run_id, timeout=20)
        assert summary.status == "completed"


async def test_client_start_rejects_a_missing_prompt_before_starting(
    runs: AgentRunClient, owner: str
):
    with pytest.raises(ValueError, match="'prompt' is required"):
        await runs.start(owner, "scripted", None)
    assert await runs.all(owner) == []
