"""A run's event stream: live, after close, from an offset, merged with descendants."""

from __future__ import annotations

import asyncio
import json

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient, StreamedEvent
from agentrun._constants import EVENTS_TOPIC
from tests.conftest import server_address
from tests.helpers import agentrun_cli, child, eventually, history_events, run, script


async def collect(runs: AgentRunClient, owner: str, run_id: str, **options) -> list[StreamedEvent]:
    return [event async for event in runs.events(owner, run_id, **options)]


async def test_events_live_equal_events_after_close_and_resume_from_an_offset(
    runs: AgentRunClient, owner: str
):
    run_id = await runs.start(
        owner, "scripted", script({"say": "one two three"}, {"sleep": 0.5}, {"say": "four"})
    )
    live = await asyncio.wait_for(collect(runs, owner, run_id), 20)
    after = await collect(runs, owner, run_id)
    assert live == after
    assert [e.offset for e in after] == list(range(len(after)))
    kinds = [e.event.kind for e in after]
    assert kinds == [
        "run_started",
        *["text_delta"] * 3,
        "message",
        "text_delta",
        "message",
        "finish",
    ]
    assert after[-1].event.summary is not None
    assert after[-1].event.summary.status == "completed"
    assert await collect(runs, owner, run_id, from_offset=4) == after[4:]


async def test_events_with_descendants_merge_every_run_of_the_tree(
    runs: AgentRunClient, owner: str
):
    grandchild = child({"say": "deep"})
    run_id = await runs.start(
        owner,
        "scripted",
        script(
            run("scripted", child(run("scripted", grandchild), {"say": "middle"}), background=True),
            run("scripted", child({"say": "side"})),
            {"say": "top"},
        ),
    )
    merged = await asyncio.wait_for(collect(runs, owner, run_id, descendants=True), 30)
    by_run: dict[str, list[StreamedEvent]] = {}
    for item in merged:
        by_run.setdefault(item.event.run_id, []).append(item)
    assert set(by_run) == {
        run_id,
        f"{run_id}.1-scripted",
        f"{run_id}.1-scripted.1-scripted",
        f"{run_id}.2-scripted",
    }
    for events in by_run.values():
        # Each run's events arrive whole and in order, from its first to its finish.
        assert [e.offset for e in events] == list(range(len(events)))
        assert events[-1].event.kind == "finish"
    said = {
        e.event.run_id: e.event.message.content
        for e in merged
        if e.event.kind == "message" and e.event.message and e.event.message.content
    }
    assert said == {
        run_id: "top",
        f"{run_id}.1-scripted": "middle",
        f"{run_id}.1-scripted.1-scripted": "deep",
        f"{run_id}.2-scripted": "side",
    }
    started = [
        e.event.summary.run_id
        for e in merged
        if e.event.kind == "child_started" and e.event.summary
    ]
    assert sorted(started) == [
        f"{run_id}.1-scripted",
        f"{run_id}.1-scripted.1-scripted",
        f"{run_id}.2-scripted",
    ]


async def test_a_short_turn_sends_no_signal_and_following_writes_no_history(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(owner, "scripted", script({"say": "one two"}))
    followed = await asyncio.wait_for(collect(runs, owner, run_id), 20)
    assert [e.event.kind for e in followed] == [
        "run_started",
        "text_delta",
        "text_delta",
        "message",
        "finish",
    ]
    kinds = [e.event_type for e in await history_events(temporal, run_id)]
    # The turn's events came back in its result, and the follower read by query.
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED not in kinds
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED not in kinds


async def test_a_streaming_turn_sends_its_events_in_batches(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(owner, "scripted", script(*[{"say": f"w{n}"} for n in range(40)]))
    followed = await asyncio.wait_for(collect(runs, owner, run_id), 30)
    assert [e.event.text for e in followed if e.event.kind == "text_delta"] == [
        f"w{n}" for n in range(40)
    ]
    signaled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    signals = [e for e in await history_events(temporal, run_id) if e.event_type == signaled]
    # 40 steps, 80 events, in a few 50 ms batches (or the turn's result): not a signal
    # per step, and no signal per thing said.
    assert len(signals) <= 5


async def test_events_of_a_newer_kind_are_shown_and_unreadable_items_skipped(
    env: WorkflowEnvironment, runs: AgentRunClient, temporal: Client, queue: str, owner: str
):
    """A newer worker may publish kinds this version does not know (issue #18, finding 7)."""
    run_id = await runs.start(owner, "scripted", script({"say": "before"}, {"sleep": 60}))
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant)
    stream = WorkflowStreamClient.create(temporal, run_id)
    topic = stream.topic(EVENTS_TOPIC)
    topic.publish({"run_id": run_id, "epoch": 1, "kind": "thinking", "text": "pondering"})
    topic.publish({"run_id": run_id, "epoch": 1, "kind": "message", "message": {"role": 7}})
    await stream.flush()
    # Items that are no event at all: the run drops their batch (tests/test_poison.py).
    topic.publish(Payload(metadata={"encoding": b"json/plain"}, data=b"{not json"))
    topic.publish(Payload(metadata={"encoding": b"binary/plain"}, data=b"\xff\x00"))
    await stream.flush()
    await runs.stop_tree(owner, run_id)
    followed = await asyncio.wait_for(collect(runs, owner, run_id), 20)
    kinds = [(e.event.kind, e.event.text) for e in followed]
    assert ("thinking", "pondering") in kinds
    assert ("message", None) in kinds  # a known kind whose fields do not validate
    assert kinds[-1][0] == "finish"  # the follower went on past what it could not read
    offsets = [e.offset for e in followed]
    assert offsets == sorted(offsets) and len(offsets) == len(set(offsets))
    address = server_address(env)
    watched = await agentrun_cli(address, queue, owner, "watch", run_id)
    assert watched.returncode == 0, watched.stderr
    assert "Traceback" not in watched.stdout + watched.stderr
    line = next(line for line in watched.stdout.splitlines() if "pondering" in line)
    assert "<thinking>" in line
    as_json = await agentrun_cli(address, queue, owner, "watch", run_id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    events = [json.loads(line)["event"] for line in as_json.stdout.splitlines()]
    assert {"run_id": run_id, "epoch": 1, "kind": "thinking", "text": "pondering"} in [
        {k: v for k, v in e.items() if k in ("run_id", "epoch", "kind", "text")} for e in events
    ]
