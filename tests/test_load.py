"""Load: 50 trees of 10 runs at once on one worker; nothing lost, nothing stuck. And an
owner with 10,000 runs: listed, drawn and stopped (issue #18, finding 6).

Prints runs per second, the worker's peak memory and how long each command took
(figures, not assertions: speed targets are for the benchmarks). Stress runs of
minutes on two cores, so they run only when asked: ``make stress``
(``AGENTRUN_STRESS=1``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, RunSummary
from agentrun._constants import DELEGATION_STATUS, WORKFLOW_TYPE
from tests.conftest import server_address
from tests.helpers import agentrun_cli, child, eventually, run, script, spawn_worker

TREES = 50
CHILDREN = 9  # + the root: 10 runs a tree
LEAF_READS_AT_ONCE = 20
OWNER_RUNS = int(os.environ.get("AGENTRUN_STRESS_OWNER_RUNS", "10000"))
STARTS_AT_ONCE = 100


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
        *(read(f"{root}.{i}-scripted") for root in roots for i in range(1, CHILDREN + 1))
    )
    assert len(leaves) == TREES * CHILDREN
    assert all(
        s is not None and (s.status, s.assistant) == ("completed", "leaf done") for s in leaves
    )
    total = TREES * (CHILDREN + 1)
    rss = peak_rss_mb(processes[0].pid)
    rate = total / elapsed
    print(f"\n{total} runs in {elapsed:.1f} s: {rate:.1f} runs/s; worker peak RSS {rss:.0f} MiB")


@workflow.defn(name=WORKFLOW_TYPE, sandboxed=False)
class FinishedRun:
    """A stand-in ``AgentRun`` that completes at once as the real one ends: status
    ``completed`` in visibility and its summary as its result. It makes an owner's
    10,000 closed runs in minutes, not the better part of an hour of real runs; what
    the client reads of a closed run (visibility, the result) is the same."""

    @workflow.run
    async def run(self, raw: dict[str, Any]) -> RunSummary:
        workflow.upsert_search_attributes([DELEGATION_STATUS.value_set("completed")])
        return RunSummary(
            run_id=workflow.info().workflow_id,
            agent_id=raw["agent_id"],
            status="completed",
            assistant=f"done: {raw['prompt']}",
            owner_thread_id=raw["owner_thread_id"],
        )


async def timed(what: str, command: Any) -> Any:
    began = time.monotonic()
    result = await command
    print(f"{what}: {time.monotonic() - began:.1f} s")
    return result


@pytest.mark.skipif(not os.environ.get("AGENTRUN_STRESS"), reason="stress: make stress")
@pytest.mark.timeout(2400)
async def test_an_owner_with_ten_thousand_runs_is_listed_drawn_and_stopped(
    env: WorkflowEnvironment,
    temporal: Client,
    queue: str,
    owner: str,
    processes: list[subprocess.Popen[bytes]],
):
    finished_queue = f"{queue}-finished"
    plain = Client(
        temporal.service_client,
        namespace=temporal.namespace,
        data_converter=pydantic_data_converter,
    )
    finished = AgentRunClient(temporal, finished_queue)
    starting = asyncio.Semaphore(STARTS_AT_ONCE)

    async def start(n: int) -> str:
        async with starting:
            return await finished.start(owner, "scripted", f"n{n}", run_id=f"{owner}-{n:05d}")

    began = time.monotonic()
    async with Worker(plain, task_queue=finished_queue, workflows=[FinishedRun]):
        await asyncio.gather(*(start(n) for n in range(OWNER_RUNS)))
        closed = f"OwnerThreadId = '{owner}' AND ExecutionStatus = 'Completed'"
        await eventually(
            lambda: temporal.count_workflows(closed),
            lambda found: found.count == OWNER_RUNS,
            timeout=1800,
            every=2.0,
        )
    print(f"\n{OWNER_RUNS} closed runs made in {time.monotonic() - began:.0f} s")
    address = server_address(env)
    processes.append(spawn_worker(address, queue))
    runs = AgentRunClient(temporal, queue)
    leaf = child({"say": "leaf working"}, {"sleep": 600})
    root = await runs.start(
        owner, "scripted", script(*[run("scripted", leaf, background=True)] * 5, {"sleep": 600})
    )
    tree = [root, *(f"{root}.{n}-scripted" for n in range(1, 6))]
    await eventually(lambda: runs.subtree(owner, root), lambda found: len(found) == 6, 60)

    def cli(*args: str) -> Any:
        return agentrun_cli(address, queue, owner, *args, "--json", timeout=600)

    def ok(done: subprocess.CompletedProcess[str]) -> Any:
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    live = ok(await timed("ls", cli("ls")))
    assert [s["run_id"] for s in live] == sorted(tree)
    everything = ok(await timed("ls --all", cli("ls", "--all")))
    assert len(everything) == OWNER_RUNS + len(tree)
    assert everything[0] == {
        **everything[0],
        "run_id": f"{owner}-00000",
        "status": "completed",
        "assistant": "done: n0",
    }
    drawn = ok(await timed("tree --once", cli("tree", root, "--once")))
    assert [c["run_id"] for c in drawn["children"]] == tree[1:]
    stopped = ok(await timed("stop", cli("stop", root)))
    assert [(s["run_id"], s["status"]) for s in stopped] == [(r, "stopped") for r in tree]
