"""The delegation tools as agents see them (docs/delegation.md section 4 and 6)."""

from __future__ import annotations

import json
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentrun import AgentRunClient, Message, ToolCall
from agentrun._delegation import fork_messages
from tests.helpers import child, history_events, run, script, tool, tool_results


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def results_of(
    runs: AgentRunClient, owner: str, agent_id: str, *steps: dict[str, Any]
) -> list[dict[str, Any]]:
    run_id = await runs.start(owner, agent_id, script(*steps))
    summary = await runs.wait(owner, run_id, timeout=30)
    assert summary.status == "completed", summary
    return tool_results(await runs.thread(owner, run_id))


async def test_agent_run_argument_errors(runs: AgentRunClient, owner: str):
    results = await results_of(
        runs,
        owner,
        "planner",
        tool("agent_run", prompt="x"),
        tool("agent_run", agent_id="helper"),
        tool("agent_run", agent_id="  ", prompt="x"),
        tool("agent_run", agent_id="helper", prompt=""),
        tool("agent_run", agent_id="planner", prompt="x"),
        tool("agent_run", agent_id="picky", prompt="x"),
        tool("agent_run", run_id="run-nobody-started"),
        tool("agent_stop"),
        tool("agent_output", run_id=7),
    )
    assert results == [
        error("invalid_arguments", "missing 'agent_id'"),
        error("invalid_arguments", "missing 'prompt'"),
        error("invalid_arguments", "missing 'agent_id'"),
        error("invalid_arguments", "missing 'prompt'"),
        error("unknown_agent", "Unknown or unavailable agent_id: planner"),
        error("unknown_agent", "Unknown or unavailable agent_id: picky"),
        error("unknown_run", "Unknown run_id: run-nobody-started"),
        error("invalid_arguments", "missing 'run_id'"),
        error("invalid_arguments", "'run_id' must be a string, got int"),
    ]


async def test_deny_list_empty_allow_list_and_depth_limit(runs: AgentRunClient, owner: str):
    assert await results_of(runs, owner, "picky", run("helper", "x")) == [
        error("unknown_agent", "Unknown or unavailable agent_id: helper")
    ]
    assert await results_of(runs, owner, "loner", run("scripted", "x")) == [
        error("unknown_agent", "Unknown or unavailable agent_id: scripted")
    ]
    deep = await results_of(runs, owner, "shallow", run("shallow", child(run("shallow", "x"))))
    inner = deep[0]
    assert inner["status"] == "completed"
    # The child at depth 1 may not start a grandchild at depth 2.
    grandchild = tool_results(await runs.thread(owner, inner["run_id"]))
    assert grandchild == [
        error(
            "invalid_state",
            "Cannot start 'shallow' at depth 2: the maximum delegation depth is 1",
        )
    ]


async def test_foreground_returns_terminal_summary_and_background_returns_running(
    runs: AgentRunClient, owner: str
):
    results = await results_of(
        runs,
        owner,
        "scripted",
        run("scripted", child({"say": "fg"})),
        run("scripted", child({"sleep": 0.5}, {"say": "bg"}), background=True),
        run("scripted", child({"fail": "it broke"})),
    )
    first, second, third = results
    assert first == {
        "run_id": first["run_id"],
        "agent_id": "scripted",
        "status": "completed",
        "assistant": "fg",
        "error": None,
    }
    assert (second["status"], second["assistant"]) == ("running", None)
    assert (third["status"], third["error"]) == ("failed", "it broke")


async def test_agent_output_reads_latest_text_also_while_running(runs: AgentRunClient, owner: str):
    run_id = await runs.start(
        owner,
        "scripted",
        script(
            run("scripted", child({"say": "partial"}, {"sleep": 60}), background=True),
            run("scripted", child({"sleep": 60}), background=True),
            {"sleep": 1},
            tool("agent_output", run_id="$1"),
            tool("agent_output", run_id="$2"),
            tool("agent_stop", run_id="$1"),
            tool("agent_stop", run_id="$2"),
            tool("agent_stop", run_id="$2"),
        ),
    )
    await runs.wait(owner, run_id, timeout=30)
    results = tool_results(await runs.thread(owner, run_id))
    assert results[2] == {
        "run_id": f"{run_id}.1-scripted",
        "agent_id": "scripted",
        "status": "running",
        "output": "partial",
    }
    assert results[3]["output"] is None and results[3]["status"] == "running"
    assert results[4]["status"] == "stopped" and results[4]["assistant"] == "partial"
    assert results[6] == error(
        "invalid_state", f"Run '{run_id}.2-scripted' is not running (current status: stopped)"
    )


