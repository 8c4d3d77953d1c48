"""A worker killed mid-step loses nothing: the turn resumes from its checkpoint."""

from __future__ import annotations

import asyncio
import signal
import subprocess

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient, StreamedEvent
from agentrun._constants import DELEGATION_STATUS
from tests.conftest import server_address
from tests.helpers import eventually, history_events, script, spawn_worker


async def collect(runs: AgentRunClient, owner: str, run_id: str) -> list[StreamedEvent]:
    return [event async for event in runs.events(owner, run_id)]


async def latest_text(runs: AgentRunClient, owner: str, run_id: str) -> str | None:
    """The run's latest text, or None while the server turns its query away.

    On a loaded machine the run's workflow task can be in flight while the stream's
    follower and this poll both ask: the server then refuses a query ("consistent
    query buffer is full") that a moment later it answers.
    """
    try:
        summary = await runs.summary(owner, run_id)
    except RPCError as err:
        if err.status != RPCStatusCode.RESOURCE_EXHAUSTED:
            raise
        return None
    return summary.assistant if summary else None


async def test_sigkill_of_worker_mid_step_resumes_from_checkpoint_without_duplicates(
    env: WorkflowEnvironment,
    temporal: Client,
    queue: str,
    owner: str,
    processes: list[subprocess.Popen[bytes]],
):
    runs = AgentRunClient(temporal, queue)
    processes.append(spawn_worker(server_address(env), queue))
    # The second sleep is long enough that a loaded machine still sees "gamma" in time to
    # kill the worker inside it.
    nap = 8
    steps = ({"say": "alpha beta"}, {"sleep": 1}, {"say": "gamma"}, {"sleep": nap})
    run_id = await runs.start(owner, "scripted", script(*steps, {"say": "delta"}))
    live = asyncio.create_task(collect(runs, owner, run_id))
    await eventually(lambda: latest_text(runs, owner, run_id), lambda text: text == "gamma")
    await asyncio.sleep(1.5)  # well into the second sleep, past several checkpoints
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait()

    processes.append(spawn_worker(server_address(env), queue))
    summary = await runs.wait(owner, run_id, timeout=60)
    assert (summary.status, summary.assistant) == ("completed", "delta")
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    assert [m.content for m in thread if m.role == "assistant"] == ["alpha beta", "gamma", "delta"]

    # The retry started from the checkpoint inside the second sleep, not from scratch:
    # from scratch it would sleep both sleeps again, 1 + nap seconds.
    events = await history_events(temporal, run_id)
    started = next(e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    completed = next(
        e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    )
    assert started.activity_task_started_event_attributes.attempt == 2
    retry_took = completed.event_time.ToDatetime() - started.event_time.ToDatetime()
    assert retry_took.total_seconds() < 1 + nap

    # The stream, live and after the close, is the same, gap-free and duplicate-free.
    streamed = await asyncio.wait_for(live, 10)
    replayed = await collect(runs, owner, run_id)
    assert streamed == replayed
    assert [e.offset for e in replayed] == list(range(len(replayed)))
    turn_events = [(e.event.epoch, e.event.turn, e.event.seq) for e in replayed if e.event.seq >= 0]
    assert len(turn_events) == len(set(turn_events))
    said = [
        e.event.message.content for e in replayed if e.event.message and e.event.kind == "message"
    ]
    assert said == ["alpha beta", "gamma", "delta"]
    deltas = "".join(e.event.text or "" for e in replayed if e.event.kind == "text_delta")
    assert deltas == "alpha betagammadelta"
    assert (replayed[0].event.kind, replayed[-1].event.kind) == ("run_started", "finish")


async def test_sigterm_shuts_the_worker_down_gracefully(
    env: WorkflowEnvironment,
    temporal: Client,
    queue: str,
    owner: str,
    processes: list[subprocess.Popen[bytes]],
):
    runs = AgentRunClient(temporal, queue)
    processes.append(spawn_worker(server_address(env), queue))
    run_id = await runs.start(
        owner, "scripted", script({"say": "before"}, {"sleep": 3}, {"say": "after"})
    )
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant == "before")
    processes[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(processes[0].wait, 15) == 0
    # Handed over, not failed or stopped (describe needs no worker, unlike a query).
    description = await temporal.get_workflow_handle(run_id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.typed_search_attributes.get(DELEGATION_STATUS) == "running"

    processes.append(spawn_worker(server_address(env), queue))
    final = await runs.wait(owner, run_id, timeout=60)
    assert (final.status, final.assistant) == ("completed", "after")
