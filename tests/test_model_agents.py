"""Model-driven agents on pydantic-ai, in the same turn activity as every agent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRegistry, AgentRunClient, AgentSpec, ModelAgent, ScriptedAgent
from agentrun._agents._registry_file import build_model
from tests.conftest import agentrun_client
from tests.fake_openai import FakeOpenAI
from tests.helpers import script, tool_results, tool_returns

SECRET = "sk-test-SECRET-4242"


def _call(name: str, **args: Any) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool_name=name, args=args, tool_call_id=f"c-{name}")])


def planner_model(seen: list[str]) -> FunctionModel:
    """Delegates foreground and background, checks, stops, reads, then answers."""

    def decide(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        system = messages[0].parts[0] if isinstance(messages[0], ModelRequest) else None
        seen.append(system.content if isinstance(system, SystemPromptPart) else "")
        returns = tool_returns(messages)
        background = json.loads(returns[1])["run_id"] if len(returns) > 1 else ""
        steps = [
            lambda: _call("agent_run", agent_id="writer", prompt="draft a title"),
            lambda: _call(
                "agent_run",
                agent_id="researcher",
                prompt=script({"say": "three sources so far"}, {"sleep": 60}),
                background=True,
            ),
            lambda: _call("agent_run", run_id=background),
            lambda: _call("agent_stop", run_id=background),
            lambda: _call("agent_output", run_id=background),
        ]
        if len(returns) < len(steps):
            return steps[len(returns)]()
        title = json.loads(returns[0])["assistant"]
        found = json.loads(returns[4])["output"]
        return ModelResponse(parts=[TextPart(content=f"Title: {title}. Research: {found}.")])

    return FunctionModel(decide)


def writer_model() -> FunctionModel:
    def write(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert not info.function_tools, "a writer that delegates to nobody gets no tools"
        return ModelResponse(parts=[TextPart(content="Durable Agents")])

    return FunctionModel(write)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
async def model_runs(
    env: WorkflowEnvironment,
    queue: str,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[AgentRunClient, list[str]]]:
    """A worker whose registry has model-driven agents; the planner's system prompts."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    seen: list[str] = []
    openai = {
        name: build_model(f"openai:{name}", fake_openai.base_url)
        for name in ("echo", "flaky", "locked", "delegator")
    }
    registry = AgentRegistry(
        [
            AgentSpec(id="scripted", runtime=ScriptedAgent(), allow_self=True),
            AgentSpec(
                id="planner",
                runtime=ModelAgent(planner_model(seen), "You plan."),
                allowed_agents=("writer", "researcher"),
            ),
            AgentSpec(id="writer", runtime=ModelAgent(writer_model()), allowed_agents=()),
            AgentSpec(id="researcher", runtime=ScriptedAgent(), description="finds sources"),
            *[
                AgentSpec(
                    id=f"openai-{name}", runtime=ModelAgent(model), allowed_agents=("scripted",)
                )
                for name, model in openai.items()
            ],
        ]
    )
    async with Worker(agentrun_client(env.client, registry), task_queue=queue):
        yield AgentRunClient(env.client, queue), seen


async def test_model_planner_delegates_checks_stops_reads_and_answers(
    model_runs: tuple[AgentRunClient, list[str]], temporal: Client, owner: str
):
    runs, seen = model_runs
    run_id = await runs.start(owner, "planner", "Find sources and a title")
    summary = await runs.wait(owner, run_id, timeout=30)
    assert summary.status == "completed"
    assert summary.assistant == "Title: Durable Agents. Research: three sources so far."
    results = tool_results(await runs.thread(owner, run_id))
    assert [r.get("status") for r in results] == [
        "completed",
        "running",
        "running",
        "stopped",
        "stopped",
    ]
    children = await temporal.get_workflow_handle(run_id).query("children")
    assert [(c["agent_id"], c["status"]) for c in children] == [
        ("writer", "completed"),
        ("researcher", "stopped"),
    ]
    # What the planner was told: its instructions, the agents, and the reminder.
    assert seen[0].startswith("You plan.\n\nYou can delegate to these agents:")
    assert "- researcher: finds sources" in seen[0] and "- writer" in seen[0]
    assert "<run " not in seen[0]
    assert f'<run id="{run_id}.2-researcher" agent="researcher" status="running"/>' in seen[2]
    assert 'status="stopped"/>' in seen[4]


async def test_openai_provider_streams_text_over_real_http(
    model_runs: tuple[AgentRunClient, list[str]], fake_openai: FakeOpenAI, owner: str
):
    runs, _ = model_runs
    run_id = await runs.start(owner, "openai-echo", "hello model")
    summary = await runs.wait(owner, run_id, timeout=30)
    assert (summary.status, summary.assistant) == ("completed", "You said: hello model")
    deltas = [
        e.event.text async for e in runs.events(owner, run_id) if e.event.kind == "text_delta"
    ]
    assert deltas == ["You", " said:", " hello", " model"]
    assert fake_openai.requests_for("echo")[0]["stream"] is True


async def test_openai_tool_call_delegates_through_the_workflow(
    model_runs: tuple[AgentRunClient, list[str]], fake_openai: FakeOpenAI, owner: str
):
    runs, _ = model_runs
    run_id = await runs.start(owner, "openai-delegator", "go")
    summary = await runs.wait(owner, run_id, timeout=30)
    assert summary.status == "completed"
    assert summary.assistant is not None and '"assistant": "research this"' in summary.assistant
    child = await runs.summary(owner, f"{run_id}.1-scripted")
    assert child is not None and child.agent_id == "scripted"
    first = fake_openai.requests_for("delegator")[0]
    assert {tool["function"]["name"] for tool in first["tools"]} == {
        "agent_run",
        "agent_stop",
        "agent_output",
    }


async def test_rate_limit_is_retried_and_completes(
    model_runs: tuple[AgentRunClient, list[str]], fake_openai: FakeOpenAI, owner: str
):
    runs, _ = model_runs
    run_id = await runs.start(owner, "openai-flaky", "try again")
    summary = await runs.wait(owner, run_id, timeout=60)
    assert (summary.status, summary.assistant) == ("completed", "You said: try again")
    assert len(fake_openai.requests_for("flaky")) >= 2


async def test_bad_key_fails_the_run_with_the_providers_message_and_no_key_in_history(
    model_runs: tuple[AgentRunClient, list[str]],
    fake_openai: FakeOpenAI,
    temporal: Client,
    owner: str,
):
    runs, _ = model_runs
    run_id = await runs.start(owner, "openai-locked", "let me in")
    with pytest.raises(WorkflowFailureError):
        await temporal.get_workflow_handle(run_id).result()
    summary = await runs.summary(owner, run_id)
    assert summary is not None and summary.status == "failed"
    assert summary.error is not None and "Incorrect API key provided" in summary.error
    assert len(fake_openai.requests_for("locked")) == 1  # permanent: not retried
    sent = {k.lower(): v for k, v in fake_openai.headers[-1].items()}
    assert sent["authorization"] == f"Bearer {SECRET}"
    for run in (run_id,):
        history = await temporal.get_workflow_handle(run).fetch_history()
        assert SECRET not in history.to_json()
