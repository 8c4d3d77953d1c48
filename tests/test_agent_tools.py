"""Agents that act: user tools and MCP servers, every call a durable activity."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import (
    AgentEvent,
    AgentRegistry,
    AgentRunClient,
    AgentRunPlugin,
    AgentSpec,
    MCPServer,
    Message,
    ModelAgent,
    ToolCall,
    as_tool,
)
from agentrun._server import free_ports
from agentrun.cli._render import event_detail
from tests.conftest import server_address
from tests.fake_openai import FakeOpenAI
from tests.helpers import ROOT, eventually, history_events, script, tool, tool_results, tool_returns
from tests.tool_functions import add, shout, where

MCP_SERVER = ROOT / "examples" / "mcp_docs.py"
ADD = "tests.tool_functions:add"
NO_MODULE = "no_such_module:find"
NO_NAME = "tests.tool_functions:nothing"
NOT_CALLABLE = "tests.tool_functions:ROOT_MARKER"


def tool_toml(**extra: str) -> str:
    """An agents.toml with the test tools, the example MCP server over stdio, and more."""
    return "\n".join(
        [
            "[tools]",
            'add = "tests.tool_functions:add"',
            'shout = { function = "tests.tool_functions:shout", timeout = 30, retries = 2 }',
            'slow = { function = "tests.tool_functions:slow", heartbeat_timeout = 2 }',
            'boom = { function = "tests.tool_functions:boom", retries = 1 }',
            'tally = "tests.tool_functions:tally"',
            "[mcp_servers.docs]",
            f'command = "{sys.executable}"',
            f'args = ["{MCP_SERVER}"]',
            'prefix = "docs"',
            *extra.values(),
        ]
    )


@pytest.fixture
def mcp_http() -> Iterator[str]:
    """The example MCP server over streamable HTTP on a free loopback port; its URL."""
    (port,) = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, str(MCP_SERVER), "--http", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait()


@pytest.fixture
async def tooled(
    env: WorkflowEnvironment, queue: str, tmp_path: Path, mcp_http: str
) -> AsyncIterator[AgentRunClient]:
    """A worker whose tools come from an agents.toml: functions, MCP over stdio and HTTP."""
    agents = tmp_path / "agents.toml"
    agents.write_text(tool_toml(http=f'[mcp_servers.web]\nurl = "{mcp_http}"\nprefix = "web"'))
    plugin = AgentRunPlugin(agents_file=agents)
    client = Client(env.client.service_client, namespace=env.client.namespace, plugins=[plugin])
    async with Worker(client, task_queue=queue):
        yield AgentRunClient(client, queue)


async def activity_summaries(client: Client, run_id: str) -> dict[str, str]:
    """Each tool activity's type and the summary the Web UI shows, from the history."""
    found = {}
    for event in await history_events(client, run_id):
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            kind = event.activity_task_scheduled_event_attributes.activity_type.name
            summary = event.user_metadata.summary.data.decode()
            if kind.startswith("agentrun."):
                found[json.loads(summary)] = kind
    return found


async def test_a_scripted_run_calls_toml_tools_and_mcp_tools_over_stdio_and_http(
    tooled: AgentRunClient, owner: str
):
    run_id = await tooled.start(
        owner,
        "scripted",
        script(
            tool("add", a=2, b=3),
            tool("docs_read_doc", name="delegation"),
            tool("web_add", a=40, b=2),
            {"say": "done"},
        ),
    )
    summary = await tooled.wait(owner, run_id, timeout=90)
    assert summary.status == "completed", summary
    thread = await tooled.thread(owner, run_id)
    assert thread is not None
    results = [m.content for m in thread if m.role == "tool"]
    assert results[0] == "5"
    assert "agent_run" in results[1]  # the delegation doc, read by the MCP server
    assert results[2] == "42"
    summaries = await activity_summaries(tooled.temporal, run_id)
    assert summaries == {
        "scripted: add(a=2, b=3)": "agentrun.tool.add",
        "scripted: docs_read_doc(name='delegation')": "agentrun.mcp.docs",
        "scripted: web_add(a=40, b=2)": "agentrun.mcp.web",
    }


