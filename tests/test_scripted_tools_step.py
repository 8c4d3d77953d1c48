"""The scripted agent's ``tools`` step: several calls in one step, as a model's
response with parallel tool calls (docs/contract.md)."""

from __future__ import annotations

import json

from temporalio.api.enums.v1 import EventType

from agentrun import AgentRunClient


def _run(prompt: object, background: bool = False) -> dict[str, object]:
    args = {"agent_id": "scripted", "prompt": prompt, "background": background}
    return {"tool": "agent_run", "args": args}


async def test_a_tools_step_makes_its_calls_in_one_response(runs: AgentRunClient, owner: str):
    script = {
        "steps": [
            {"tools": [_run({"steps": [{"say": "one"}]}), _run({"steps": [{"say": "two"}]})]},
            {"tool": "agent_output", "args": {"run_id": "$2"}},
        ]
    }
    run_id = await runs.start(owner, "scripted", json.dumps(script))
    summary = await runs.wait(owner, run_id, timeout=60)
    assert summary.status == "completed", summary
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    responses = [m for m in thread if m.role == "assistant" and m.tool_calls]
    assert [len(m.tool_calls) for m in responses] == [2, 1]
    results = [json.loads(m.content) for m in thread if m.role == "tool"]
    assert [r["run_id"] for r in results[:2]] == [f"{run_id}.1-scripted", f"{run_id}.2-scripted"]
    # "$2" is the run the step's second call started.
    assert (results[2]["run_id"], results[2]["output"]) == (f"{run_id}.2-scripted", "two")


async def test_a_middle_run_asks_its_root_once_for_a_tools_steps_children(
    runs: AgentRunClient, owner: str
):
    leaf = {"steps": [{"say": "leaf"}]}
    middle = {"steps": [{"tools": [_run(leaf, background=True)] * 3}]}
    run_id = await runs.start(owner, "scripted", json.dumps({"steps": [_run(middle)]}))
    summary = await runs.wait(owner, run_id, timeout=90)
    assert summary.status == "completed", summary
    statuses = {r.summary.run_id: r.summary.status for r in await runs.subtree(owner, run_id)}
    assert len(statuses) == 5 and set(statuses.values()) == {"completed"}, statuses
    # The root took one update for the middle's three children (reserve_runs).
    history = await runs.temporal.get_workflow_handle(run_id).fetch_history()
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    assert sum(1 for event in history.events if event.event_type == accepted) == 1


async def test_an_empty_tools_step_is_an_error_naming_the_step(runs: AgentRunClient, owner: str):
    run_id = await runs.start(owner, "scripted", json.dumps({"steps": [{"tools": []}]}))
    summary = await runs.wait(owner, run_id, timeout=30)
    assert summary.status == "failed", summary
    assert summary.error is not None
    assert summary.error.startswith("Invalid script: step 1: "), summary.error
    assert "tools" in summary.error
