import json

from agentrun import AgentRunClient


def script(*steps: dict[str, object]) -> str:
    return json.dumps({"steps": list(steps)})


async def test_echo_run_completes(runs: AgentRunClient, owner: str):
    run_id = await runs.start(owner, "scripted", "hello there")
    summary = await runs.wait(owner, run_id, timeout=20)
    assert summary.status == "completed"
    assert summary.assistant == "hello there"


async def test_delegation_foreground_and_background(runs: AgentRunClient, owner: str):
    child = {"steps": [{"say": "child done"}]}
    run_id = await runs.start(
        owner,
        "scripted",
        script(
            {"tool": "agent_run", "args": {"agent_id": "scripted", "prompt": child}},
            {
                "tool": "agent_run",
                "args": {"agent_id": "scripted", "prompt": child, "background": True},
            },
            {"say": "planner done"},
        ),
    )
    summary = await runs.wait(owner, run_id, timeout=30)
    assert summary.status == "completed", summary
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    tools = [json.loads(m.content) for m in thread if m.role == "tool"]
    assert tools[0]["status"] == "completed" and tools[0]["assistant"] == "child done"
    assert tools[1]["status"] == "running"
