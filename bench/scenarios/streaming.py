"""Scenario 4: event streaming latency, agent to client, at about 100 events a second.

A ``clock`` agent (the scripted agent, whose ``{now}`` in a ``say`` becomes the wall
time at the moment the turn publishes it) says one word every 20 ms (two events: the
``text_delta`` and the ``message``); the client follows with ``AgentRunClient.events``
and compares that time with its own clock. Batch settings of the worker while followed
(``AGENTRUN_STREAM_BATCH_MS``): the default, and longer ones that trade latency for
history; and the history of the same run when nobody follows it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Iterator

from temporalio.api.enums.v1 import EventType

from agentrun import AgentRegistry, AgentRunClient, AgentSpec, ScriptedAgent, Step, StepContext
from agentrun._agents import default_registry
from bench._harness import (
    QUICK,
    Figure,
    Report,
    agentrun_worker,
    fresh_server,
    new_owner,
    percentile,
)

INTERVAL = 0.02
STREAM_BATCH_ENV = "AGENTRUN_STREAM_BATCH_MS"
BATCHES_MS = (50, 200)
# Seconds between words for the rate sweep: about 25, 50, 100 and 200 events a second.
SWEEP_INTERVALS = (0.08, 0.04, 0.02, 0.008)


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


@contextlib.contextmanager
def _batch(ms: int) -> Iterator[None]:
    """The worker built inside reads its stream batch interval from the environment."""
    os.environ[STREAM_BATCH_ENV] = str(ms)
    try:
        yield
    finally:
        del os.environ[STREAM_BATCH_ENV]


async def run(report: Report) -> None:
    """~100 events/s at each batch setting, followed and not; in a full run, latency
    against the rate too."""
    for ms in BATCHES_MS:
        with _batch(ms):
            await _at_100(report, ms)
    await _unwatched(report, 100 if QUICK else 500)
    if not QUICK:
        await _sweep(report)


@dataclasses.dataclass
class _Followed:
    latencies: list[float]
    streamed: int
    history: int
    kinds: Counter[str]
    rate: float  # events a second, as the client received the words


async def _follow_clock(interval: float, words: int) -> _Followed:
    """What following one clock run of ``words`` words, ``interval`` apart, measured."""
    steps = [item for _ in range(words) for item in ({"say": "{now}"}, {"sleep": interval})]
    async with fresh_server() as server, agentrun_worker(server.client, clock_registry()) as queue:
        runs, owner = AgentRunClient(server.client, queue), new_owner()
        # A follower from the start, as ``agentrun run`` is.
        run_id = await runs.start(owner, "clock", json.dumps({"steps": steps}), follow=True)
        latencies: list[float] = []
        streamed, first, last = 0, 0.0, 0.0
        async for item in runs.events(owner, run_id):
            streamed += 1
            if item.event.kind == "text_delta" and item.event.text:
                last = time.time()
                first = first or last
                latencies.append(last - float(item.event.text))
        history = await server.client.get_workflow_handle(run_id).fetch_history()
    kinds = Counter(EventType.Name(event.event_type) for event in history.events)
    rate = 2 * (len(latencies) - 1) / (last - first) if last > first else 0.0
    return _Followed(latencies, streamed, len(history.events), kinds, rate)


async def _at_100(report: Report, ms: int) -> None:
    s, tag = "streaming", f" [batch={ms}ms]"
    run = await _follow_clock(INTERVAL, 100 if QUICK else 500)
    report.samples[f"streaming_latency_{ms}ms"] = run.latencies
    report.add(Figure(s, "events per second achieved" + tag, run.rate, "ev/s"))
    p50, p95 = percentile(run.latencies, 50) * 1000, percentile(run.latencies, 95) * 1000
    report.add(Figure(s, "event to client p50" + tag, p50, "ms", "<= 80", p50 <= 80))
    report.add(Figure(s, "event to client p95" + tag, p95, "ms", "<= 150", p95 <= 150))
    per_event = run.history / run.streamed
    met = per_event <= 0.3
    report.add(Figure(s, "history events per streamed event" + tag, per_event, "x", "<= 0.3", met))
    for kind in ("EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED", "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"):
        short = kind.removeprefix("EVENT_TYPE_").lower()
        figure = f"history: {short} per streamed event{tag}"
        report.add(Figure(s, figure, run.kinds[kind] / run.streamed, "x"))


async def _unwatched(report: Report, words: int) -> None:
    """The same clock run with nobody following while it runs: its turn batches slowly
    (``AGENTRUN_STREAM_UNWATCHED_BATCH_MS``); its stream is read once it has ended."""
    steps = [item for _ in range(words) for item in ({"say": "{now}"}, {"sleep": INTERVAL})]
    async with fresh_server() as server, agentrun_worker(server.client, clock_registry()) as queue:
        runs, owner = AgentRunClient(server.client, queue), new_owner()
        run_id = await runs.start(owner, "clock", json.dumps({"steps": steps}))
        await runs.wait(owner, run_id, timeout=600)
        streamed = len([item async for item in runs.events(owner, run_id)])
        history = await server.client.get_workflow_handle(run_id).fetch_history()
    per_event = len(history.events) / streamed
    figure = "history events per streamed event [nobody following]"
    report.add(Figure("streaming", figure, per_event, "x", "<= 0.1", per_event <= 0.1))


async def _sweep(report: Report) -> None:
    """Latency against the event rate, default batch: the plot's x axis."""
    for interval in SWEEP_INTERVALS:
        run = await _follow_clock(interval, 200)
        report.samples[f"streaming_rate_{run.rate:.0f}"] = run.latencies
        for pct in (50, 95):
            name = f"event to client p{pct} at {run.rate:.0f} ev/s"
            report.add(Figure("streaming", name, percentile(run.latencies, pct) * 1000, "ms"))
