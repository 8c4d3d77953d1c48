"""One owner's runs cannot take every turn slot of a shared worker (issue #18).

The attack: one owner starts as many sleeping runs as the worker has turn slots;
another owner's one-word run must still get a turn while they sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, AgentRunPlugin, AgentRunSettings
from tests.conftest import registry_for_tests
from tests.helpers import eventually, script

SLOTS = 8
SETTINGS = AgentRunSettings(max_concurrent_turns=SLOTS)


@pytest.fixture
async def small_worker(env: WorkflowEnvironment, queue: str) -> AsyncIterator[AgentRunClient]:
    """A worker of 8 turn slots, each owner allowed its default share of them."""
    plugin = AgentRunPlugin(SETTINGS, agents=registry_for_tests())
    client = Client(env.client.service_client, namespace=env.client.namespace, plugins=[plugin])
    async with Worker(client, task_queue=queue):
        yield AgentRunClient(env.client, queue)


async def test_one_owners_sleeping_runs_leave_turns_for_another_owner(
    small_worker: AgentRunClient, owner: str
):
    runs = small_worker
    sleeper = script({"say": "asleep"}, {"sleep": 600})
    hogs = [await runs.start(owner, "scripted", sleeper) for _ in range(SLOTS)]
    try:
        # The hog holds every slot it may: its share (half of them), all without a cap.
        await eventually(
            lambda: runs.all(owner),
            lambda found: sum(s.assistant == "asleep" for s in found) == SETTINGS.owner_turn_cap,
            timeout=120,
        )
        other = f"{owner}-other"
        quick = await runs.start(other, "scripted", "one word")
        done = await runs.wait(other, quick, timeout=60)
        assert (done.status, done.assistant) == ("completed", "one word")
        asleep = await runs.all(owner)
        assert [s.status for s in asleep] == ["running"] * SLOTS
    finally:
        for hog in hogs:
            await runs.stop_tree(owner, hog)
