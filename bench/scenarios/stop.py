"""Scenario 3: stop cascade. Trees whose leaves are all mid-sleep, stopped from the root."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid

from temporalio.client import Client, WorkflowFailureError

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
from bench.baseline import BaselineTree, baseline_worker

LEAF = {"steps": [{"sleep": 600}]}


def _delegate(prompt: object) -> dict[str, object]:
    return {
        "tool": "agent_run",
        "args": {"agent_id": "scripted", "prompt": prompt, "background": True},
    }


# runs in the tree: (middle runs under the root, leaves under each middle; 0 = leaves only).
SHAPES = {10: (9, 0), 100: (9, 10), 300: (13, 22)}
# Every leaf of the 300 tree holds a turn: both workers get room for them.
MAX_TURNS_ENV = "AGENTRUN_MAX_CONCURRENT_TURNS"
TURN_SLOTS = "400"


def tree_script(size: int) -> str:
    """A root over 9 leaves (10 runs), or over middles of leaves (100: 9 x 10; 300: 13 x 22)."""
    middles, leaves = SHAPES[size]
    if leaves == 0:
        return json.dumps({"steps": [_delegate(LEAF)] * middles})
    middle = {"steps": [_delegate(LEAF)] * leaves}
    return json.dumps({"steps": [_delegate(middle)] * middles})


async def _running(client: Client, owner: str) -> int:
    query = f"OwnerThreadId = '{owner}' AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def _baseline_running(client: Client) -> int:
    query = "WorkflowType = 'BaselineTree' AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def _wait_running(client: Client, owner: str | None, size: int, timeout: float = 180) -> None:
    """Until ``size`` runs of the owner (None: baseline nodes) are running."""
    deadline = time.monotonic() + timeout
    count = _baseline_running(client) if owner is None else _running(client, owner)
    while await count < size:
        count = _baseline_running(client) if owner is None else _running(client, owner)
        if time.monotonic() > deadline:
            raise TimeoutError(f"tree of {size} did not start within {timeout}s")
        await asyncio.sleep(0.2)


async def baseline_stop_once(client: Client, queue: str, size: int) -> float:
    """Seconds from the root's cancel until no node of the baseline tree is running."""
    middles, leaves = SHAPES[size]
    fanout = [middles, leaves] if leaves else [middles]
    handle = await client.start_workflow(
        BaselineTree.run, fanout, id=f"baseline-tree-{uuid.uuid4().hex[:8]}", task_queue=queue
    )
    await _wait_running(client, None, size)
    await asyncio.sleep(1.0)  # every leaf is now inside its sleep
    start = time.perf_counter()
    await handle.cancel()
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    while await _baseline_running(client):
        await asyncio.sleep(0.02)
    return time.perf_counter() - start


async def _last_close(client: Client, owner: str) -> float:
    """The wall time the tree's last run closed, as the server recorded it."""
    closes = [
        execution.close_time.timestamp()
        async for execution in client.list_workflows(f"OwnerThreadId = '{owner}'")
        if execution.close_time is not None
    ]
    return max(closes)


async def stop_once(runs: AgentRunClient, size: int) -> tuple[float, float, float, float]:
    """Seconds from ``stop_tree`` until every run closed (seen by the client; recorded
    by the server), and of the subtree walk alone over open, then closed runs."""
    owner = new_owner()
    root = await runs.start(owner, "scripted", tree_script(size))
    await _wait_running(runs.temporal, owner, size)
    await asyncio.sleep(1.0)  # every leaf is now inside its sleep
    summary = await runs.summary(owner, root)
    assert summary is not None
    walk_start = time.perf_counter()
    await runs.subtree(owner, root)  # what stop_tree does first, timed alone for the breakdown
    walk = time.perf_counter() - walk_start
    start, wall_start = time.perf_counter(), time.time()
    await runs.stop_tree(owner, root)
    while await _running(runs.temporal, owner):
        await asyncio.sleep(0.02)
    seen = time.perf_counter() - start
    last_close = await _last_close(runs.temporal, owner) - wall_start
    walk_start = time.perf_counter()
    await runs.subtree(owner, root)  # the walk stop_tree ends with, now over closed runs
    return seen, last_close, walk, time.perf_counter() - walk_start


async def run(report: Report) -> None:
    """Stop trees of 10, 100 and 300 runs, agentrun's and the baseline's, a few times."""
    repeats = 1 if QUICK else 3
    os.environ[MAX_TURNS_ENV] = TURN_SLOTS
    try:
        async with fresh_server() as server, agentrun_worker(server.client) as queue:
            baseline_queue = new_queue("baseline")
            async with baseline_worker(server.client, baseline_queue):
                for size in SHAPES:
                    runs = AgentRunClient(server.client, queue)
                    results = [await stop_once(runs, size) for _ in range(repeats)]
                    bases = [
                        await baseline_stop_once(server.client, baseline_queue, size)
                        for _ in range(repeats)
                    ]
                    _report(report, size, results, bases)
    finally:
        del os.environ[MAX_TURNS_ENV]


def _report(
    report: Report,
    size: int,
    results: list[tuple[float, float, float, float]],
    bases: list[float],
) -> None:
    stops = [result[0] for result in results]
    report.samples[f"stop_{size}"] = stops
    report.samples[f"stop_baseline_{size}"] = bases
    p50, base = percentile(stops, 50), percentile(bases, 50)
    target, met = ("<= 1.0 s", p50 <= 1.0) if size == 100 else ("", None)
    report.add(Figure("stop", f"tree of {size}: stop to all closed p50", p50, "s", target, met))
    report.add(Figure("stop", f"tree of {size}: max of {len(stops)}", max(stops), "s"))
    report.add(Figure("stop", f"tree of {size}: baseline cancel to all closed p50", base, "s"))
    report.add(Figure("stop", f"tree of {size}: ratio agentrun/baseline p50", p50 / base, "x"))
    for index, name in (
        (1, "stop to last close (server) p50"),
        (2, "subtree walk over open runs p50"),
        (3, "subtree walk over closed runs p50"),
    ):
        values = [result[index] for result in results]
        report.add(Figure("stop", f"tree of {size}: {name}", percentile(values, 50), "s"))
