"""A model call retried for a passing provider error is one log line, not a traceback."""

from __future__ import annotations

import logging

import pytest
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRegistry, AgentRunClient, AgentSpec, ModelAgent
from tests.conftest import agentrun_client

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
