"""Streaming pays for latency only while someone follows (docs/design.md, "Streaming").

A turn sends its events in fast batches while a follower polls the run's stream, and
in slow ones while nobody does: each batch is a signal, four history events. Either
way the stream holds the same events, in order, for whoever reads it later.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentrun import AgentRunClient
from tests.helpers import history_events, script

WORDS = [item for n in range(60) for item in ({"say": f"word {n}"}, {"sleep": 0.03})]


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
