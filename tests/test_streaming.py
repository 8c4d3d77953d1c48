"""Streaming pays for latency only while someone follows (docs/design.md, "Streaming").

A turn sends its events in fast batches while a follower polls the run's stream, and
in slow ones while nobody does: each batch is a signal, four history events. Either
way the stream holds the same events, in order, for whoever reads it later.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, AgentRunPlugin, connect
from agentrun import _observability as observability
from agentrun._follow import FOLLOW_HEDGE_AFTER, _hedged
from agentrun._server import free_ports
from tests.conftest import registry_for_tests, server_address
from tests.helpers import history_events, script

WORDS = [item for n in range(60) for item in ({"say": f"word {n}"}, {"sleep": 0.03})]
# A turn that streams for some sixteen seconds: a word every 0.2 s.
SLOW_WORDS = [item for n in range(80) for item in ({"say": f"word {n}"}, {"sleep": 0.2})]
# The worker's requests that ask a run something (its turns' ``stream_polls``).
QUERIES = 'temporal_request{namespace="default",operation="QueryWorkflow"'


async def signals(temporal: Client, run_id: str) -> int:
    events = await history_events(temporal, run_id)
    return sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED for e in events)


async def stream_of(runs: AgentRunClient, owner: str, run_id: str) -> list[tuple[Any, ...]]:
    """The run's events as a later reader gets them, without what names the run."""
    seen = []
    async for item in runs.events(owner, run_id):
        event = item.event
        content = event.message.content if event.message else None
        seen.append((item.offset, event.kind, event.turn, event.seq, event.text, content))
    return seen


async def test_a_run_nobody_follows_streams_the_same_events_for_less_history(
    runs: AgentRunClient, temporal: Client, owner: str
):
    followed = await runs.start(owner, "scripted", script(*WORDS))
    live = [item.offset async for item in runs.events(owner, followed)]
    unwatched = await runs.start(owner, "scripted", script(*WORDS))
    await runs.wait(owner, unwatched, timeout=60)

    assert live == list(range(len(live)))
    later = await stream_of(runs, owner, followed)
    assert [item[0] for item in later] == live
    assert await stream_of(runs, owner, unwatched) == later
    watched_signals, unwatched_signals = await asyncio.gather(
        signals(temporal, followed), signals(temporal, unwatched)
    )
    assert unwatched_signals * 2 <= watched_signals, (unwatched_signals, watched_signals)


def queries_sent(metrics_address: str) -> float:
    """Queries the worker's own client has sent (its Prometheus endpoint)."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if QUERIES in line)


async def test_a_turn_nobody_follows_asks_ever_less_often_whether_anyone_does(
    env: WorkflowEnvironment, queue: str, owner: str
):
    # The worker's runtime counts what its client sends; the runs are started and
    # awaited through another client, so only the turns' own queries are counted.
    (port,) = free_ports(1)
    metrics = f"127.0.0.1:{port}"
    served = await connect(
        server_address(env),
        plugin=AgentRunPlugin(agents=registry_for_tests()),
        runtime=observability.metrics_runtime(metrics),
    )
    runs = AgentRunClient(env.client, queue)
    async with Worker(served, task_queue=queue):
        run_id = await runs.start(owner, "scripted", script(*SLOW_WORDS))
        await runs.wait(owner, run_id, timeout=120)
        asked = await asyncio.to_thread(queries_sent, metrics)

    # Sixteen seconds of events to send: asked every second, that is some sixteen
    # queries; backing off to one every four seconds, seven.
    assert 1 <= asked <= 10, asked
    assert await signals(env.client, run_id) <= 30  # unwatched: a batch a second


async def test_a_follower_who_comes_late_still_gets_fast_batches(
    runs: AgentRunClient, temporal: Client, owner: str
):
    late = await runs.start(owner, "scripted", script(*SLOW_WORDS))
    unwatched = await runs.start(owner, "scripted", script(*SLOW_WORDS))
    await asyncio.sleep(6)  # long enough for the turn to ask less often
    followed = [item.offset async for item in runs.events(owner, late)]
    await runs.wait(owner, unwatched, timeout=120)

    assert followed == list(range(len(followed)))
    late_signals, unwatched_signals = await asyncio.gather(
        signals(temporal, late), signals(temporal, unwatched)
    )
    # Ten seconds followed at a batch per word (five a second), against one a second.
    assert unwatched_signals * 2 <= late_signals, (unwatched_signals, late_signals)


async def turn_inputs(temporal: Client, run_id: str) -> list[dict[str, Any]]:
    """The inputs of the run's turns, as its history holds them."""
    inputs = [
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
        for e in await history_events(temporal, run_id)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    return [i for i in inputs if "turn" in i]


async def test_a_run_started_followed_streams_fast_from_its_first_event_until_nobody_polls(
    runs: AgentRunClient, temporal: Client, owner: str
):
    followed = await runs.start(owner, "scripted", script(*WORDS), follow=True)
    live = [item.offset async for item in runs.events(owner, followed)]
    claimed = await runs.start(owner, "scripted", script(*SLOW_WORDS), follow=True)
    plain = await runs.start(owner, "scripted", script(*WORDS))
    await runs.wait(owner, claimed, timeout=120)

    assert live == list(range(len(live))) and live
    assert [t["followed"] for t in await turn_inputs(temporal, followed)] == [True]
    assert [t.get("followed") for t in await turn_inputs(temporal, plain)] == [False]
    # Said so but never followed: fast batches only until two answers saw no poll, a
    # second or two; then one a second, as if unwatched (the test above: <= 30).
    assert await signals(temporal, claimed) <= 35


async def test_a_poll_not_answered_soon_is_sent_again_and_the_first_answer_taken():
    # Hedged polls (agentrun._follow): asyncio alone, no server; the answers are stand-ins.
    sent: list[asyncio.Future[str]] = []

    async def poll() -> str:
        sent.append(asyncio.get_running_loop().create_future())
        return await sent[-1]

    hedged = asyncio.ensure_future(_hedged(poll))
    await asyncio.sleep(FOLLOW_HEDGE_AFTER * 2)
    assert len(sent) == 2
    sent[1].set_result("second")
    assert await hedged == "second"
    await asyncio.sleep(0)
    assert sent[0].cancelled()  # the slow one is given up

    sent.clear()
    hedged = asyncio.ensure_future(_hedged(poll))
    await asyncio.sleep(FOLLOW_HEDGE_AFTER * 2)
    sent[0].set_exception(RuntimeError("busy"))  # a failure waits for the other answer
    await asyncio.sleep(0)
    assert not hedged.done()
    sent[1].set_result("second")
    assert await hedged == "second"

    sent.clear()
    quick = asyncio.ensure_future(_hedged(poll))
    while not sent:
        await asyncio.sleep(0)
    sent[0].set_result("first")
    assert await quick == "first" and len(sent) == 1  # answered in time: sent once
