"""Scenarios 1, 2 and 6: foreground delegation latency, background throughput, in-process.

agentrun and the hand-written baseline run on the same server, one worker each with
the same settings; latency runs alternate between them so a load change hits both.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid

from temporalio.client import Client

from agentrun import AgentRunClient
from bench._harness import (
    QUICK,
    Figure,
    Report,
    agentrun_worker,
    fresh_server,
    new_owner,
    new_queue,
    percentile,
)
from bench.baseline import BaselineParent, ParentInput, baseline_worker, plain_client
from bench.inprocess import InProcessRuns

FOREGROUND = json.dumps(
    {"steps": [{"tool": "agent_run", "args": {"agent_id": "scripted", "prompt": "hi"}}]}
)


def background_script(children: int) -> str:
    """A parent that delegates ``children`` trivial runs in the background."""
    call = {
        "tool": "agent_run",
        "args": {"agent_id": "scripted", "prompt": "hi", "background": True},
    }
    return json.dumps({"steps": [call] * children})


async def _agentrun_once(runs: AgentRunClient, owner: str, prompt: str) -> float:
    start = time.perf_counter()
    run_id = await runs.start(owner, "scripted", prompt)
    await runs.temporal.get_workflow_handle(run_id).result()
    return time.perf_counter() - start


async def _baseline_once(client: Client, queue: str, request: ParentInput) -> float:
    start = time.perf_counter()
    await client.execute_workflow(
        BaselineParent.run, request, id=f"base-{uuid.uuid4().hex[:12]}", task_queue=queue
    )
    return time.perf_counter() - start


async def run_latency(report: Report) -> None:
    """Scenario 1: p50/p95 of a foreground delegation, sequential runs."""
    count = 20 if QUICK else 60
    async with fresh_server() as server:
        plain = await plain_client(server.address)
        base_queue = new_queue("baseline")
        async with agentrun_worker(server.client) as queue, baseline_worker(plain, base_queue):
            runs, owner = AgentRunClient(server.client, queue), new_owner()
            one = ParentInput(children=1)
            for _ in range(3):  # warm-up: caches, connections, first workflow tasks
                await _agentrun_once(runs, owner, FOREGROUND)
                await _baseline_once(plain, base_queue, one)
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(count):
                ours.append(await _agentrun_once(runs, owner, FOREGROUND))
                theirs.append(await _baseline_once(plain, base_queue, one))
            await _history_figures(report, runs, owner, plain, base_queue)
    inprocess = await _inprocess_latency(count)
    report.samples.update(
        {
            "delegation_agentrun": ours,
            "delegation_baseline": theirs,
            "delegation_inprocess": inprocess,
        }
    )
    _latency_figures(report, ours, theirs, inprocess)


async def _tree_history(client: Client, parent_id: str, child_id: str) -> int:
    """History events of a parent and its one child."""
    total = 0
    for workflow_id in (parent_id, child_id):
        total += len((await client.get_workflow_handle(workflow_id).fetch_history()).events)
    return total


async def _history_figures(
    report: Report, runs: AgentRunClient, owner: str, plain: Client, queue: str
) -> None:
    """History events of one delegation (parent + child), agentrun and baseline."""
    run_id = await runs.start(owner, "scripted", FOREGROUND)
    await runs.temporal.get_workflow_handle(run_id).result()
    base_id = f"base-{uuid.uuid4().hex[:12]}"
    await plain.execute_workflow(
        BaselineParent.run, ParentInput(children=1), id=base_id, task_queue=queue
    )
    # agentrun names a child <parent>.<n>-<agent> (#16); the baseline, <parent>.<n>.
    ours = await _tree_history(runs.temporal, run_id, f"{run_id}.1-scripted")
    theirs = await _tree_history(plain, base_id, f"{base_id}.1")
    s = "delegation"
    report.add(Figure(s, "history events, agentrun parent+child", ours, "events"))
    report.add(Figure(s, "history events, baseline parent+child", theirs, "events"))
    report.add(Figure(s, "history events ratio agentrun/baseline", ours / theirs, "x"))


def _latency_figures(
    report: Report, ours: list[float], theirs: list[float], inprocess: list[float]
) -> None:
    s = "delegation"
    for label, values in (("agentrun", ours), ("baseline", theirs)):
        report.add(Figure(s, f"{label} p50", percentile(values, 50) * 1000, "ms"))
        report.add(Figure(s, f"{label} p95", percentile(values, 95) * 1000, "ms"))
    ratio50 = percentile(ours, 50) / percentile(theirs, 50)
    ratio95 = percentile(ours, 95) / percentile(theirs, 95)
    report.add(Figure(s, "p50 ratio agentrun/baseline", ratio50, "x", "<= 1.2", ratio50 <= 1.2))
    report.add(Figure(s, "p95 ratio agentrun/baseline", ratio95, "x"))
    tax = "durability"
    report.add(Figure(tax, "in-process p50", percentile(inprocess, 50) * 1000, "ms"))
    report.add(Figure(tax, "in-process p95", percentile(inprocess, 95) * 1000, "ms"))
    report.add(
        Figure(
            tax,
            "p50 ratio agentrun/in-process",
            percentile(ours, 50) / percentile(inprocess, 50),
            "x",
        )
    )


async def _inprocess_latency(count: int) -> list[float]:
    runs = InProcessRuns()
    latencies = []
    for _ in range(count + 3):
        start = time.perf_counter()
        await runs.start(FOREGROUND)
        latencies.append(time.perf_counter() - start)
    return latencies[3:]


def throughput_shape() -> tuple[int, int]:
    """(parents, background children each)."""
    return (5, 10) if QUICK else (10, 15)


async def agentrun_throughput(client: Client) -> float:
    """Background delegations per second: all parents at once, until every run closed."""
    parents, children = throughput_shape()
    async with agentrun_worker(client) as queue:
        runs, owner = AgentRunClient(client, queue), new_owner()
        await _agentrun_once(runs, owner, FOREGROUND)  # warm-up
        start = time.perf_counter()
        await asyncio.gather(
            *(_agentrun_once(runs, owner, background_script(children)) for _ in range(parents))
        )
        return parents * children / (time.perf_counter() - start)


async def baseline_throughput(address: str) -> float:
    """The same workload on the baseline's workflows."""
    parents, children = throughput_shape()
    plain, queue = await plain_client(address), new_queue("baseline")
    async with baseline_worker(plain, queue):
        await _baseline_once(plain, queue, ParentInput(children=1))
        request = ParentInput(children=children, background=True)
        start = time.perf_counter()
        await asyncio.gather(*(_baseline_once(plain, queue, request) for _ in range(parents)))
        return parents * children / (time.perf_counter() - start)


