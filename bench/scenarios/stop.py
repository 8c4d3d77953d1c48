"""Scenario 3: stop cascade. Trees whose leaves are all mid-sleep, stopped from the root."""

from __future__ import annotations

import asyncio
import json
import time

from temporalio.client import Client

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

LEAF = {"steps": [{"sleep": 600}]}


def _delegate(prompt: object) -> dict[str, object]:
    return {
        "tool": "agent_run",
        "args": {"agent_id": "scripted", "prompt": prompt, "background": True},
    }


# runs in the tree: (middle runs under the root, leaves under each middle; 0 = leaves only).
# No 300: one worker runs at most 100 turns at once (the SDK's max_concurrent_activities,
# which build_worker leaves at its default), so 286 leaves cannot all be mid-sleep.
SHAPES = {10: (9, 0), 100: (9, 10)}


def tree_script(size: int) -> str:
    """A root over 9 leaves (10 runs), or over 9 middles of 10 leaves each (100 runs)."""
    middles, leaves = SHAPES[size]
    if leaves == 0:
        return json.dumps({"steps": [_delegate(LEAF)] * middles})
    middle = {"steps": [_delegate(LEAF)] * leaves}
    return json.dumps({"steps": [_delegate(middle)] * middles})


async def _running(client: Client, owner: str) -> int:
    query = f"OwnerThreadId = '{owner}' AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def _wait_running(client: Client, owner: str, size: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while await _running(client, owner) < size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"tree of {size} did not start within {timeout}s")
        await asyncio.sleep(0.2)


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
    await runs._subtree(summary)  # what stop_tree does first, timed alone for the breakdown
    walk = time.perf_counter() - walk_start
    start, wall_start = time.perf_counter(), time.time()
    await runs.stop_tree(owner, root)
    while await _running(runs.temporal, owner):
        await asyncio.sleep(0.02)
    seen = time.perf_counter() - start
    last_close = await _last_close(runs.temporal, owner) - wall_start
    walk_start = time.perf_counter()
    await runs._subtree(summary)  # the walk stop_tree ends with, now over closed runs
    return seen, last_close, walk, time.perf_counter() - walk_start


async def run(report: Report) -> None:
    """Stop trees of 10 and 100 runs, a few times each."""
    repeats = 1 if QUICK else 3
    async with fresh_server() as server, agentrun_worker(server.client) as queue:
        runs = AgentRunClient(server.client, queue)
        for size in SHAPES:
            results = [await stop_once(runs, size) for _ in range(repeats)]
            stops = [result[0] for result in results]
            closes = [result[1] for result in results]
            walks = [result[2] for result in results]
            closed_walks = [result[3] for result in results]
            report.samples[f"stop_{size}"] = stops
            target, met = ("<= 1.0 s", percentile(stops, 50) <= 1.0) if size == 100 else ("", None)
            report.add(
                Figure(
                    "stop",
                    f"tree of {size}: stop to all closed p50",
                    percentile(stops, 50),
                    "s",
                    target,
                    met,
                )
            )
            report.add(Figure("stop", f"tree of {size}: max of {repeats}", max(stops), "s"))
            report.add(
                Figure(
                    "stop",
                    f"tree of {size}: stop to last close (server) p50",
                    percentile(closes, 50),
                    "s",
                )
            )
            report.add(
                Figure(
                    "stop",
                    f"tree of {size}: subtree walk over closed runs p50",
                    percentile(closed_walks, 50),
                    "s",
                )
            )
            report.add(
                Figure(
                    "stop",
                    f"tree of {size}: subtree walk over open runs p50",
                    percentile(walks, 50),
                    "s",
                )
            )
