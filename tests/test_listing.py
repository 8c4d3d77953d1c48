"""Listing an owner's runs and trees: from Temporal's visibility store, not one query a run.

A query needs a worker and replays a closed run's whole history there: listing 1,400
runs with one query each at once made every query miss its deadline (issue #18,
finding 6). Listing reads visibility, a closed run's result from the server, and
asks a worker only what only a running or stopped run knows, a few runs at a time.
The 10,000-run figure is a stress run: tests/test_load.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient
from agentrun._reading import READS_AT_ONCE
from tests.conftest import server_address
from tests.helpers import agentrun_cli, child, eventually, run, script, spawn_worker
from tests.properties import STRESS

# Many runs that close at once, several times the reads a client has in flight; `make
# stress` lists 200 (and test_load.py 10,000).
RUNS = 200 if STRESS else 4 * READS_AT_ONCE
# A tree wider than the reads in flight at once; `make stress` draws 30 children.
WIDTH = 30 if STRESS else READS_AT_ONCE + 4
LONG = {"sleep": 60}


def listed(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


async def test_many_closed_runs_are_listed_with_their_output_and_no_worker(
    env: WorkflowEnvironment,
    temporal: Client,
    queue: str,
    owner: str,
    processes: list[subprocess.Popen[bytes]],
):
    address = server_address(env)
    processes.append(spawn_worker(address, queue))
    runs = AgentRunClient(temporal, queue)
    starting = asyncio.Semaphore(50)

    async def start(prompt: str) -> str:
        async with starting:
            return await runs.start(owner, "scripted", prompt)

    ids = await asyncio.gather(*(start(f"n{i}") for i in range(RUNS)))
    failed = await start(script({"say": "trying"}, {"fail": "bad"}))
    query = f"OwnerThreadId = '{owner}' AND ExecutionStatus != 'Running'"
    await eventually(
        lambda: temporal.count_workflows(query), lambda n: n.count == RUNS + 1, timeout=120
    )
    processes[0].kill()
    processes[0].wait()
    # No worker serves the queue now: a query would wait for one until its deadline.
    found = await runs.all(owner)
    by_id = {s.run_id: s for s in found}
    assert [s.run_id for s in found] == sorted(by_id) == sorted([*ids, failed])
    assert [(by_id[r].status, by_id[r].assistant) for r in ids] == [
        ("completed", f"n{i}") for i in range(RUNS)
    ]
    assert (by_id[failed].status, by_id[failed].error) == ("failed", "bad")
    assert await runs.running_or_stopped(owner) == []
    everything = listed(await agentrun_cli(address, queue, owner, "ls", "--all", "--json"))
    assert everything == [summary.model_dump(mode="json") for summary in found]
    failing = await agentrun_cli(address, queue, owner, "ls", "--status", "failed", "--json")
    only_failed = listed(failing)
    assert only_failed == [by_id[failed].model_dump(mode="json")]


async def test_without_a_worker_show_names_the_run_and_queue_and_ls_still_lists_it(
    env: WorkflowEnvironment, test_agents_client: Client, temporal: Client, queue: str, owner: str
):
    runs = AgentRunClient(temporal, queue)
    async with Worker(test_agents_client, task_queue=queue):
        run_id = await runs.start(owner, "scripted", script({"say": "working"}, LONG))
        await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant)
    # The run goes on, but no worker is left to answer for it. Both commands wait out a
    # query deadline (nobody answers): they run side by side.
    address = server_address(env)
    shown, listing = await asyncio.gather(
        agentrun_cli(address, queue, owner, "show", run_id),
        agentrun_cli(address, queue, owner, "ls", "--json"),
    )
    assert shown.returncode == 3, shown.stderr
    assert f"no worker answered the 'summary' query of run {run_id}" in shown.stderr
    assert f"task queue {queue!r}" in shown.stderr
    assert "is the server up" not in shown.stderr
    found = listed(listing)
    assert [(s["run_id"], s["status"], s["agent_id"]) for s in found] == [
        (run_id, "running", "scripted")
    ]
    await temporal.get_workflow_handle(run_id).terminate()


async def test_stop_and_tree_of_a_wide_tree_read_visibility(
    env: WorkflowEnvironment, runs: AgentRunClient, queue: str, owner: str
):
    width = WIDTH
    leaf = child({"say": "leaf"}, LONG)
    root = await runs.start(
        owner, "scripted", script(*[run("scripted", leaf, background=True)] * width, LONG)
    )
    ids = [root, *sorted(f"{root}.{i}-scripted" for i in range(1, width + 1))]
    await eventually(
        lambda: runs.subtree(owner, root),
        lambda tree: (
            [t.summary.run_id for t in tree] == ids and all(t.summary.assistant for t in tree[1:])
        ),
        timeout=60,
    )
    printed = await agentrun_cli(
        server_address(env), queue, owner, "tree", root, "--once", "--json"
    )
    assert printed.returncode == 0, printed.stderr
    tree = json.loads(printed.stdout)
    assert [c["run_id"] for c in tree["children"]] == ids[1:]
    assert {(c["status"], c["assistant"]) for c in tree["children"]} == {("running", "leaf")}
    stopped = await runs.stop_tree(owner, root)
    assert [(s.run_id, s.status) for s in stopped] == [(r, "stopped") for r in ids]
    assert {s.assistant for s in stopped[1:]} == {"leaf"}
