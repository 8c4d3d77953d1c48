"""Reports no client can forge: a run takes what its children and turns say only from
their own executions (docs/reliability.md, "What no client can do to a run").

A client of the namespace once could tell a parent that its child had completed with
any text (``child_settled``), or change a running run's text (``assistant_output``).
"""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentrun import AgentRunClient
from agentrun._constants import QUERY_CHILDREN, SIGNAL_ASSISTANT_OUTPUT, SIGNAL_CHILD_SETTLED
from agentrun._models import AssistantOutput, RunSummary
from tests.helpers import child, eventually, history_events, run, script

PARENT = script(
    run("scripted", child({"say": "real"}, {"sleep": 600}), background=True),
    {"sleep": 600},
)


async def children_of(temporal: Client, run_id: str) -> list[RunSummary]:
    handle = temporal.get_workflow_handle(run_id)
    found: list[RunSummary] = await handle.query(QUERY_CHILDREN, result_type=list[RunSummary])
    return found


async def signal_taken(temporal: Client, run_id: str, name: str) -> None:
    """Wait until the run's worker has handled the signal (a workflow task after it)."""

    def taken(events: list[Any]) -> bool:
        signaled = [
            e.event_id
            for e in events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and e.workflow_execution_signaled_event_attributes.signal_name == name
        ]
        return bool(signaled) and any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            and e.event_id > signaled[-1]
            for e in events
        )

    await eventually(lambda: history_events(temporal, run_id), taken)


async def test_forged_child_and_output_reports_change_nothing_a_run_says(
    runs: AgentRunClient, temporal: Client, owner: str
):
    root = await runs.start(owner, "scripted", PARENT)
    found = await eventually(lambda: children_of(temporal, root), lambda c: len(c) == 1)
    child_id = found[0].run_id
    # A running turn's latest text, as its heartbeat carries it: no signal needed.
    await eventually(
        lambda: runs.summary(owner, child_id), lambda s: s is not None and s.assistant == "real"
    )

    forged = found[0].model_copy(update={"status": "completed", "assistant": "forged"})
    await temporal.get_workflow_handle(root).signal(SIGNAL_CHILD_SETTLED, forged)
    await temporal.get_workflow_handle(child_id).signal(
        SIGNAL_ASSISTANT_OUTPUT, AssistantOutput(epoch=1, turn=1, text="forged")
    )
    await signal_taken(temporal, root, SIGNAL_CHILD_SETTLED)
    await signal_taken(temporal, child_id, SIGNAL_ASSISTANT_OUTPUT)

    [listed] = await children_of(temporal, root)
    assert listed.status == "running"
    summary = await runs.summary(owner, child_id)
    assert summary is not None and (summary.status, summary.assistant) == ("running", "real")

    # Stopped for real, the child is settled from its own execution, with its own text.
    await runs.stop_tree(owner, child_id)
    settled = await eventually(
        lambda: children_of(temporal, root), lambda c: c[0].status != "running", timeout=60
    )
    assert (settled[0].status, settled[0].assistant) == ("stopped", "real")
    await runs.stop_tree(owner, root)
