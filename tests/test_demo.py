"""``agentrun demo``: the scripted tree ends as scripted, and the output shows it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from agentrun import RunSummary, Status
from agentrun._demo import RunNode, ended_as_scripted
from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]


def test_demo_shows_a_completed_tree_with_one_stopped_worker(tmp_path: Path):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "agentrun.cli", "demo", "--dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        # Wide enough that no tree line wraps.
        env={**os.environ, "COLUMNS": "200"},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    branches = [line for line in lines if "├── " in line or "└── " in line]
    assert any(line.startswith("planner completed") for line in lines), result.stdout
    assert sum("stopped" in line for line in branches) == 1, result.stdout
    assert sum("completed" in line for line in branches) == 3, result.stdout
    assert "RootWorkflowId='planner'" in result.stdout
    assert list(tmp_path.glob("demo-*.db")), "the demo keeps its database"
    assert elapsed < 60


def node(run_id: str, status: Status, *children: RunNode) -> RunNode:
    summary = RunSummary(run_id=run_id, agent_id="scripted", status=status)
    return RunNode(summary, list(children))


def test_demo_fails_when_the_slow_worker_was_not_stopped():
    grandchild = node("p.2.1", "completed")
    as_scripted = node(
        "p",
        "completed",
        node("p.1", "completed"),
        node("p.2", "completed", grandchild),
        node("p.3", "stopped"),
    )
    not_stopped = node(
        "p",
        "completed",
        node("p.1", "completed"),
        node("p.2", "completed", grandchild),
        node("p.3", "completed"),
    )
    assert ended_as_scripted(as_scripted)
    assert not ended_as_scripted(not_stopped)


def test_demo_runs_against_an_openai_compatible_server(tmp_path: Path):
    fake = FakeOpenAI()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "agentrun.cli", "demo", "--dir", str(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
            env={
                **os.environ,
                "COLUMNS": "200",
                "AGENTRUN_DEMO_MODEL": "openai:echo",
                "AGENTRUN_DEMO_BASE_URL": fake.base_url,
            },
        )
    finally:
        fake.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "planner completed  You said: Explain why durable execution matters" in result.stdout
    planner_request = fake.requests_for("echo")[0]
    assert "You are a planner." in planner_request["messages"][0]["content"]