async def test_bad_arguments_and_unknown_tools_are_results_the_run_goes_on_from(
    tooled: AgentRunClient, owner: str
):
    run_id = await tooled.start(
        owner,
        "scripted",
        script(tool("add", a="two", b=3), tool("nope"), {"say": "carried on"}),
    )
    summary = await tooled.wait(owner, run_id, timeout=60)
    assert (summary.status, summary.assistant) == ("completed", "carried on")
    bad, unknown = tool_results(await tooled.thread(owner, run_id))
    assert bad["error"]["code"] == "tool_error"
    assert (
        "Invalid arguments for add: a: Input should be a valid integer" in bad["error"]["message"]
    )
    assert unknown["error"]["code"] == "unknown_tool"
    assert unknown["error"]["message"].startswith("Unknown tool: nope; available: ")


async def test_a_tool_that_always_raises_gives_the_model_its_error_after_its_retries(
    tooled: AgentRunClient, owner: str, tmp_path: Path
):
    marker = tmp_path / "boom"
    run_id = await tooled.start(
        owner, "scripted", script(tool("boom", marker=str(marker)), {"say": "still here"})
    )
    summary = await tooled.wait(owner, run_id, timeout=90)
    assert (summary.status, summary.assistant) == ("completed", "still here")
    (failed,) = tool_results(await tooled.thread(owner, run_id))
    assert failed["error"] == {
        "code": "tool_failed",
        "message": "boom failed after 2 attempts: RuntimeError: the tool broke",
    }
    assert marker.read_text().splitlines() == ["attempt", "attempt"]


async def test_a_stop_cancels_a_running_tool_and_the_run_ends_stopped(
    tooled: AgentRunClient, owner: str, tmp_path: Path
):
    marker = tmp_path / "slow"
    run_id = await tooled.start(
        owner, "scripted", script(tool("slow", seconds=60, marker=str(marker)))
    )
    await eventually(lambda: _lines(marker), lambda lines: bool(lines), timeout=30)
    await tooled.stop_tree(owner, run_id)
    # The tool sees the cancel with its next heartbeat (a few tenths of a second).
    lines = await eventually(lambda: _lines(marker), lambda lines: "cancelled" in lines)
    assert lines[0].startswith("started 1 ")
    summary = await tooled.wait(owner, run_id, timeout=30)
    assert summary.status == "stopped"


async def test_tool_progress_is_streamed_as_events(
    tooled: AgentRunClient, owner: str, tmp_path: Path
):
    marker = tmp_path / "slow"
    steps = [tool("slow", seconds=0.2, marker=str(marker)), tool("tally", items=["a", "b"])]
    run_id = await tooled.start(owner, "scripted", script(*steps))
    await tooled.wait(owner, run_id, timeout=60)
    kinds = [(item.event.kind, item.event.text) async for item in tooled.events(owner, run_id)]
    # An async tool's line, then a sync tool's (it reports from its thread), in order.
    assert [(k, text) for k, text in kinds if k == "tool_progress"] == [
        ("tool_progress", "slow: sleeping 0.2s"),
        ("tool_progress", "tally: 1 a"),
        ("tool_progress", "tally: 2 b"),
    ]
    assert [k for k, _ in kinds if k.startswith("tool")] == [
        "tool_call",
        "tool_progress",
        "tool_result",
        "tool_call",
        "tool_progress",
        "tool_progress",
        "tool_result",
    ]


async def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- model-driven agents ------------------------------------------------------------------


