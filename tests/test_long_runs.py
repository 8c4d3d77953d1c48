"""Long runs continue as new and stay one run: id, summary, children and events."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from agentrun import AgentRunClient
from agentrun._models import AgentRunInput
from tests.helpers import child, eventually, history_events, run, script, tool
from tests.properties import STRESS

# 150 turns of over 2 KB of events each go where thousands of small ones would: a dozen
# continues-as-new, a thread too long to carry inline (read by query), and a stream longer
# than a continued run carries (its oldest events dropped). `make stress` runs 600;
# AGENTRUN_LONG_RUN_TURNS=5000 runs the full-size check.
LONG_RUN_TURNS = int(os.environ.get("AGENTRUN_LONG_RUN_TURNS", "600" if STRESS else "150"))
# An unknown run's id: the agent_output call and its error result both carry it. About
# 150 KB over the whole script, whatever the turns (1 KB each at 150).
NO_SUCH_RUN = "none-" + "x" * (150_000 // LONG_RUN_TURNS)


async def start(runs: AgentRunClient, run_id: str, prompt: str, **tuning: Any) -> None:
    owner = run_id.split("/")[0]
    await runs._start(
        run_id, AgentRunInput(owner_thread_id=owner, agent_id="scripted", prompt=prompt, **tuning)
    )


@pytest.mark.timeout(max(120, LONG_RUN_TURNS // 3))
async def test_a_run_of_thousands_of_turns_continues_as_new_and_completes(
    runs: AgentRunClient, temporal: Client, owner: str
):
    turns = LONG_RUN_TURNS
    steps = [tool("agent_output", run_id=NO_SUCH_RUN)] * (turns - 1) + [{"say": "all done"}]
    run_id = f"{owner}/long"
    followed = asyncio.create_task(_follow(runs, owner, run_id))
    started = time.monotonic()
    await start(runs, run_id, script(*steps), continue_as_new_after=turns // 12)
    summary = await runs.wait(owner, run_id, timeout=max(300, turns / 4))
    elapsed = time.monotonic() - started
    assert (summary.status, summary.assistant) == ("completed", "all done")
    thread = await runs.thread(owner, run_id)
    assert thread is not None and len(thread) == 1 + 2 * (turns - 1) + 1
    assert NO_SUCH_RUN in thread[-2].content
    executions = [e async for e in temporal.list_workflows(f"WorkflowId = '{run_id}'")]
    assert sum(e.status == WorkflowExecutionStatus.CONTINUED_AS_NEW for e in executions) >= 10
    # Offsets continue across every continue-as-new; the newest events are retained.
    events = [e async for e in runs.events(owner, run_id)]
    offsets = [e.offset for e in events]
    assert offsets[0] > 0  # the oldest were not carried
    assert offsets == list(range(offsets[0], offsets[0] + len(events)))
    assert events[-1].event.kind == "finish"
    assert offsets[-1] >= 3 * (turns - 1)  # every turn's events were numbered once
    # A follower that was there from the start saw every event exactly once.
    live = await asyncio.wait_for(followed, 30)
    assert [e.offset for e in live] == list(range(len(live)))
    assert [e.event.kind for e in live].count("run_started") == 1
    assert [e.event.kind for e in live].count("tool_result") == turns - 1
    print(f"\n{turns} turns in {elapsed:.1f} s ({turns / elapsed:.0f} turns/s), from {offsets[0]}")


async def _follow(runs: AgentRunClient, owner: str, run_id: str) -> list[Any]:
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s is not None)
    return [e async for e in runs.events(owner, run_id)]


async def test_children_and_stop_carry_across_continue_as_new(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = f"{owner}/tree"
    steps = [
        run("scripted", "first child"),
        *[tool("agent_output", run_id="$1")] * 6,
        run("scripted", child({"sleep": 60}), background=True),
        *[tool("agent_output", run_id="$1")] * 2,
        {"sleep": 60},
    ]
    await start(runs, run_id, script(*steps), continue_as_new_after=3)
    await eventually(lambda: runs.summary(owner, f"{run_id}.2-scripted"), lambda s: s is not None)
    children = await temporal.get_workflow_handle(run_id).query("children")
    assert [(c["run_id"], c["status"]) for c in children] == [
        (f"{run_id}.1-scripted", "completed"),
        (f"{run_id}.2-scripted", "running"),
    ]
    stopped = await runs.stop_tree(owner, run_id)
    assert [(s.run_id, s.status) for s in stopped] == [
        (run_id, "stopped"),
        (f"{run_id}.1-scripted", "completed"),
        (f"{run_id}.2-scripted", "stopped"),
    ]
    description = await temporal.get_workflow_handle(f"{run_id}.2-scripted").describe()
    assert description.parent_id == run_id


async def test_a_long_thread_is_read_by_query_not_carried_in_history(
    runs: AgentRunClient, temporal: Client, owner: str
):
    big = "x" * 40_000  # over the inline limit
    steps = [{"say": big}, tool("agent_output", run_id="z"), {"say": "end"}]
    run_id = await runs.start(owner, "scripted", script(*steps))
    summary = await runs.wait(owner, run_id, timeout=30)
    assert summary.assistant == "end"
    thread = await runs.thread(owner, run_id)
    assert thread is not None and thread[1].content == big
    inputs = [
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
        for e in await history_events(temporal, run_id)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    turns = [i for i in inputs if "turn" in i]
    assert len(turns) == 2
    assert all(t["thread_by_query"] and t["messages"] == [] for t in turns)


async def test_a_turn_longer_than_its_attempts_completes_from_checkpoints(
    runs: AgentRunClient, temporal: Client, owner: str
):
    # The stand-in for a run that lasts days: every attempt of the turn runs out (2 s)
    # long before its 5 s sleep ends. Started over each time it would never finish.
    run_id = f"{owner}/patient"
    await start(runs, run_id, script({"sleep": 5}, {"say": "rested"}), turn_timeout=2)
    summary = await runs.wait(owner, run_id, timeout=60)
    assert (summary.status, summary.assistant) == ("completed", "rested")
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in await history_events(temporal, run_id)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert started and started[0] >= 3
