"""What the Temporal Web UI shows of a run: summary, details, turn summaries."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentrun import AgentRunClient
from tests.helpers import child, current_details, eventually, history_events, run, script


async def test_run_pages_show_agent_prompt_owner_lineage_and_live_details(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(
        owner,
        "scripted",
        script(
            {"say": "hello"}, run("scripted", child({"sleep": 60}), background=True), {"sleep": 60}
        ),
    )
    await eventually(lambda: runs.summary(owner, f"{run_id}.1-scripted"), lambda s: s is not None)
    root = await temporal.get_workflow_handle(run_id).describe()
    assert (await root.static_summary() or "").startswith('scripted: {"steps": [{"say": "hello"}')
    details = await root.static_details() or ""
    assert f"**owner thread** `{owner}`" in details
    assert "none (root run)" in details
    assert f"temporal workflow cancel --workflow-id {run_id}" in details

    described = await temporal.get_workflow_handle(f"{run_id}.1-scripted").describe()
    child_details = await described.static_details() or ""
    assert f"**parent run** `{run_id}`" in child_details and "**depth** 1" in child_details

    live = await eventually(
        lambda: current_details(temporal, run_id), lambda d: f"`{run_id}.1-scripted`" in d
    )
    assert "**running**" in live
    events = await history_events(temporal, run_id)
    scheduled = [
        e.user_metadata.summary.data
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert b"scripted turn 1" in scheduled[0]
    await runs.stop_tree(owner, run_id)


async def test_only_a_stopped_run_says_how_to_resume_it(
    runs: AgentRunClient, temporal: Client, owner: str
):
    done = await runs.start(owner, "scripted", "hello")
    await runs.wait(owner, done, timeout=60)
    described = await temporal.get_workflow_handle(done).describe()
    shown = (await described.static_details() or "") + await current_details(temporal, done)
    assert "agentrun resume" not in shown

    stopped = await runs.start(owner, "scripted", script({"sleep": 60}))
    await runs.stop_tree(owner, stopped)
    details = await current_details(temporal, stopped)
    assert f"agentrun resume {stopped} --owner {owner}" in details