def researcher_model(offered: list[list[str]]) -> FunctionModel:
    """Calls add (badly) and shout at once, mends add, then answers with the results."""

    def decide(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        offered.append(sorted(tool.name for tool in info.function_tools))
        returns = tool_returns(messages)
        if not returns:
            return ModelResponse(
                parts=[
                    ToolCallPart(tool_name="add", args={"a": "two", "b": 3}, tool_call_id="c1"),
                    ToolCallPart(tool_name="shout", args={"text": "hi"}, tool_call_id="c2"),
                ]
            )
        if len(returns) == 2:
            call = ToolCallPart(tool_name="add", args={"a": 2, "b": 3}, tool_call_id="c3")
            return ModelResponse(parts=[call])
        return ModelResponse(parts=[TextPart(content=f"{returns[2]} and {returns[1]}")])

    return FunctionModel(decide)


async def test_a_model_calls_two_tools_at_once_mends_bad_arguments_and_answers(
    env: WorkflowEnvironment, queue: str, owner: str
):
    offered: list[list[str]] = []
    researcher = AgentSpec(
        id="researcher",
        runtime=ModelAgent(researcher_model(offered)),
        tools=("add", "shout"),
        allowed_agents=(),
    )
    plugin = AgentRunPlugin(agents=[researcher], tools=[add, shout, where])
    client = Client(env.client.service_client, namespace=env.client.namespace, plugins=[plugin])
    async with Worker(client, task_queue=queue):
        runs = AgentRunClient(client, queue)
        run_id = await runs.start(owner, "researcher", "add two and three, and shout hi")
        summary = await runs.wait(owner, run_id, timeout=60)
        thread = await runs.thread(owner, run_id)
    assert (summary.status, summary.assistant) == ("completed", "5 and HI")
    # Exactly its own tools: not `where`, and no delegation tools (it may delegate to nobody).
    assert offered == [["add", "shout"]] * 3
    assert thread is not None
    bad = json.loads(thread[2].content)
    assert "Invalid arguments for add" in bad["error"]["message"]
    assert [m.content for m in thread[2:4]][1] == "HI"
    calls = {
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in await _scheduled(client, run_id)
    }
    assert calls == {"agent_turn", "agentrun.tool.add", "agentrun.tool.shout"}


async def _scheduled(client: Client, run_id: str) -> list[Any]:
    return [
        e
        for e in await history_events(client, run_id)
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def test_an_openai_model_calls_tools_through_a_real_http_server(
    env: WorkflowEnvironment,
    queue: str,
    owner: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    fake = FakeOpenAI()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    agents = tmp_path / "agents.toml"
    agents.write_text(
        tool_toml()
        + f'\n[agents.smith]\nmodel = "openai:toolsmith"\nbase_url = "{fake.base_url}"\n'
        + 'tools = ["add", "shout"]\nallowed_agents = []\n'
    )
    plugin = AgentRunPlugin(agents_file=agents)
    client = Client(env.client.service_client, namespace=env.client.namespace, plugins=[plugin])
    try:
        async with Worker(client, task_queue=queue):
            runs = AgentRunClient(client, queue)
            run_id = await runs.start(owner, "smith", "add and shout")
            summary = await runs.wait(owner, run_id, timeout=60)
    finally:
        fake.close()
    assert (summary.status, summary.assistant) == (
        "completed",
        "The sum is 5 and the shout is HI",
    )
    first = fake.requests_for("toolsmith")[0]
    assert sorted(t["function"]["name"] for t in first["tools"]) == ["add", "shout"]


# --- workers: crashes, other task queues, bad registry entries --------------------------


def worker_variables(env: WorkflowEnvironment, queue: str, agents: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": server_address(env),
        "AGENTRUN_TASK_QUEUE": queue,
        "AGENTRUN_AGENTS": str(agents),
    }


def spawn(variables: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=variables)


async def test_a_worker_killed_during_a_tool_call_has_it_retried_on_another_worker(
    env: WorkflowEnvironment,
    queue: str,
    owner: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
):
    agents = tmp_path / "agents.toml"
    agents.write_text(tool_toml())
    variables = worker_variables(env, queue, agents)
    first = spawn(variables)
    processes.append(first)
    marker = tmp_path / "slow"
    runs = AgentRunClient(env.client, queue)
    run_id = await runs.start(
        owner, "scripted", script(tool("slow", seconds=10, marker=str(marker)), {"say": "ok"})
    )
    await eventually(lambda: _lines(marker), lambda lines: bool(lines), timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait()
    processes.append(spawn(variables))
    summary = await runs.wait(owner, run_id, timeout=120)
    assert (summary.status, summary.assistant) == ("completed", "ok")
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    results = [m.content for m in thread if m.role == "tool"]
    assert results == [f"slept 10.0s in {run_id}"]  # one result, from the retried call
    started = [line.split()[1] for line in await _lines(marker) if line.startswith("started")]
    assert started == ["1", "2"]


async def test_a_tool_on_its_own_task_queue_runs_on_the_worker_there(
    env: WorkflowEnvironment,
    queue: str,
    owner: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
):
    tools_queue = f"{queue}-tools"
    agents = tmp_path / "agents.toml"
    agents.write_text(
        "[tools]\nwhere = "
        f'{{ function = "tests.tool_functions:where", task_queue = "{tools_queue}" }}\n'
    )
    elsewhere = spawn(worker_variables(env, tools_queue, agents))
    processes.append(elsewhere)
    plugin = AgentRunPlugin(tools=[as_tool(where, task_queue=tools_queue)])
    client = Client(env.client.service_client, namespace=env.client.namespace, plugins=[plugin])
    async with Worker(client, task_queue=queue):
        runs = AgentRunClient(client, queue)
        run_id = await runs.start(owner, "scripted", script(tool("where")))
        summary = await runs.wait(owner, run_id, timeout=90)
        (result,) = tool_results(await runs.thread(owner, run_id))
    assert summary.status == "completed"
    assert result == {"pid": elsewhere.pid}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (f"[tools]\nfind = {NO_MODULE!r}", "tools.find: cannot import 'no_such_module'"),
        (f"[tools]\nfind = {NO_NAME!r}", "tools.find: 'tests.tool_functions' has no 'nothing'"),
        (f"[tools]\nfind = {NOT_CALLABLE!r}", f"tools.find: {NOT_CALLABLE} is not callable"),
        ('[tools]\nfind = "find"', "tools.find: expected 'module:function', got 'find'"),
        (f"[tools]\nagent_run = {ADD!r}", "tools.agent_run: clashes with the delegation tool"),
        (
            f'[tools]\nadd = {ADD!r}\n[agents.a]\nmodel = "test"\ntools = ["add", "sub"]',
            "Agent 'a' lists unknown tools ['sub']",
        ),
        (
            '[agents.a]\nmodel = "test"\nmcp_servers = ["files"]',
            "Agent 'a' lists unknown mcp_servers ['files']",
        ),
        (
            '[mcp_servers.files]\ncommand = "python"\nurl = "http://127.0.0.1:1/mcp"',
            "mcp_servers.files: Value error, give exactly one of 'command' (stdio) and 'url'",
        ),
    ],
)
async def test_a_bad_tool_entry_stops_the_worker_with_one_line(
    env: WorkflowEnvironment, queue: str, tmp_path: Path, entry: str, expected: str
):
    agents = tmp_path / "agents.toml"
    agents.write_text(entry + "\n")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "worker.py")],
        cwd=ROOT,
        env=worker_variables(env, queue, agents),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"agentrun worker: {agents}: ")
    assert expected in line


