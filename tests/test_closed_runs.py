"""Runs whose workflow closed without saying so itself: terminated, timed out, bad input.

Such a run's summary query still says ``running`` (its workflow never recorded an end),
so a wait that trusted it asked again ~33 times a second forever (issue #18, finding
3), and a run whose queries fail outright made a listing fail (finding 4). Temporal
says how each closed; the status comes from that (docs/delegation.md, section 3).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient
from agentrun._constants import OWNER_THREAD_ID, WORKFLOW_TYPE
from agentrun._models import AgentRunInput
from agentrun._visibility import start_search_attributes
from tests.conftest import server_address, temporal_binary
from tests.helpers import agentrun_cli, eventually, script, tool

LONG = {"sleep": 60}


async def test_wait_returns_stopped_for_a_terminated_run(
    runs: AgentRunClient, temporal: Client, owner: str
):
    # A terminated run keeps the text of its finished turns: a turn cut off by a
    # terminate never hands its messages back (docs/reliability.md).
    steps = ({"say": "working"}, tool("agent_output", run_id="none"), LONG)
    run_id = await runs.start(owner, "scripted", script(*steps))
    await eventually(lambda: runs.thread(owner, run_id), lambda t: t and len(t) >= 3)
    await temporal.get_workflow_handle(run_id).terminate(reason="operator")
    done = await runs.wait(owner, run_id, timeout=30)
    assert (done.status, done.assistant) == ("stopped", "working")
    assert done.error == "Workflow execution terminated: operator"
    assert await runs.running_or_stopped(owner) == [done]


async def test_wait_returns_stopped_for_a_run_that_timed_out(
    runs: AgentRunClient, temporal: Client, queue: str, owner: str
):
    run_input = AgentRunInput(owner_thread_id=owner, agent_id="scripted", prompt=script(LONG))
    handle = await temporal.start_workflow(
        WORKFLOW_TYPE,
        run_input,
        id=f"{owner}-timed-out",
        task_queue=queue,
        execution_timeout=timedelta(seconds=3),
        search_attributes=start_search_attributes(run_input),
    )
    done = await runs.wait(owner, handle.id, timeout=30)
    assert (done.status, done.error) == ("stopped", "Workflow execution timed out")


async def test_wait_returns_failed_for_a_run_its_input_failed(
    runs: AgentRunClient, temporal: Client, queue: str, owner: str
):
    # Started through Temporal itself with input that is no AgentRun input: the run
    # fails at once, with no summary of its own (its placeholder names no owner).
    owned = TypedSearchAttributes([SearchAttributePair(OWNER_THREAD_ID, owner)])
    handle = await temporal.start_workflow(
        WORKFLOW_TYPE, "x", id=f"{owner}-bad", task_queue=queue, search_attributes=owned
    )
    done = await runs.wait(owner, handle.id, timeout=30)
    assert done.status == "failed"
    assert done.error == "AgentRun input must be a JSON object, got str"


async def test_run_command_ends_when_its_run_is_terminated(
    env: WorkflowEnvironment, runs: AgentRunClient, temporal: Client, queue: str, owner: str
):
    address = server_address(env)
    following = asyncio.create_task(
        agentrun_cli(address, queue, owner, "run", "scripted", script(LONG), "--json")
    )
    started = await eventually(lambda: runs.all(owner), lambda found: len(found) == 1)
    await temporal.get_workflow_handle(started[0].run_id).terminate()
    done = await following
    assert done.returncode == 4, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])["summary"]
    assert (summary["run_id"], summary["status"]) == (started[0].run_id, "stopped")


async def test_a_run_whose_queries_fail_is_listed_and_never_fails_the_list(
    env: WorkflowEnvironment, runs: AgentRunClient, temporal: Client, queue: str, owner: str
):
    # Garbage input on a queue no worker polls, then terminated: it never ran a workflow
    # task, so every query of it fails ("closed before WorkflowTaskStarted").
    garbage = f"{owner}-garbage"
    address = server_address(env)
    command = [temporal_binary(), "workflow", "start", "--address", address, "--type"]
    command += [WORKFLOW_TYPE, "--task-queue", f"{queue}-nobody", "--workflow-id", garbage]
    command += ["--input", '"x"', "--search-attribute", f"OwnerThreadId={json.dumps(owner)}"]
    await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True)
    await temporal.get_workflow_handle(garbage).terminate()
    mine = await runs.start(owner, "scripted", "hello", run_id=f"{owner}-mine")
    await runs.wait(owner, mine, timeout=30)
    found = await eventually(lambda: runs.all(owner), lambda found: len(found) == 2)
    assert [(s.run_id, s.status, s.agent_id, s.assistant) for s in found] == [
        (garbage, "stopped", "", None),
        (mine, "completed", "scripted", "hello"),
    ]
    listed = await agentrun_cli(address, queue, owner, "ls")
    assert listed.returncode == 0, listed.stderr
    assert garbage in listed.stdout and "stopped" in listed.stdout
    shown = await agentrun_cli(address, queue, owner, "ls", "--all", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [s["run_id"] for s in json.loads(shown.stdout)] == [garbage, mine]
