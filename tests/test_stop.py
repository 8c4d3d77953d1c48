"""Stopping runs and trees (docs/delegation.md sections 2, 3 and 6)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    DescribeWorkflowInput,
    FetchWorkflowHistoryEventsInput,
    Interceptor,
    OutboundInterceptor,
    QueryWorkflowInput,
    WorkflowExecutionStatus,
)
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from agentrun import AgentRunClient, AgentRunPlugin, DelegationError
from agentrun._constants import CASCADE_FALLBACK, DELEGATION_STATUS, STOP_TREE_REASON
from agentrun._models import AgentRunInput
from agentrun._stopping import levels
from tests.helpers import child, eventually, run, script, tool, tool_results, turn_results

LONG = {"sleep": 60}


async def three_level_tree(runs: AgentRunClient, owner: str) -> str:
    grandchild = child({"say": "grandchild working"}, LONG)
    middle = child(run("scripted", grandchild, background=True), LONG)
    root = await runs.start(
        owner, "scripted", script(run("scripted", middle, background=True), LONG)
    )
    await eventually(
        lambda: runs.summary(owner, f"{root}.1-scripted.1-scripted"),
        lambda s: s is not None and s.assistant == "grandchild working",
    )
    return root


async def test_stop_tree_stops_parent_child_and_grandchild(runs: AgentRunClient, owner: str):
    root = await three_level_tree(runs, owner)
    stopped = await runs.stop_tree(owner, root)
    assert [(s.run_id, s.status) for s in stopped] == [
        (root, "stopped"),
        (f"{root}.1-scripted", "stopped"),
        (f"{root}.1-scripted.1-scripted", "stopped"),
    ]
    assert stopped[2].assistant == "grandchild working"


async def _kinds(temporal: Client, run_id: str) -> list[str]:
    """The run's history, as event kinds (``request_cancel_external_…``)."""
    history = await temporal.get_workflow_handle(run_id).fetch_history()
    names = (EventType.Name(event.event_type) for event in history.events)
    return [name.removeprefix("EVENT_TYPE_").lower() for name in names]


async def _cancel_reason(temporal: Client, run_id: str) -> str:
    history = await temporal.get_workflow_handle(run_id).fetch_history()
    requested = [
        event.workflow_execution_cancel_requested_event_attributes.cause
        for event in history.events
        if event.HasField("workflow_execution_cancel_requested_event_attributes")
    ]
    return requested[0]


async def test_a_run_stopped_by_stop_tree_cancels_no_child_itself(
    runs: AgentRunClient, temporal: Client, owner: str
):
    root = await three_level_tree(runs, owner)
    stopped = await runs.stop_tree(owner, root)
    assert [s.status for s in stopped] == ["stopped"] * 3
    for summary in stopped:
        # Each cancel says who sent it (the Web UI and `temporal workflow show` show it),
        # and the stop_tree caller cancelled every run: none sent its children another.
        assert await _cancel_reason(temporal, summary.run_id) == STOP_TREE_REASON
        kinds = await _kinds(temporal, summary.run_id)
        assert "request_cancel_external_workflow_execution_initiated" not in kinds, kinds
        assert kinds[-1] == "workflow_execution_canceled"


async def test_a_run_told_its_stopper_cancels_the_subtree_cancels_what_is_left_running(
    runs: AgentRunClient, temporal: Client, owner: str
):
    # A stop_tree caller that died right after cancelling the top: its children are
    # cancelled by the run itself, once ``CASCADE_FALLBACK`` has passed.
    root = await three_level_tree(runs, owner)
    await temporal.get_workflow_handle(root).cancel(reason=STOP_TREE_REASON)
    fallback = CASCADE_FALLBACK.total_seconds()
    for run_id in [root, f"{root}.1-scripted", f"{root}.1-scripted.1-scripted"]:
        handle = temporal.get_workflow_handle(run_id)
        description = await eventually(
            handle.describe,
            lambda d: d.status != WorkflowExecutionStatus.RUNNING,
            timeout=fallback + 60,
            every=0.5,
        )
        assert description.status == WorkflowExecutionStatus.CANCELED
        assert description.typed_search_attributes.get(DELEGATION_STATUS) == "stopped"
    kinds = await _kinds(temporal, root)
    waited = kinds.index("timer_fired")
    assert kinds.index("request_cancel_external_workflow_execution_initiated") > waited, kinds
    # Its child had the root's cancel, no reason: it cancelled its own child at once.
    middle = await _kinds(temporal, f"{root}.1-scripted")
    assert "timer_fired" not in middle, middle
    assert "request_cancel_external_workflow_execution_initiated" in middle, middle


