"""Scenario 4: event streaming latency, agent to client, at about 100 events a second.

A ``clock`` agent (the scripted agent, whose ``{now}`` in a ``say`` becomes the wall
time at the moment the turn publishes it) says one word every 10 ms; the client
follows with ``AgentRunClient.events`` and compares that time with its own clock.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter

from temporalio.api.enums.v1 import EventType

from agentrun.agents import (
    AgentRegistry,
    AgentSpec,
    ScriptedAgent,
    Step,
    StepContext,
    default_registry,
)
from agentrun.client import AgentRunClient
from bench._harness import (
    QUICK,
    Figure,
    Report,
    agentrun_worker,
    fresh_server,
    new_owner,
    percentile,
)

INTERVAL = 0.01


class ClockAgent(ScriptedAgent):
    """The scripted agent, stamping ``{now}`` with the time each piece is emitted."""

    async def step(self, ctx: StepContext) -> Step:
        emit = ctx.emit_text

        def stamped(text: str) -> None:
            emit(text.replace("{now}", f"{time.time():.6f}"))

        return await super().step(dataclasses.replace(ctx, emit_text=stamped))


def clock_registry() -> AgentRegistry:
    specs = [spec for spec in (default_registry().get("scripted"),) if spec]
    return AgentRegistry([*specs, AgentSpec(id="clock", runtime=ClockAgent())])


async def run(report: Report) -> None:
    """One run of N words; latency per word, history events per streamed event."""
    words = 200 if QUICK else 1000
    steps = [item for _ in range(words) for item in ({"say": "{now}"}, {"sleep": INTERVAL})]
    async with fresh_server() as server, agentrun_worker(server.client, clock_registry()) as queue:
        runs, owner = AgentRunClient(server.client, queue), new_owner()
        run_id = await runs.start(owner, "clock", json.dumps({"steps": steps}))
        latencies: list[float] = []
        streamed = 0
        first = last = 0.0
        async for item in runs.events(owner, run_id):
            streamed += 1
            if item.event.kind == "text_delta" and item.event.text:
                now = time.time()
                latencies.append(now - float(item.event.text))
                first, last = first or now, now
        history = await server.client.get_workflow_handle(run_id).fetch_history()
    s = "streaming"
    report.samples["streaming_latency"] = latencies
    rate = len(latencies) / (last - first) if last > first else 0.0
    report.add(Figure(s, "words per second achieved", rate, "ev/s"))
    p50, p95 = percentile(latencies, 50) * 1000, percentile(latencies, 95) * 1000
    report.add(Figure(s, "event to client p50", p50, "ms", "<= 80", p50 <= 80))
    report.add(Figure(s, "event to client p95", p95, "ms", "<= 150", p95 <= 150))
    per_event = len(history.events) / streamed
    report.add(
        Figure(s, "history events per streamed event", per_event, "x", "<= 0.3", per_event <= 0.3)
    )
    report.add(Figure(s, "streamed events (all kinds)", streamed, "events"))
    kinds = Counter(EventType.Name(event.event_type) for event in history.events)
    for kind in (
        "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
        "EVENT_TYPE_WORKFLOW_TASK_COMPLETED",
    ):
        short = kind.removeprefix("EVENT_TYPE_").lower()
        report.add(Figure(s, f"history: {short} per streamed event", kinds[kind] / streamed, "x"))
