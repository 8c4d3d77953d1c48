"""Determinism: recorded histories replay on the current workflow code.

``tests/histories/*.json`` were recorded from representative runs (fan-out, stop,
resume, failure, continue-as-new, tool calls, a tree stopped by its budget) of each
version of the workflow that ran: the first set before any patch, the next with the
patches ``child-settled-signal`` and ``cancel-children-at-once``, then with tool calls
as activities, the latest with children settled from their own executions, ids that
name their agent, and trees that count their runs and keep their usage in memos, and
a tree stopped a level at a time by ``stop_tree``; then runs of ``version`` 1, which
write no patch marker, in a tree whose runs ``stop_tree`` cancels each with its reason
(``STOP_TREE_REASON``). A workflow change
that would break running workflows fails here. After a deliberate, versioned change,
record the new version's histories alongside the old ones (never instead of them):
``AGENTRUN_RECORD_HISTORIES=1 .venv/bin/pytest tests/test_replay.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.worker import Replayer

from agentrun import AgentRunClient, AgentRunPlugin, Budget
from agentrun._models import AgentRunInput
from tests.helpers import child, eventually, run, script, tool

HISTORIES = Path(__file__).parent / "histories"


async def record_representative_runs(runs: AgentRunClient, owner: str) -> dict[str, str]:
    """Run one of each shape; the run ids to record, by history name."""
    fan_out = await runs.start(
        owner,
        "scripted",
        script(
            {"say": "planning"},
            run("scripted", child({"say": "a"}), background=True),
            run("scripted", child(run("scripted", "deep"), {"say": "b"})),
            run("scripted", child({"sleep": 60}), background=True),
            {"sleep": 0.3},
            tool("agent_output", run_id="$1"),
            tool("agent_stop", run_id="$3"),
            tool("agent_run", run_id="$3", prompt="resumed"),
            {"say": "done"},
        ),
    )
    await runs.wait(owner, fan_out, timeout=30)
    stopped = await runs.start(owner, "scripted", script({"say": "x"}, {"sleep": 60}))
    await runs.stop_tree(owner, stopped)
    resumed = await runs.start(owner, "scripted", script({"sleep": 60}))
    await runs.stop_tree(owner, resumed)
    await runs.resume(owner, resumed, "again")
    await runs.wait(owner, resumed, timeout=20)
    failed = await runs.start(owner, "scripted", script({"fail": "nope"}))
    await runs.wait(owner, failed, timeout=20)
    continued = f"{owner}-continued"
    steps = [tool("agent_output", run_id="none")] * 4 + [{"say": "after continuing"}]
    await runs._start(
        continued,
        AgentRunInput(
            owner_thread_id=owner,
            agent_id="scripted",
            prompt=script(*steps),
            continue_as_new_after=2,
        ),
    )
    await runs.wait(owner, continued, timeout=30)
    tooled = await runs.start(
        owner,
        "scripted",
        script(tool("add", a=1, b=2), tool("add", a="x", b=1), tool("nope"), {"say": "added"}),
    )
    await runs.wait(owner, tooled, timeout=30)
    # A tree over its runs budget stops (asks its root for runs, stops for its budget).
    budgeted = await runs.start(
        owner,
        "scripted",
        script(
            run("scripted", child(run("scripted", "deep"), {"say": "c"})),
            run("scripted", child({"say": "d"})),
            {"say": "never"},
        ),
        budget=Budget(runs=3),
    )
    await runs.wait(owner, budgeted, timeout=30)
    # A tree stopped a level at a time by stop_tree, started by a client that follows.
    sleeper = child({"sleep": 60})
    prompt = script(run("scripted", sleeper, background=True), {"sleep": 60})
    tree = await runs.start(owner, "scripted", prompt, follow=True)
    leaf = f"{tree}.1-scripted"
    await eventually(lambda: runs.summary(owner, leaf), lambda s: s and s.status == "running")
    await runs.stop_tree(owner, tree)
    return {
        "stopped_tree": tree,
        "stopped_tree_leaf": leaf,
        "budget_stopped": budgeted,
        "tool_calls": tooled,
        "continued_as_new": continued,
        "fan_out": fan_out,
        "fan_out_child": f"{fan_out}.2-scripted",
        "stopped_child": f"{fan_out}.3-scripted",
        "stopped": stopped,
        "resumed": resumed,
        "failed": failed,
    }


@pytest.mark.skipif(not os.environ.get("AGENTRUN_RECORD_HISTORIES"), reason="recording only")
async def test_record_histories(runs: AgentRunClient, temporal: Client, owner: str):
    HISTORIES.mkdir(exist_ok=True)
    for name, run_id in (await record_representative_runs(runs, owner)).items():
        history = await temporal.get_workflow_handle(run_id).fetch_history()
        # The workflow ID is part of what replays; it rides in the file name.
        (HISTORIES / f"{name}@{run_id}.json").write_text(history.to_json())
    # Also an execution that ended by continuing as new (the latest one started so).
    continued = f"{owner}-continued"
    async for execution in temporal.list_workflows(f"WorkflowId = '{continued}'"):
        if execution.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
            handle = temporal.get_workflow_handle(continued, run_id=execution.run_id)
            history = await handle.fetch_history()
            (HISTORIES / f"continuing@{continued}.json").write_text(history.to_json())
            break


async def test_recorded_histories_replay_on_current_code():
    files = sorted(HISTORIES.glob("*.json"))
    assert len(files) >= 5, "recorded histories are missing"
    replayer = Replayer(workflows=[], plugins=[AgentRunPlugin()])
    for path in files:
        workflow_id = path.stem.split("@", 1)[1]
        history = WorkflowHistory.from_json(workflow_id, path.read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_fresh_histories_replay_on_current_code_and_ask_no_patch(
    runs: AgentRunClient, temporal: Client, owner: str
):
    replayer = Replayer(workflows=[], plugins=[AgentRunPlugin()])
    for run_id in (await record_representative_runs(runs, owner)).values():
        history = await temporal.get_workflow_handle(run_id).fetch_history()
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{run_id}: {result.replay_failure}"
        # Started by this code (``AgentRunInput.version``): every patched path taken
        # without a marker or a ``TemporalChangeVersion`` upsert (agentrun/_versions.py).
        markers = [
            e.event_id for e in history.events if e.HasField("marker_recorded_event_attributes")
        ]
        assert not markers, f"{run_id}: patch markers at events {markers}"
