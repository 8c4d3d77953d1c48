"""A worker killed during a model-driven turn does not repeat an answered model call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient
from tests.conftest import server_address
from tests.fake_openai import FakeOpenAI
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parent.parent


def worker_env(env: WorkflowEnvironment, queue: str, agents: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": server_address(env),
        "AGENTRUN_TASK_QUEUE": queue,
        "AGENTRUN_AGENTS": str(agents),
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
    }


class Workers:
    """``python worker.py`` processes on the test's queue: one running, the killed ones."""

    def __init__(self, variables: dict[str, str]) -> None:
        self._variables = variables
        self._started = [self._spawn()]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=self._variables
        )

    async def kill_and_replace(self) -> None:
        """SIGKILL the worker mid-stream, and start another."""
        await asyncio.sleep(0.5)
        self._started[-1].send_signal(signal.SIGKILL)
        self._started[-1].wait()
        self._started.append(self._spawn())

    def stop(self) -> None:
        for worker in self._started:
            worker.kill()
            worker.wait()


@contextlib.contextmanager
def crashable(env: WorkflowEnvironment, queue: str, agents: Path) -> Iterator[Workers]:
    """A worker serving ``agents`` that the test may kill; every one stopped at the end."""
    workers = Workers(worker_env(env, queue, agents))
    try:
        yield workers
    finally:
        workers.stop()


async def test_killed_model_turn_resumes_after_the_answered_call(
    env: WorkflowEnvironment,
    temporal: Client,
    queue: str,
    owner: str,
    tmp_path: Path,
    fake_openai: FakeOpenAI,
):
    fake = fake_openai
    agents = tmp_path / "agents.toml"
    agents.write_text(
        f'[agents.wanderer]\nmodel = "openai:wanderer"\nbase_url = "{fake.base_url}"\n'
    )
    with crashable(env, queue, agents) as workers:
        runs = AgentRunClient(temporal, queue)
        run_id = await runs.start(owner, "wanderer", "find the thing")
        # The first call answered (a tool it lacks); the second is streaming slowly.
        await eventually(lambda: _count(fake), lambda n: n >= 2, timeout=90)
        await workers.kill_and_replace()
        summary = await runs.wait(owner, run_id, timeout=60)
        thread = await runs.thread(owner, run_id)
        tree = await runs.spend(owner, run_id)
    assert (summary.status, summary.assistant) == ("completed", "found it after all")
    requests = fake.requests_for("wanderer")
    first_calls = [r for r in requests if not any(m["role"] == "tool" for m in r["messages"])]
    assert len(first_calls) == 1, "the answered model call was made again"
    assert len(requests) == 3  # the interrupted second call, once more after the kill
    assert thread is not None
    assert [m.role for m in thread] == ["user", "assistant", "tool", "assistant"]
    assert thread[1].tool_calls[0].name == "web_search"
    assert json.loads(thread[2].content)["error"]["code"] == "unknown_tool"
    # Counted once per response the thread keeps: the first, and the retried second.
    kept = [fake.usages[0], fake.usages[-1]]
    assert (summary.usage.requests, tree.requests) == (2, 2)
    assert summary.usage.input_tokens == sum(u["prompt_tokens"] for u in kept)
    assert tree.output_tokens == sum(u["completion_tokens"] for u in kept)


async def _count(fake: FakeOpenAI) -> int:
    return len(fake.requests_for("wanderer"))


async def test_a_bad_registry_file_stops_the_worker_at_start(
    env: WorkflowEnvironment, queue: str, tmp_path: Path
):
    agents = tmp_path / "agents.toml"
    agents.write_text("[agents.planner]\nmodle = 'openai:gpt-4o'\n")
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "worker.py")],
        cwd=ROOT,
        env=worker_env(env, queue, agents),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"agentrun worker: {agents}: agents.planner.model: Field required; "
        "agents.planner.modle: Extra inputs are not permitted"
    )
    assert "Traceback" not in done.stderr


async def test_a_tree_killed_mid_turn_counts_each_kept_response_once(
    env: WorkflowEnvironment,
    temporal: Client,
    queue: str,
    owner: str,
    tmp_path: Path,
    fake_openai: FakeOpenAI,
):
    fake = fake_openai
    agents = tmp_path / "agents.toml"
    agents.write_text(
        f'[agents.planner]\nmodel = "openai:fanout"\nbase_url = "{fake.base_url}"\n'
        'allowed_agents = ["researcher"]\n'
        f'[agents.researcher]\nmodel = "openai:wanderer"\nbase_url = "{fake.base_url}"\n'
        "allowed_agents = []\n"
    )
    with crashable(env, queue, agents) as workers:
        runs = AgentRunClient(temporal, queue)
        root = await runs.start(owner, "planner", "Look into tides and winds")
        # Both researchers answered their first call and are streaming their second.
        await eventually(lambda: _count(fake), lambda n: n >= 4, timeout=90)
        await workers.kill_and_replace()
        final = await runs.wait(owner, root, timeout=120)
        tree = await runs.spend(owner, root)
    assert final.status == "completed"
    assert len(fake.requests_for("wanderer")) == 6  # two second calls made again
    # Kept: the planner's two responses, and two per researcher: a tool call (17 in,
    # 3 out) and "found it after all" (17 in, 12 out), whatever the cut-off calls said.
    planned = [u for u in fake.usages if u["model"] == "fanout"]
    assert tree.requests == len(planned) + 4
    assert tree.input_tokens == sum(u["prompt_tokens"] for u in planned) + 4 * 17
    assert tree.output_tokens == sum(u["completion_tokens"] for u in planned) + 2 * (3 + 12)
