"""A model call retried for a passing provider error: one log line, not a traceback, and
`agentrun show` says so with the provider's message and the next attempt."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRegistry, AgentRunClient, AgentSpec, ModelAgent
from tests.conftest import agentrun_client, server_address
from tests.helpers import agentrun_cli, current_details, eventually

OVERLOADED = {"error": {"message": "The provider is overloaded, try again later"}}


def overloaded_once() -> FunctionModel:
    """A model whose first call fails as an overloaded provider's does (HTTP 529)."""
    calls: list[int] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        if len(calls) == 1:
            raise ModelHTTPError(529, "busy-model", OVERLOADED)
        return ModelResponse(parts=[TextPart(content="answered at last")])

    return FunctionModel(answer)


async def test_a_retried_model_call_is_logged_in_one_line(
    env: WorkflowEnvironment, queue: str, owner: str, caplog: pytest.LogCaptureFixture
):
    agent = AgentSpec(id="busy", runtime=ModelAgent(overloaded_once()), allowed_agents=())
    caplog.set_level(logging.WARNING, logger="temporalio.activity")
    async with Worker(agentrun_client(env.client, AgentRegistry([agent])), task_queue=queue):
        runs = AgentRunClient(env.client, queue)
        run_id = await runs.start(owner, "busy", "are you there?")
        summary = await runs.wait(owner, run_id, timeout=60)
    assert (summary.status, summary.assistant) == ("completed", "answered at last")
    retried = [r for r in caplog.records if "will be retried" in r.getMessage()]
    assert len(retried) == 1, [r.getMessage() for r in caplog.records]
    line = retried[0].getMessage()
    assert line.startswith(f"Turn of run {run_id} failed (attempt 1) and will be retried: ")
    assert "overloaded" in line and "\n" not in line and retried[0].exc_info is None
    assert "Traceback" not in caplog.text


def overloaded_until(released: list[bool]) -> FunctionModel:
    """A model that fails as an overloaded provider does until ``released`` is set."""

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not released:
            raise ModelHTTPError(529, "busy-model", OVERLOADED)
        return ModelResponse(parts=[TextPart(content="answered at last")])

    return FunctionModel(answer)


@dataclass
class BusyRun:
    """A run of an agent whose provider is overloaded until ``release`` is called."""

    runs: AgentRunClient
    run_id: str
    released: list[bool]

    def release(self) -> None:
        self.released.append(True)


@pytest.fixture
async def busy(env: WorkflowEnvironment, queue: str, owner: str) -> AsyncIterator[BusyRun]:
    released: list[bool] = []
    agent = AgentSpec(id="busy", runtime=ModelAgent(overloaded_until(released)), allowed_agents=())
    async with Worker(agentrun_client(env.client, AgentRegistry([agent])), task_queue=queue):
        runs = AgentRunClient(env.client, queue)
        yield BusyRun(runs, await runs.start(owner, "busy", "are you there?"), released)


async def test_show_says_a_turn_is_retried_with_the_providers_message_and_next_attempt(
    env: WorkflowEnvironment, busy: BusyRun, queue: str, owner: str
):
    address, run_id = server_address(env), busy.run_id

    async def shown() -> dict[str, Any]:
        done = await agentrun_cli(address, queue, owner, "show", run_id, "--json")
        assert done.returncode == 0, done.stderr
        shown: dict[str, Any] = json.loads(done.stdout)
        return shown

    # Between attempts (an attempt that runs has no next one yet).
    def waiting(details: dict[str, Any]) -> bool:
        return any(retry["next_attempt_at"] for retry in details["retrying"])

    details = await eventually(shown, waiting, timeout=60, every=1)
    (retry,) = details["retrying"]
    assert retry["activity"] == "agent_turn" and retry["attempt"] >= 2
    assert "overloaded" in retry["error"] and retry["next_attempt_at"]
    human = await agentrun_cli(address, queue, owner, "show", run_id)
    assert "retrying" in human.stdout and "overloaded" in human.stdout, human.stdout
    busy.release()
    summary = await busy.runs.wait(owner, run_id, timeout=60)
    assert (summary.status, summary.assistant) == ("completed", "answered at last")


async def test_a_retried_turn_says_so_on_the_runs_stream_and_in_the_web_ui(
    env: WorkflowEnvironment, busy: BusyRun, owner: str
):
    details = await eventually(
        lambda: current_details(env.client, busy.run_id), lambda d: "retrying" in d, timeout=60
    )
    assert "overloaded" in details and " next (Temporal retries the turn)" in details
    busy.release()
    await busy.runs.wait(owner, busy.run_id, timeout=60)
    retries = [
        item.event.text or ""
        async for item in busy.runs.events(owner, busy.run_id)
        if item.event.kind == "turn_retrying"
    ]
    assert retries and "overloaded" in retries[0] and "attempt 2 next" in retries[0]