def test_mcp_server_needs_a_command_or_a_url():
    with pytest.raises(ValueError, match="give exactly one of command and url"):
        MCPServer("nothing")


def test_a_registry_with_a_tool_named_like_a_delegation_tool_is_refused():
    with pytest.raises(ValueError, match="clashes with the delegation tool"):
        AgentRegistry([], tools=[as_tool(add, name="agent_stop")])


def test_tool_names_come_from_the_functions_and_options_are_checked():
    assert (as_tool(add).name, as_tool(add).definition.description) == (
        "add",
        "Add two whole numbers.",
    )
    assert as_tool(add).definition.parameters_json_schema["required"] == ["a", "b"]
    with pytest.raises(ValueError, match="retries=-1: expected 0 to 100"):
        as_tool(add, retries=-1)


def test_watch_shows_tool_calls_progress_and_results_readably():
    def event(kind: str, **fields: Any) -> AgentEvent:
        return AgentEvent(run_id="r", epoch=1, kind=kind, **fields)

    def result(content: str) -> AgentEvent:
        return event("tool_result", message=Message(role="tool", content=content, name="t"))

    call = ToolCall(id="c1", name="add", args={"a": 2, "b": 3})
    assert event_detail(event("tool_call", tool_call=call)) == 'add {"a": 2, "b": 3}'
    assert event_detail(event("tool_progress", text="slow: sleeping 2s")) == "slow: sleeping 2s"
    assert event_detail(result("5")) == "5"
    assert event_detail(result('{"pid": 42}')) == '{"pid": 42}'
    assert event_detail(result("two\nlines")) == "two lines"
    failed = '{"error": {"code": "tool_failed", "message": "boom failed after 2 attempts"}}'
    assert event_detail(result(failed)) == "[tool_failed] boom failed after 2 attempts"
