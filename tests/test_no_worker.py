"""Without a worker, commands say so at once and plainly, and never hang in silence.

Each test has a task queue of its own that no worker polls until the test starts one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient
from tests.conftest import server_address
from tests.helpers import ROOT, agentrun_cli, eventually, script

NOTICE = "no worker is polling task queue '{queue}' at {address}"


def assert_plain_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], done.stderr


async def test_run_says_once_that_no_worker_polls_then_waits_for_one(
    env: WorkflowEnvironment,
    test_agents_client: Client,
    queue: str,
    owner: str,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
):
    address = server_address(env)
    stderr = tmp_path / "stderr"
    variables = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "AGENTRUN_TASK_QUEUE": queue,
        "AGENTRUN_OWNER": owner,
    }
    prompt = script({"say": "hello after the wait"})
    with stderr.open("wb") as err:
        command = [sys.executable, "-m", "agentrun.cli", "run", "scripted", prompt]
        process = subprocess.Popen(
            command, cwd=ROOT, env=variables, stdout=subprocess.PIPE, stderr=err
        )
    processes.append(process)
    notice = NOTICE.format(queue=queue, address=address)
    await eventually(lambda: asyncio.to_thread(stderr.read_text), lambda text: notice in text)
    await asyncio.sleep(3)  # waiting quietly: nothing more is said while no worker comes
    async with Worker(test_agents_client, task_queue=queue):
        code = await asyncio.to_thread(process.wait, 90)
    assert process.stdout is not None
    output, said = process.stdout.read().decode(), stderr.read_text()
    assert code == 0, said
    assert "hello after the wait" in output
    assert said.count("no worker is polling") == 1, said
    assert "lost the stream" not in said and "Traceback" not in said


async def test_run_no_wait_exits_3_without_starting_the_run(
    env: WorkflowEnvironment, queue: str, owner: str
):
    address = server_address(env)
    done = await agentrun_cli(address, queue, owner, "run", "scripted", "hi", "--no-wait")
    assert_plain_line(done, 3, NOTICE.format(queue=queue, address=address))
    assert "the run was not started" in done.stderr and "agentrun worker" in done.stderr
    listed = await agentrun_cli(address, queue, owner, "ls", "--all", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr


async def test_ls_lists_without_a_worker_and_other_commands_say_none_polls(
    env: WorkflowEnvironment, queue: str, owner: str
):
    address = server_address(env)
    run_id = await AgentRunClient(env.client, queue).start(owner, "scripted", "hi")
    listed = await agentrun_cli(address, queue, owner, "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)] == [(run_id, "running")]
    assert NOTICE.format(queue=queue, address=address) in listed.stderr
    for command in ("show", "thread", "stop", "resume", "watch"):
        extra = ("--no-wait",) if command == "watch" else ()
        done = await agentrun_cli(address, queue, owner, command, run_id, *extra)
        assert_plain_line(done, 3, NOTICE.format(queue=queue, address=address))
    unknown = await agentrun_cli(address, queue, owner, "show", "run-none")
    assert_plain_line(unknown, 1, "Unknown run_id: run-none")
