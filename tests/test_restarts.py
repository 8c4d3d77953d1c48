"""Restarts lose nothing: the Temporal server killed and restarted, a worker killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient, connect
from agentrun._server import EmbeddedServer
from tests.conftest import server_address
from tests.helpers import child, eventually, run, script, spawn_worker


def tree_script(children: int, nap: float) -> str:
    worker = child({"say": "started"}, {"sleep": nap}, {"say": "finished"})
    fan_out = [run("scripted", worker, background=True) for _ in range(children)]
    return script(*fan_out, {"sleep": nap}, {"say": "root finished"})


async def started(runs: AgentRunClient, owner: str, run_id: str) -> None:
    # Generous: three worker processes start on a machine that may be loaded.
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s is not None, timeout=120)


async def assert_tree_completed(runs: AgentRunClient, owner: str, root: str, children: int):
    summary = await runs.wait(owner, root, timeout=90)
    assert (summary.status, summary.assistant) == ("completed", "root finished")
    for index in range(1, children + 1):
        done = await runs.summary(owner, f"{root}.{index}-scripted")
        assert done is not None and (done.status, done.assistant) == ("completed", "finished")
        thread = await runs.thread(owner, f"{root}.{index}-scripted")
        assert thread is not None and [m.content for m in thread[1:]] == ["started", "finished"]


async def test_server_killed_and_restarted_on_its_database_every_run_completes(
    tmp_path: Path, queue: str, owner: str, processes: list[subprocess.Popen[bytes]]
):
    first = EmbeddedServer(db=tmp_path / "restart.db")
    await first.start()
    processes.append(spawn_worker(first.address, queue))
    client = await connect(first.address)
    runs = AgentRunClient(client, queue)
    root = await runs.start(owner, "scripted", tree_script(children=3, nap=3))
    await started(runs, owner, f"{root}.3-scripted")
    assert first.pid is not None
    os.killpg(first.pid, signal.SIGKILL)  # the server's own session: nothing survives
    await first.stop()
    await asyncio.sleep(1)

    second = EmbeddedServer(db=first.db, port=first.port, ui_port=first.ui_port)
    await second.start()
    try:
        await assert_tree_completed(runs, owner, root, children=3)
    finally:
        await second.stop()


async def test_three_workers_one_killed_mid_tree_every_tree_completes(
    env: WorkflowEnvironment,
    temporal: Client,
    queue: str,
    owner: str,
    processes: list[subprocess.Popen[bytes]],
):
    for _ in range(3):
        processes.append(spawn_worker(server_address(env), queue))
    runs = AgentRunClient(temporal, queue)
    roots = [await runs.start(owner, "scripted", tree_script(children=3, nap=4)) for _ in range(3)]
    for root in roots:
        await started(runs, owner, f"{root}.3-scripted")
    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait()
    for root in roots:
        await assert_tree_completed(runs, owner, root, children=3)
