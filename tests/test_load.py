"""Load: 50 trees of 10 runs at once on one worker; nothing lost, nothing stuck.

Prints runs per second and the worker's peak memory (figures, not assertions: speed
targets are for the benchmarks). A stress run of a minute or more on two cores, so it
runs only when asked: ``make stress`` (``AGENTRUN_STRESS=1``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient, RunSummary
from tests.conftest import server_address
from tests.helpers import child, run, script, spawn_worker

TREES = 50
CHILDREN = 9  # + the root: 10 runs a tree
LEAF_READS_AT_ONCE = 20


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@pytest.mark.skipif(not os.environ.get("AGENTRUN_STRESS"), reason="stress: make stress")
@pytest.mark.timeout(600)
async def test_fifty_trees_of_ten_runs_complete_on_one_worker(
    env: WorkflowEnvironment,
    temporal: Client,
    queue: str,
    owner: str,
    processes: list[subprocess.Popen[bytes]],
):
    processes.append(spawn_worker(server_address(env), queue))
    runs = AgentRunClient(temporal, queue)
    leaf = child({"say": "leaf working"}, {"sleep": 0.2}, {"say": "leaf done"})
    prompt = script(*[run("scripted", leaf, background=True)] * CHILDREN, {"say": "tree done"})
    started = time.monotonic()
    roots = await asyncio.gather(*(runs.start(owner, "scripted", prompt) for _ in range(TREES)))
    finals = await asyncio.gather(*(runs.wait(owner, root, timeout=240) for root in roots))
    elapsed = time.monotonic() - started
    assert {(f.status, f.assistant) for f in finals} == {("completed", "tree done")}
    # A closed run answers a query by replaying its history: read the 450 leaves a few
    # at a time, as a caller that must not time out would.
    reading = asyncio.Semaphore(LEAF_READS_AT_ONCE)

    async def read(run_id: str) -> RunSummary | None:
        async with reading:
            return await runs.summary(owner, run_id)

    leaves = await asyncio.gather(
        *(read(f"{root}.{i}") for root in roots for i in range(1, CHILDREN + 1))
    )
    assert len(leaves) == TREES * CHILDREN
    assert all(
        s is not None and (s.status, s.assistant) == ("completed", "leaf done") for s in leaves
    )
    total = TREES * (CHILDREN + 1)
    rss = peak_rss_mb(processes[0].pid)
    rate = total / elapsed
    print(f"\n{total} runs in {elapsed:.1f} s: {rate:.1f} runs/s; worker peak RSS {rss:.0f} MiB")
