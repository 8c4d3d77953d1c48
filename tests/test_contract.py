"""What any Temporal client relies on (docs/contract.md), checked with the temporal CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient
from agentrun._constants import AGENT_ID, DELEGATION_EPOCH, DELEGATION_STATUS, OWNER_THREAD_ID
from tests.conftest import server_address, temporal_binary
from tests.helpers import child, eventually, run, script


async def cli(env: WorkflowEnvironment, *args: str) -> Any:
    """Run the temporal CLI against the session's server; its JSON output."""
    command = [temporal_binary(), *args, "--address", server_address(env), "-o", "json"]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout.strip()
    if not text:
        return None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:  # one JSON document per line
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return parsed if isinstance(parsed, list) else [parsed]


def ids(listing: Any) -> set[str]:
    return {entry["execution"]["workflowId"] for entry in listing or []}


async def test_cli_lists_by_owner_status_and_root_and_cancel_stops_the_subtree(
    env: WorkflowEnvironment, runs: AgentRunClient, temporal: Client, owner: str
):
    sleeper = child({"sleep": 60})
    root = await runs.start(
        owner,
        "scripted",
        script(
            run(
                "scripted",
                child(run("scripted", sleeper, background=True), {"sleep": 60}),
                background=True,
            ),
            {"sleep": 60},
        ),
    )
    tree = {root, f"{root}.1-scripted", f"{root}.1-scripted.1-scripted"}
    await eventually(
        lambda: runs.summary(owner, f"{root}.1-scripted.1-scripted"), lambda s: s is not None
    )

    running_query = f"OwnerThreadId='{owner}' AND DelegationStatus='running'"
    listed = await eventually(
        lambda: cli(env, "workflow", "list", "--query", running_query),
        lambda listing: ids(listing) == tree,
    )
    assert ids(listed) == tree
    in_tree = await cli(env, "workflow", "list", "--query", f"RootWorkflowId='{root}'")
    assert ids(in_tree) == tree

    description = await temporal.get_workflow_handle(f"{root}.1-scripted.1-scripted").describe()
    attributes = description.typed_search_attributes
    assert attributes.get(OWNER_THREAD_ID) == owner
    assert attributes.get(AGENT_ID) == "scripted"
    assert attributes.get(DELEGATION_EPOCH) == 1
    assert description.parent_id == f"{root}.1-scripted"

    await asyncio.to_thread(
        subprocess.run,
        [
            temporal_binary(),
            "workflow",
            "cancel",
            "--workflow-id",
            root,
            "--address",
            server_address(env),
        ],
        check=True,
        capture_output=True,
    )
    for run_id in tree:
        handle = temporal.get_workflow_handle(run_id)
        closed = await eventually(
            handle.describe, lambda d: d.status != WorkflowExecutionStatus.RUNNING
        )
        assert closed.status == WorkflowExecutionStatus.CANCELED
        assert closed.typed_search_attributes.get(DELEGATION_STATUS) == "stopped"
    stopped_query = f"OwnerThreadId='{owner}' AND DelegationStatus='stopped'"
    await eventually(
        lambda: cli(env, "workflow", "list", "--query", stopped_query),
        lambda listing: ids(listing) == tree,
    )


async def test_cli_starts_a_run_and_queries_summary_thread_and_children(
    env: WorkflowEnvironment, runs: AgentRunClient, queue: str, owner: str
):
    run_id = f"cli-{queue}"
    prompt = script({"say": "from the cli"}, run("scripted", "child says hi"))
    start_input = json.dumps({"owner_thread_id": owner, "agent_id": "scripted", "prompt": prompt})
    result = await cli(
        env,
        "workflow",
        "execute",
        "--type",
        "AgentRun",
        "--task-queue",
        queue,
        "--workflow-id",
        run_id,
        "--input",
        start_input,
    )
    assert result[0]["status"] == "COMPLETED"
    assert result[0]["result"]["status"] == "completed"
    assert result[0]["result"]["assistant"] == "from the cli"
    summary = await cli(env, "workflow", "query", "--workflow-id", run_id, "--name", "summary")
    assert summary[0]["queryResult"][0] == {
        **summary[0]["queryResult"][0],
        "run_id": run_id,
        "agent_id": "scripted",
        "status": "completed",
        "assistant": "from the cli",
        "error": None,
    }
    thread = await cli(env, "workflow", "query", "--workflow-id", run_id, "--name", "thread")
    assert [m["role"] for m in thread[0]["queryResult"][0]] == [
        "user",
        "assistant",
        "assistant",
        "tool",
    ]
    children = await cli(env, "workflow", "query", "--workflow-id", run_id, "--name", "children")
    assert [(c["run_id"], c["assistant"]) for c in children[0]["queryResult"][0]] == [
        (f"{run_id}.1-scripted", "child says hi")
    ]
