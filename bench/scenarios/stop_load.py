"""Scenario 10: ``stop_tree`` on a 1,000-run tree while two other benchmarks load the
machine (issue #17, point 2).

A root over 27 middles over 36 leaves each (1,000 runs). Each leaf waits for its
owner's approval of a tool call: a running run with no turn. (972 leaves asleep in
their turns would be some 3,000 heartbeats a second, more than this machine's dev
server takes; scenario 3 stops leaves in their turns, scenario 9 runs 1,000 turns.)
Once every run runs, the throughput and streaming scenarios start over and over, each
in a process and on a server of its own (``bench/_load.py``); a few seconds later
``stop_tree`` is called and timed. It must return the final summary of every run and
raise nothing; it should ask no run anything (its client counts its queries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from temporalio.client import Client, Interceptor, OutboundInterceptor, QueryWorkflowInput

from agentrun import AgentRegistry, AgentRunClient, AgentRunPlugin
from agentrun._agents import default_registry
from agentrun._tools import as_tool
from bench._harness import QUICK, Figure, Report, agentrun_worker, fresh_server, new_owner
from bench.scenarios.memory import ROOT
from bench.scenarios.stop import _running, fan_out

# 1 + 27 + 27 x 36 = 1,000 runs (quick: 1 + 9 + 9 x 10 = 100)
MIDDLES, LEAVES = (9, 10) if QUICK else (27, 36)
RUNS = 1 + MIDDLES + MIDDLES * LEAVES
LOADS = ("throughput", "streaming")
LOAD_RAMP = 8.0  # seconds the loads run before the stop
START_TIMEOUT = 420.0


async def lookup(key: str) -> str:
    """The tool each leaf asks to call; it waits for an approval that never comes."""
    return key


def _registry() -> AgentRegistry:
    scripted = default_registry().get("scripted")
    assert scripted is not None
    return AgentRegistry([scripted], tools=[as_tool(lookup, approval=True)])


def tree_script() -> str:
    leaf = {"steps": [{"tool": "lookup", "args": {"key": "k"}}]}
    return json.dumps(fan_out(fan_out(leaf, LEAVES), MIDDLES))


class _CountQueries(Interceptor):
    """Counts the queries a client sends."""

    def __init__(self) -> None:
        self.queries = 0

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        counter = self

        class Counting(OutboundInterceptor):
            async def query_workflow(self, input: QueryWorkflowInput) -> Any:
                counter.queries += 1
                return await super().query_workflow(input)

        return Counting(next)


@contextlib.asynccontextmanager
async def loads(*names: str) -> AsyncIterator[None]:
    """Each named scenario in a loop, a process each (quick-sized), until the block ends."""
    env = {**os.environ, "BENCH_QUICK": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bench._load", name],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in names
    ]
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()


async def _wait_running(client: Client, owner: str) -> float:
    began = time.monotonic()
    while await _running(client, owner) < RUNS:
        if time.monotonic() - began > START_TIMEOUT:
            raise TimeoutError(f"the tree of {RUNS} did not start within {START_TIMEOUT}s")
        await asyncio.sleep(1.0)
    return time.monotonic() - began


async def run(report: Report) -> None:
    """Stop a 1,000-run tree under two loads; time it and check what it returned."""
    async with fresh_server() as server, agentrun_worker(server.client, _registry()) as queue:
        counter = _CountQueries()
        client = Client(
            server.client.service_client,
            namespace=server.client.namespace,
            plugins=[AgentRunPlugin()],
            interceptors=[counter],
        )
        runs, owner = AgentRunClient(client, queue), new_owner()
        root = await runs.start(owner, "scripted", tree_script())
        started_in = await _wait_running(client, owner)
        async with loads(*LOADS):
            await asyncio.sleep(LOAD_RAMP)
            load_before, queries_before = os.getloadavg()[0], counter.queries
            start = time.perf_counter()
            summaries = await runs.stop_tree(owner, root)  # raises nothing, or the run fails
            seconds = time.perf_counter() - start
            load_after = os.getloadavg()[0]
        queries = counter.queries - queries_before
    statuses = Counter(summary.status for summary in summaries)
    s = "stop_load"
    report.add(Figure(s, f"time until the tree of {RUNS} ran", started_in, "s"))
    report.add(Figure(s, f"stop_tree of {RUNS} runs under load", seconds, "s"))
    report.add(Figure(s, "load average at the stop (1 min)", load_before, ""))
    report.add(Figure(s, "load average after the stop (1 min)", load_after, ""))
    final = statuses["stopped"]
    met = final == RUNS and len(summaries) == RUNS
    report.add(Figure(s, "final summaries returned (stopped)", final, "runs", f"= {RUNS}", met))
    report.add(Figure(s, "queries stop_tree sent", queries, "", "0", queries == 0))
