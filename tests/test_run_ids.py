"""A root run's ID says which agent it runs, within Temporal's limits."""

from __future__ import annotations

import re

from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient


async def test_a_root_run_id_carries_its_agent(env: WorkflowEnvironment, queue: str, owner: str):
    runs = AgentRunClient(env.client, queue)  # no worker: starting needs none
    agents = {"planner": "planner", "web search.v2/é": "web-search-v2", "x" * 200: "x" * 40}
    for agent, carried in agents.items():
        run_id = await runs.start(owner, agent, "hi")
        try:
            assert re.fullmatch(rf"run-[0-9a-f]{{12}}-{carried}", run_id), run_id
        finally:
            await env.client.get_workflow_handle(run_id).terminate("test done")
