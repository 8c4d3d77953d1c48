"""A worker says what it serves when it starts: the registry file, then each agent."""

from __future__ import annotations

import subprocess
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.conftest import server_address
from tests.helpers import worker_log_once

AGENTS = """
[agents.planner]
model = "test"
allowed_agents = ["writer"]

[agents.writer]
model = "openai:llama3.2"
base_url = "http://127.0.0.1:9/v1"
allowed_agents = []
"""


async def started_worker_says(
    env: WorkflowEnvironment,
    queue: str,
    cwd: Path,
    processes: list[subprocess.Popen[bytes]],
    last_line: str,
) -> str:
    """Start ``python worker.py`` in ``cwd``; its log once ``last_line`` is in it."""
    address = server_address(env)
    log = await worker_log_once(address, cwd, processes, last_line, AGENTRUN_TASK_QUEUE=queue)
    return log.read_text()


async def test_the_worker_names_its_registry_file_and_each_agent(
    env: WorkflowEnvironment, queue: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
):
    (tmp_path / "agents.toml").write_text(AGENTS)
    said = await started_worker_says(env, queue, tmp_path, processes, "agent writer:")
    assert f"Agents from {tmp_path.resolve() / 'agents.toml'}" in said
    assert "agent planner: model test:test; tools agent_run, agent_stop, agent_output\n" in said
    assert "agent scripted: no model (scripted); tools agent_run, agent_stop, agent_output" in said
    assert "agent writer: model openai:llama3.2 at http://127.0.0.1:9/v1/; tools none" in said


async def test_a_worker_without_a_registry_file_says_so(
    env: WorkflowEnvironment, queue: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
):
    said = await started_worker_says(env, queue, tmp_path, processes, "agent scripted:")
    assert f"No agent registry file ({tmp_path.resolve() / 'agents.toml'} does not exist" in said
    assert "Agents from" not in said


async def test_agentrun_worker_writes_one_line_per_agent_to_a_file_too(
    env: WorkflowEnvironment, queue: str, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
):
    (tmp_path / "agents.toml").write_text(AGENTS)
    command = ("-m", "agentrun.cli", "worker")
    log = await worker_log_once(
        server_address(env),
        tmp_path,
        processes,
        "agent writer:",
        command,
        AGENTRUN_TASK_QUEUE=queue,
    )
    lines = log.read_text().splitlines()
    scripted = [line for line in lines if "agent scripted:" in line]
    assert scripted[0].endswith(
        "INFO agent scripted: no model (scripted); tools agent_run, agent_stop, agent_output"
    ), lines