async def inprocess_throughput() -> float:
    parents, children = throughput_shape()
    runs = InProcessRuns()
    start = time.perf_counter()
    await asyncio.gather(*(runs.start(background_script(children)) for _ in range(parents)))
    return parents * children / (time.perf_counter() - start)


async def _throughput(synchronous: str) -> tuple[list[float], list[float]]:
    """agentrun's and the baseline's delegations per second, alternating rounds on one
    fresh server started with ``synchronous``, so a load change hits both."""
    ours, theirs = [], []
    async with fresh_server(synchronous) as server:
        for _ in range(1 if QUICK else 3):
            ours.append(await agentrun_throughput(server.client))
            theirs.append(await baseline_throughput(server.address))
    return ours, theirs


def _throughput_figures(
    report: Report, synchronous: str, ours_all: list[float], theirs_all: list[float]
) -> tuple[float, float]:
    s = "throughput"
    ours, theirs = statistics.median(ours_all), statistics.median(theirs_all)
    report.samples[f"throughput_agentrun_{synchronous}"] = ours_all
    report.samples[f"throughput_baseline_{synchronous}"] = theirs_all
    median = f"median of {len(ours_all)}, sync={synchronous}"
    report.add(Figure(s, f"agentrun [{median}]", ours, "deleg/s"))
    report.add(Figure(s, f"baseline [{median}]", theirs, "deleg/s"))
    ratio = ours / theirs
    met = ratio >= 0.8 if synchronous == "normal" else None
    target = ">= 0.8" if synchronous == "normal" else ""
    report.add(Figure(s, f"ratio agentrun/baseline [sync={synchronous}]", ratio, "x", target, met))
    return ours, theirs


async def run_tuning(report: Report) -> None:
    """The embedded server's ``synchronous`` pragma: scenario 2 on ``full`` against the
    shipped ``normal`` (named in BENCH_ONLY only: a one-off study, not a target)."""
    results: dict[str, tuple[float, float]] = {}
    for synchronous in ("normal", "full"):
        results[synchronous] = _throughput_figures(
            report, synchronous, *await _throughput(synchronous)
        )
    for index, label in ((0, "agentrun"), (1, "baseline")):
        full_vs_normal = results["full"][index] / results["normal"][index]
        report.add(Figure("tuning", f"{label} sync=full / sync=normal", full_vs_normal, "x"))


async def run_throughput(report: Report) -> None:
    """Scenario 2, on the shipped pragmas (synchronous=normal)."""
    ours, _ = _throughput_figures(report, "normal", *await _throughput("normal"))
    inprocess = await inprocess_throughput()
    report.add(Figure("durability", "in-process throughput", inprocess, "deleg/s"))
    report.add(
        Figure(
            "durability",
            "throughput ratio agentrun/in-process",
            ours / inprocess,
            "x",
        )
    )
