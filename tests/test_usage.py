"""What runs spend: every model response's usage counted in its run, and priced.

A model-driven planner on a local OpenAI-compatible server (which reports usage, as
OpenAI does when asked) delegates to two model-driven researchers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from genai_prices import Usage as PricedUsage
from genai_prices import calc_price
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRegistry, AgentRunClient, AgentSpec, ModelAgent, ScriptedAgent
from agentrun._agents._registry_file import build_model
from agentrun._constants import WORKFLOW_TYPE
from agentrun._models import AgentRunInput
from agentrun._usage import ModelPrice, Usage
from agentrun._visibility import start_search_attributes
from tests.conftest import agentrun_client, server_address
from tests.fake_openai import FakeOpenAI
from tests.helpers import agentrun_cli

PRICE = ModelPrice(input=1.5, output=4.0)


@pytest.fixture
async def runs(
    env: WorkflowEnvironment, queue: str, fake_openai: FakeOpenAI
) -> AsyncIterator[AgentRunClient]:
    def model(name: str) -> ModelAgent:
        return ModelAgent(build_model(f"openai:{name}", fake_openai.base_url))

    registry = AgentRegistry(
        [
            AgentSpec(id="scripted", runtime=ScriptedAgent()),
            AgentSpec(id="planner", runtime=model("fanout"), allowed_agents=("researcher",)),
            AgentSpec(id="researcher", runtime=model("gpt-4o-mini"), allowed_agents=()),
            AgentSpec(
                id="priced",
                runtime=ModelAgent(
                    build_model("openai:house-model", fake_openai.base_url), price=PRICE
                ),
                allowed_agents=(),
            ),
        ]
    )
    async with Worker(agentrun_client(env.client, registry), task_queue=queue):
        yield AgentRunClient(env.client, queue)


def reported(fake: FakeOpenAI, model: str) -> list[dict[str, int]]:
    return [u for u in fake.usages if u["model"] == model]


async def test_each_run_counts_and_prices_what_its_model_reported(
    env: WorkflowEnvironment,
    runs: AgentRunClient,
    fake_openai: FakeOpenAI,
    queue: str,
    owner: str,
):
    root = await runs.start(owner, "planner", "Look into tides and winds")
    final = await runs.wait(owner, root, timeout=120)
    assert final.assistant == "Both are in."

    planned = reported(fake_openai, "fanout")
    assert final.usage.model_dump(exclude={"cost_usd"}) == {
        "requests": 2,
        "input_tokens": sum(u["prompt_tokens"] for u in planned),
        "output_tokens": sum(u["completion_tokens"] for u in planned),
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "tool_calls": 2,
        "unpriced_requests": 2,  # genai-prices knows no model "fanout"
    }
    researched = reported(fake_openai, "gpt-4o-mini")
    assert len(researched) == 2
    # Started at once by one response, the children are numbered .1 and .2.
    children = [await runs.summary(owner, f"{root}.{n}-researcher") for n in (1, 2)]
    total = Usage()
    for child in children:
        assert child is not None and child.usage.requests == 1 and not child.usage.unpriced_requests
        total += child.usage
    assert total.input_tokens == sum(u["prompt_tokens"] for u in researched)
    assert total.output_tokens == sum(u["completion_tokens"] for u in researched)
    expected = sum(
        float(
            calc_price(
                PricedUsage(input_tokens=u["prompt_tokens"], output_tokens=u["completion_tokens"]),
                model_ref="gpt-4o-mini",
                provider_id="openai",
            ).total_price
        )
        for u in researched
    )
    assert total.cost_usd == pytest.approx(expected) and expected > 0

    shown = await agentrun_cli(server_address(env), queue, owner, "show", root)
    assert "2 requests, 2 tool calls" in shown.stdout and "unknown price" in shown.stdout


async def test_an_agents_own_price_prices_an_unlisted_model(
    runs: AgentRunClient, fake_openai: FakeOpenAI, owner: str
):
    run_id = await runs.start(owner, "priced", "hello")
    final = await runs.wait(owner, run_id, timeout=60)
    [usage] = reported(fake_openai, "house-model")
    expected = (usage["prompt_tokens"] * 1.5 + usage["completion_tokens"] * 4.0) / 1_000_000
    assert final.usage.cost_usd == pytest.approx(expected)
    assert final.usage.unpriced_requests == 0


async def test_usage_is_carried_across_continue_as_new(
    env: WorkflowEnvironment, runs: AgentRunClient, fake_openai: FakeOpenAI, owner: str
):
    run_input = AgentRunInput(
        owner_thread_id=owner, agent_id="planner", prompt="Look", continue_as_new_after=1
    )
    run_id = "usage-" + uuid.uuid4().hex[:8]
    await env.client.start_workflow(
        WORKFLOW_TYPE,
        run_input,
        id=run_id,
        task_queue=runs.task_queue,
        search_attributes=start_search_attributes(run_input),
    )
    final = await runs.wait(owner, run_id, timeout=120)
    executions = [e async for e in env.client.list_workflows(f"WorkflowId = '{run_id}'")]
    assert len(executions) >= 2  # it did continue as new
    planned = reported(fake_openai, "fanout")
    assert (final.usage.requests, final.usage.tool_calls) == (2, 2)
    assert final.usage.input_tokens == sum(u["prompt_tokens"] for u in planned)
    # The tree's total counts every execution's share once (the largest memo of each).
    tree = await runs.spend(owner, run_id)
    every = fake_openai.usages
    assert (tree.requests, tree.input_tokens) == (
        len(every),
        sum(u["prompt_tokens"] for u in every),
    )
