"""A root run's ID says which agent it runs, within Temporal's limits."""

from __future__ import annotations

import re

from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient
from tests.helpers import run, script


async def test_a_root_run_id_carries_its_agent(env: WorkflowEnvironment, queue: str, owner: str):
    runs = AgentRunClient(env.client, queue)  # no worker: starting needs none
    agents = {"planner": "planner", "web search.v2/é": "web-search-v2", "x" * 200: "x" * 40}
    for agent, carried in agents.items():
        run_id = await runs.start(owner, agent, "hi")
        try:
            assert re.fullmatch(rf"run-[0-9a-f]{{12}}-{carried}", run_id), run_id
        finally:
            await env.client.get_workflow_handle(run_id).terminate("test done")


async def test_a_child_run_id_carries_its_agent_and_its_number_in_call_order(
    runs: AgentRunClient, owner: str
):
    # One scripted turn per call; the model case is in tests/test_usage.py (two at once).
    root = await runs.start(
        owner, "planner", script(run("helper", "one"), run("scripted", "two"), {"say": "done"})
    )
    await runs.wait(owner, root, timeout=60)
    listed = await runs.subtree(owner, root)
    assert sorted(r.summary.run_id for r in listed) == [
        root,
        f"{root}.1-helper",
        f"{root}.2-scripted",
    ]
