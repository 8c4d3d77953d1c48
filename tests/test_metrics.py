"""Observability: the worker's Prometheus endpoint, agentrun's counters, and traces."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider, create_tracer_provider
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, AgentRunPlugin, connect
from agentrun import _observability as observability
from agentrun._server import free_ports
from tests.conftest import registry_for_tests, server_address
from tests.helpers import child, eventually, run, script

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def counters(text: str, queue: str) -> dict[str, float]:
    """agentrun's counters in a scrape, summed over the samples of one task queue."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        sample = SAMPLE.match(line)
        if (
            sample
            and sample["name"] in observability.COUNTERS
            and f'task_queue="{queue}"' in sample["labels"]
        ):
            totals[sample["name"]] = totals.get(sample["name"], 0) + float(sample["value"])
    return totals


async def scraped(address: str, queue: str) -> dict[str, float]:
    return counters(await asyncio.to_thread(scrape, address), queue)


@pytest.fixture
async def metered(
    env: WorkflowEnvironment, queue: str
) -> AsyncIterator[tuple[str, AgentRunClient]]:
    """A worker whose runtime serves Prometheus metrics; its address and a client."""
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    runtime = observability.metrics_runtime(address)
    client = await connect(
        server_address(env), plugin=AgentRunPlugin(agents=registry_for_tests()), runtime=runtime
    )
    async with Worker(client, task_queue=queue):
        yield address, AgentRunClient(client, queue)


async def stream_length(runs: AgentRunClient, owner: str, run_id: str) -> int:
    return len([event async for event in runs.events(owner, run_id)])


async def test_counters_move_with_the_runs(metered: tuple[str, AgentRunClient], owner: str):
    address, runs = metered
    before = await scraped(address, runs.task_queue)
    assert before == {}, "a fresh task queue has counted nothing"

    # Completed: a parent and the child it waited for.
    parent = await runs.start(
        owner, "scripted", script({"say": "a"}, run("scripted", child({"say": "b"})))
    )
    await runs.wait(owner, parent, timeout=30)
    failed = await runs.start(owner, "scripted", script({"say": "c"}, {"fail": "no"}))
    await runs.wait(owner, failed, timeout=30)
    stopped = await runs.start(owner, "scripted", script({"say": "d"}, {"sleep": 60}))
    await eventually(lambda: runs.summary(owner, stopped), lambda s: s and s.assistant == "d")
    await runs.stop_tree(owner, stopped)
    await runs.resume(owner, stopped, script({"say": "e"}))  # its epoch 2 completes
    await runs.wait(owner, stopped, timeout=30)

    run_ids = [parent, f"{parent}.1-scripted", failed, stopped]
    events = sum([await stream_length(runs, owner, run_id) for run_id in run_ids])
    expected = {
        observability.RUNS_STARTED: 5,
        observability.RUNS_COMPLETED: 3,
        observability.RUNS_FAILED: 1,
        observability.RUNS_STOPPED: 1,
        observability.EVENTS_PUBLISHED: events,
    }
    after = await eventually(
        lambda: scraped(address, runs.task_queue),
        lambda found: all(found.get(name) == value for name, value in expected.items()),
    )
    # One checkpoint per agent step at least: the says, the sleep, the tool calls.
    assert after[observability.CHECKPOINTS_WRITTEN] >= 7


async def test_the_endpoint_also_serves_temporals_own_metrics(
    metered: tuple[str, AgentRunClient], owner: str
):
    address, runs = metered
    await runs.wait(owner, await runs.start(owner, "scripted", script({"say": "x"})), timeout=30)
    text = await asyncio.to_thread(scrape, address)
    assert "temporal_workflow_completed" in text
    assert f'task_queue="{runs.task_queue}"' in text


async def test_worker_process_serves_metrics_on_the_configured_address(
    env: WorkflowEnvironment,
    queue: str,
    owner: str,
    processes: list[subprocess.Popen[bytes]],
):
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    variables = {
        **os.environ,
        "TEMPORAL_ADDRESS": server_address(env),
        "AGENTRUN_TASK_QUEUE": queue,
        "AGENTRUN_METRICS_ADDRESS": address,
    }
    processes.append(
        subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=variables)
    )
    runs = AgentRunClient(env.client, queue)
    await runs.wait(owner, await runs.start(owner, "scripted", script({"say": "x"})), timeout=60)
    found = await eventually(
        lambda: scraped(address, queue),
        lambda found: found.get(observability.RUNS_COMPLETED) == 1,
    )
    assert found[observability.RUNS_STARTED] == 1


def test_a_bad_metrics_address_is_one_line_and_exit_1():
    done = subprocess.run(
        [sys.executable, "-m", "agentrun.cli", "worker", "--metrics-address", "nowhere"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "error: Metrics address must be host:port, got 'nowhere'"


def test_tracing_is_off_unless_turned_on(monkeypatch: pytest.MonkeyPatch):
    for name in observability.OTLP_ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)
    assert not observability.tracing_enabled(None)
    assert observability.tracing_plugins(None) == []
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert observability.tracing_enabled(None)
    assert not observability.tracing_enabled("0")
    assert observability.tracing_enabled("console")


def in_memory_spans() -> InMemorySpanExporter:
    """Spans of this process kept in memory, through Temporal's replay-safe provider."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, ReplaySafeTracerProvider):
        provider = create_tracer_provider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_a_delegated_runs_span_is_a_child_of_its_parents_delegation(
    env: WorkflowEnvironment, queue: str, owner: str
):
    exporter = in_memory_spans()
    client = await connect(
        server_address(env),
        plugin=AgentRunPlugin(agents=registry_for_tests()),
        plugins=observability.tracing_plugins("1"),
    )
    async with Worker(client, task_queue=queue):
        runs = AgentRunClient(client, queue)
        parent = await runs.start(owner, "scripted", script(run("scripted", child({"say": "b"}))))
        await runs.wait(owner, parent, timeout=30)
    spans = exporter.get_finished_spans()
    by_id = {span.context.span_id: span for span in spans if span.context is not None}

    def parent_of(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, span.name
        return by_id[span.parent.span_id]

    def workflow_id(span: ReadableSpan) -> object:
        return (span.attributes or {}).get("temporalWorkflowID")

    (child_run,) = [
        s
        for s in spans
        if s.name == "RunWorkflow:AgentRun" and workflow_id(s) == f"{parent}.1-scripted"
    ]
    delegation = parent_of(child_run)
    assert (delegation.name, workflow_id(delegation)) == ("StartChildWorkflow:AgentRun", parent)
    lineage = [delegation]
    while lineage[-1].parent is not None:
        lineage.append(parent_of(lineage[-1]))
    started = lineage[-1]
    assert (started.name, workflow_id(started)) == ("StartWorkflow:AgentRun", parent)
    # Every turn of both runs is in the trace the start began (the client's own
    # queries, made outside any span, begin traces of their own).
    turns = [s for s in spans if s.name == "RunActivity:agent_turn"]
    assert {workflow_id(s) for s in turns} == {parent, f"{parent}.1-scripted"}
    assert {s.context.trace_id for s in [started, *turns] if s.context is not None} == {
        started.context.trace_id if started.context else None
    }
