"""One owner's runs cannot take every turn slot of a shared worker (issue #18).

The attack: one owner starts as many sleeping runs as the worker has turn slots;
another owner's one-word run must still get a turn while they sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, AgentRunPlugin, AgentRunSettings
from agentrun._agents._scripted import MAX_SCRIPT_STEPS
from tests.conftest import registry_for_tests
from tests.helpers import eventually, history_events, script

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


async def test_a_turn_of_steps_that_await_nothing_still_lets_the_worker_breathe(
    runs: AgentRunClient, temporal: Client, owner: str
):
    """The longest script allowed, all ``say``: the worker's event loop (shared here
    with the test) keeps running other work while the turn takes its steps."""
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.time())
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    try:
        steps = [{"say": f"line {n}"} for n in range(MAX_SCRIPT_STEPS)]
        run_id = await runs.start(owner, "scripted", script(*steps))
        final = await runs.wait(owner, run_id, timeout=240)
    finally:
        ticker.cancel()
    assert final.assistant == f"line {MAX_SCRIPT_STEPS - 1}"
    started, ended = await turn_span(temporal, run_id)
    # The middle half of the turn, away from its start and its end (which await).
    quarter = (ended - started) / 4
    during = [t for t in ticks if started + quarter < t < ended - quarter]
    assert len(during) >= 5, f"{len(during)} ticks in a turn of {ended - started:.2f} s"


async def turn_span(temporal: Client, run_id: str) -> tuple[float, float]:
    """When the run's (only) turn attempt started and completed, by the server's clock."""
    events = await history_events(temporal, run_id)
    started = next(e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    completed = next(
        e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    )
    return (
        started.event_time.ToDatetime().timestamp(),
        completed.event_time.ToDatetime().timestamp(),
    )