class _Reads(Interceptor):
    """Counts what a client asks of single runs: queries, describes, history reads."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        calls = self.calls

        class Counting(OutboundInterceptor):
            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                calls["query"] += 1
                return await super().query_workflow(input)

            async def describe_workflow(self, input: DescribeWorkflowInput) -> Any:
                calls["describe"] += 1
                return await super().describe_workflow(input)

            def fetch_workflow_history_events(self, input: FetchWorkflowHistoryEventsInput) -> Any:
                calls["history"] += 1
                return super().fetch_workflow_history_events(input)

        return Counting(next)


async def test_stop_tree_reads_no_run_while_it_stops_and_returns_each_text(
    runs: AgentRunClient, temporal: Client, owner: str
):
    root = await three_level_tree(runs, owner)
    reads = _Reads()
    counted = Client(
        temporal.service_client,
        namespace=temporal.namespace,
        plugins=[AgentRunPlugin()],
        interceptors=[reads],
    )
    watched = AgentRunClient(counted, runs.task_queue)
    stopped = await watched.stop_tree(owner, root)
    assert [s.status for s in stopped] == ["stopped"] * 3
    assert stopped[2].assistant == "grandchild working"
    # The root's describe (whose run it is) and its result: no read of any other run.
    assert reads.calls["query"] == 0, reads.calls
    assert reads.calls["describe"] == 1, reads.calls
    assert reads.calls["history"] <= 1, reads.calls


async def test_stop_tree_leaves_another_owners_run_under_the_same_parent(
    runs: AgentRunClient, temporal: Client, owner: str
):
    root = await three_level_tree(runs, owner)
    foreign = AgentRunInput(
        owner_thread_id="someone-else", agent_id="scripted", prompt=script(LONG), parent_run_id=root
    )
    await runs._start(f"{root}.foreign", foreign)
    with pytest.raises(DelegationError, match=f"^Unknown run_id: {root}$"):
        await runs.stop_tree("someone-else", root)
    await runs.stop_tree(owner, root)
    other = await runs.summary("someone-else", f"{root}.foreign")
    assert other is not None and other.status == "running"
    await runs.stop_tree("someone-else", f"{root}.foreign")


async def test_second_stop_and_stop_of_completed_are_not_running(runs: AgentRunClient, owner: str):
    run_id = await runs.start(owner, "scripted", script(LONG))
    await runs.stop_tree(owner, run_id)
    with pytest.raises(DelegationError) as second:
        await runs.stop_tree(owner, run_id)
    assert str(second.value) == f"Run '{run_id}' is not running (current status: stopped)"
    done = await runs.start(owner, "scripted", "hi")
    await runs.wait(owner, done, timeout=20)
    with pytest.raises(DelegationError) as completed:
        await runs.stop_tree(owner, done)
    assert str(completed.value) == f"Run '{done}' is not running (current status: completed)"


async def test_stop_of_unknown_run(runs: AgentRunClient, owner: str):
    with pytest.raises(DelegationError) as unknown:
        await runs.stop_tree(owner, "run-that-never-was")
    assert str(unknown.value) == "Unknown run_id: run-that-never-was"


async def test_ten_start_at_once_and_five_stop_at_once(runs: AgentRunClient, owner: str):
    run_ids = await asyncio.gather(
        *(runs.start(owner, "scripted", script(LONG), run_id=f"{owner}-{i:02}") for i in range(10))
    )
    summaries = [await runs.summary(owner, r) for r in run_ids]
    assert all(s is not None and s.epoch == 1 and s.status == "running" for s in summaries)
    listed = await eventually(
        lambda: runs.running_or_stopped(owner), lambda found: len(found) == 10
    )
    assert [s.run_id for s in listed] == sorted(run_ids)
    assert {s.status for s in listed} == {"running"}
    await asyncio.gather(*(runs.stop_tree(owner, r) for r in run_ids[:5]))
    after = await runs.running_or_stopped(owner)
    assert [s.status for s in after] == ["stopped"] * 5 + ["running"] * 5
    await asyncio.gather(*(runs.stop_tree(owner, r) for r in run_ids[5:]))


async def test_stop_right_after_start_stays_stopped(runs: AgentRunClient, owner: str):
    run_id = await runs.start(owner, "scripted", script({"sleep": 0.5}, {"say": "finished"}))
    await runs.stop_tree(owner, run_id)
    await asyncio.sleep(1.5)
    summary = await runs.summary(owner, run_id)
    assert summary is not None and summary.status == "stopped"
    assert summary.assistant is None


async def test_cancellation_wins_over_a_completed_agent(runs: AgentRunClient, owner: str):
    # The agent has answered; the run waits for its background child when stopped.
    run_id = await runs.start(
        owner, "scripted", script(run("scripted", child(LONG), background=True), {"say": "answer"})
    )
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant == "answer")
    await runs.stop_tree(owner, run_id)
    summary = await runs.summary(owner, run_id)
    assert summary is not None and summary.status == "stopped" and summary.assistant == "answer"


async def test_a_plain_cancel_of_the_root_stops_a_three_level_tree(
    runs: AgentRunClient, temporal: Client, owner: str
):
    """Any Temporal client's cancel of the root, with no agentrun code: Temporal carries
    it down the tree (how fast is the stop benchmark's to say, BENCHMARKS.md)."""
    root = await three_level_tree(runs, owner)
    tree = [root, f"{root}.1-scripted", f"{root}.1-scripted.1-scripted"]
    await temporal.get_workflow_handle(root).cancel()
    for run_id in tree:
        handle = temporal.get_workflow_handle(run_id)
        description = await eventually(
            handle.describe, lambda d: d.status != WorkflowExecutionStatus.RUNNING, timeout=60
        )
        assert description.status == WorkflowExecutionStatus.CANCELED
        assert description.typed_search_attributes.get(DELEGATION_STATUS) == "stopped"
    for run_id in tree:
        # Each run's sleeping turn saw the cancel and handed back its partial turn.
        assert (await turn_results(temporal, run_id))[-1]["stopped"] is True


async def test_stopping_a_middle_run_leaves_parent_and_siblings_running(
    runs: AgentRunClient, owner: str
):
    middle = child(run("scripted", child(LONG), background=True), LONG)
    root = await runs.start(
        owner,
        "scripted",
        script(
            run("scripted", middle, background=True),
            run("scripted", child(LONG), background=True),
            LONG,
        ),
    )
    await eventually(
        lambda: runs.summary(owner, f"{root}.1-scripted.1-scripted"), lambda s: s is not None
    )
    await eventually(lambda: runs.summary(owner, f"{root}.2-scripted"), lambda s: s is not None)
    stopped = await runs.stop_tree(owner, f"{root}.1-scripted")
    assert [(s.run_id, s.status) for s in stopped] == [
        (f"{root}.1-scripted", "stopped"),
        (f"{root}.1-scripted.1-scripted", "stopped"),
    ]
    for run_id in (root, f"{root}.2-scripted"):
        summary = await runs.summary(owner, run_id)
        assert summary is not None and summary.status == "running"
    children = await eventually(
        lambda: runs.temporal.get_workflow_handle(root).query("children"),
        lambda found: [c["status"] for c in found] == ["stopped", "running"],
    )
    assert len(children) == 2
    await runs.stop_tree(owner, root)


async def test_a_child_stopped_with_its_parent_tells_its_text_after_the_parent_resumes(
    runs: AgentRunClient, owner: str
):
    worker = child({"say": "child text"}, LONG)
    root = await runs.start(
        owner, "scripted", script(run("scripted", worker, background=True), LONG)
    )
    await eventually(
        lambda: runs.summary(owner, f"{root}.1-scripted"),
        lambda s: s and s.assistant == "child text",
    )
    await runs.stop_tree(owner, root)
    await runs.resume(owner, root, script(tool("agent_output", run_id=f"{root}.1-scripted")))
    final = await runs.wait(owner, root, timeout=60)
    assert final.status == "completed"
    [output] = tool_results(await runs.thread(owner, root))[-1:]
    assert (output["status"], output["output"]) == ("stopped", "child text")


def test_stop_tree_cancels_a_level_only_after_the_level_above():
    # Depth first below the stopped run; a run whose parent closed is stopped with the
    # first level, as that parent cancels nothing any more.
    below = [("r.1", "r"), ("r.1.1", "r.1"), ("r.1.1.1", "r.1.1"), ("r.2", "r"), ("r.3.1", "r.3")]
    assert levels("r", below) == [["r.1", "r.2", "r.3.1"], ["r.1.1"], ["r.1.1.1"]]
    assert levels("r", []) == []


async def test_a_worker_polls_its_sticky_queue_twenty_ways_unless_its_owner_chose(
    temporal: Client,
):
    # Four sticky polls (the SDK's) took a stop's burst of tasks too slowly: those that
    # waited past the sticky timeout were replayed from the start (BENCHMARKS.md, stop).
    served = Client(
        temporal.service_client, namespace=temporal.namespace, plugins=[AgentRunPlugin()]
    )
    ours = Worker(served, task_queue="polls-ours").config(active_config=True)
    polls = ours["workflow_task_poller_behavior"]
    assert polls == PollerBehaviorSimpleMaximum(maximum=20)
    assert round(polls.maximum * ours["nonsticky_to_sticky_poll_ratio"]) == 1  # new runs
    chosen = PollerBehaviorSimpleMaximum(maximum=8)
    theirs = Worker(served, task_queue="polls-theirs", workflow_task_poller_behavior=chosen)
    assert theirs.config(active_config=True)["workflow_task_poller_behavior"] == chosen


async def test_stop_tree_returns_the_final_text_of_a_child_resumed_after_its_parent_closed(
    runs: AgentRunClient, owner: str
):
    # The resumed child runs as a root of its own (Temporal records no parent for it):
    # the stop still finds it, stops it and reads how it closed.
    root = await runs.start(
        owner, "scripted", script(run("scripted", child(LONG), background=True), LONG)
    )
    child_id = f"{root}.1-scripted"
    await eventually(lambda: runs.summary(owner, child_id), lambda s: s is not None)
    await runs.stop_tree(owner, root)
    await runs.resume(owner, child_id, script({"say": "resumed alone"}, LONG))
    await eventually(
        lambda: runs.summary(owner, child_id), lambda s: s and s.assistant == "resumed alone"
    )
    stopped = await runs.stop_tree(owner, root)
    assert [(s.run_id, s.status) for s in stopped] == [(root, "stopped"), (child_id, "stopped")]
    assert stopped[1].epoch == 2 and stopped[1].assistant == "resumed alone"