async def test_query_of_closed_runs_returns_stored_summary_without_rerunning(
    runs: AgentRunClient, temporal: Client, owner: str
):
    done = await runs.start(owner, "scripted", "answer me")
    failed = await runs.start(owner, "scripted", script({"say": "trying"}, {"fail": "no luck"}))
    await runs.wait(owner, done, timeout=20)
    await runs.wait(owner, failed, timeout=20)
    before = len(await history_events(temporal, done))
    for _ in range(3):
        summary = await runs.summary(owner, done)
        assert summary is not None and (summary.status, summary.assistant) == (
            "completed",
            "answer me",
        )
        broken = await runs.summary(owner, failed)
        assert broken is not None
        assert (broken.status, broken.assistant, broken.error) == ("failed", "trying", "no luck")
    events = await history_events(temporal, done)
    assert len(events) == before
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED


async def test_reminder_lists_running_and_stopped_children_only_when_there_are_some(
    runs: AgentRunClient, owner: str
):
    run_id = await runs.start(
        owner,
        "teller",
        script(
            {"say": "{told}"},
            run("scripted", child({"sleep": 60}), background=True),
            run("scripted", child({"sleep": 60}), background=True),
            run("scripted", child({"say": "quick"})),
            tool("agent_stop", run_id="$2"),
            {"say": "{told}"},
            tool("agent_stop", run_id="$1"),
        ),
    )
    await runs.wait(owner, run_id, timeout=30)
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    before, after = [m.content for m in thread if m.role == "assistant" and m.content]
    assert "You can delegate to these agents:\n- scripted" in before
    assert "agent_stop(run_id)" in before
    assert "<run " not in before
    assert f'<run id="{run_id}.1-scripted" agent="scripted" status="running"/>' in after
    assert f'<run id="{run_id}.2-scripted" agent="scripted" status="stopped"/>' in after
    assert f"{run_id}.3-scripted" not in after  # completed runs are not in the reminder
    assert "agent_run with run_id" in after


async def test_fork_context_passes_the_filtered_thread(runs: AgentRunClient, owner: str):
    prior = [
        Message(role="system", content="be brief"),
        Message(role="user", content="find things"),
        Message(
            role="assistant",
            content="looking",
            tool_calls=[
                ToolCall(id="c1", name="agent_output", args={"run_id": "a"}),
                ToolCall(id="c2", name="agent_output", args={"run_id": "b"}),
            ],
        ),
        Message(role="tool", tool_call_id="c1", name="agent_output", content="{}"),
        Message(role="tool", tool_call_id="c9", name="agent_output", content="orphan"),
    ]
    prompt = script(run("scripted", "forked hello", fork_context=True), run("scripted", "fresh"))
    run_id = await runs.start(owner, "scripted", prompt, messages=prior)
    await runs.wait(owner, run_id, timeout=20)
    forked = await runs.thread(owner, f"{run_id}.1-scripted")
    assert forked is not None
    assert [(m.role, m.content) for m in forked] == [
        ("user", "find things"),
        ("assistant", "looking"),
        ("tool", "{}"),
        ("user", prompt),
        ("user", "forked hello"),
        ("assistant", "forked hello"),
    ]
    assert [c.id for c in forked[1].tool_calls] == ["c1"]
    fresh = await runs.thread(owner, f"{run_id}.2-scripted")
    assert fresh is not None and [m.content for m in fresh] == ["fresh", "fresh"]


def test_fork_filter_drops_unpaired_calls_and_results_and_keeps_text():
    messages = [
        Message(role="system", content="s"),
        Message(role="assistant", content="", tool_calls=[ToolCall(id="x", name="agent_run")]),
        Message(role="assistant", content="thinking"),
        Message(role="tool", tool_call_id="y", content="unpaired"),
    ]
    assert [(m.role, m.content, m.tool_calls) for m in fork_messages(messages)] == [
        ("assistant", "thinking", [])
    ]


async def test_tool_results_are_json_the_agent_can_read(runs: AgentRunClient, owner: str):
    run_id = await runs.start(owner, "scripted", script(run("scripted", "hi")))
    await runs.wait(owner, run_id, timeout=20)
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    call, result = thread[1], thread[2]
    assert call.tool_calls[0].name == "agent_run"
    assert result.tool_call_id == call.tool_calls[0].id
    assert json.loads(result.content)["assistant"] == "hi"
