"""People see text as it streams, and a merged tree keeps cause before effect."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from agentrun import AgentRunClient, RunSummary, Status
from agentrun.cli._render import tree_view
from agentrun.cli._views import RunNode, Timing
from tests.conftest import server_address
from tests.helpers import ROOT, agentrun_cli, child, run, script

FIRST = "First I read the sources one by one, " * 5 + "and then I stop to think."
SECOND = "Then I write it all down in a long answer " * 4 + "that ends here."
SLOW_SAYS = script({"say": FIRST}, {"sleep": 2}, {"say": SECOND}, {"sleep": 2}, {"say": "done"})
# A background child that outlives its sibling, and one in the foreground.
SLOW, QUICK = child({"sleep": 1}, {"say": "slow done"}), child({"say": "quick done"})
TREE = script(run("scripted", SLOW, background=True), run("scripted", QUICK), {"say": "done"})


def words(lines: list[str], kind: str, run_id: str) -> str:
    """The text of the lines of one kind of one run, as one string."""
    picked = [line.split(None, 3) for line in lines if line.startswith(f"{run_id} ")]
    return " ".join(part[3] for part in picked if len(part) == 4 and part[2] == kind)


async def test_run_prints_text_while_it_streams_before_each_message(
    env: WorkflowEnvironment, runs: AgentRunClient, queue: str, owner: str
):
    variables = {
        **os.environ,
        "TEMPORAL_ADDRESS": server_address(env),
        "AGENTRUN_TASK_QUEUE": queue,
        "AGENTRUN_OWNER": owner,
        "COLUMNS": "300",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "agentrun.cli", "run", "scripted", SLOW_SAYS],
        cwd=ROOT,
        env=variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        run_id = (await asyncio.to_thread(process.stderr.readline)).split()[1]
        first = await asyncio.to_thread(process.stdout.readline)
        while " text " not in first and first:
            first = await asyncio.to_thread(process.stdout.readline)
        # Printed while the run still runs: its second say is seconds away.
        summary = await runs.summary(owner, run_id)
        assert summary is not None and summary.status == "running", first
        # From the same buffered reader: communicate() would skip what it holds.
        rest = await asyncio.to_thread(process.stdout.read)
        await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    lines = [first.rstrip("\n"), *rest.splitlines()]
    assert words(lines, "text", run_id) == " ".join(f"{FIRST} {SECOND}".split())
    kinds = [line.split()[2] for line in lines if line.startswith(f"{run_id} ")]
    said_first = kinds.index("message")  # a say's text lines, then its message
    assert said_first >= 2 and set(kinds[:said_first]) == {"text"}, lines
    assert "done" in words(lines, "message", run_id)


def json_events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def position(events: list[dict[str, Any]], run_id: str, kind: str, child: str = "") -> int:
    return next(
        index
        for index, line in enumerate(events)
        if line["run_id"] == run_id
        and line["event"]["kind"] == kind
        and (not child or line["event"]["summary"]["run_id"] == child)
    )


async def test_watch_shows_a_childs_finish_before_its_parent_hears_of_it(
    env: WorkflowEnvironment, runs: AgentRunClient, queue: str, owner: str
):
    root = await runs.start(owner, "scripted", TREE)
    assert (await runs.wait(owner, root, timeout=60)).status == "completed"
    done = await agentrun_cli(server_address(env), queue, owner, "watch", root, "--json")
    assert done.returncode == 0, done.stderr
    events = json_events(done.stdout)
    for name in (f"{root}.1-scripted", f"{root}.2-scripted"):
        finished = position(events, root, "child_finished", name)
        assert position(events, name, "finish") < finished, name


async def test_watch_from_an_offset_follows_children_started_before_it(
    env: WorkflowEnvironment, runs: AgentRunClient, queue: str, owner: str
):
    root = await runs.start(owner, "scripted", TREE)
    assert (await runs.wait(owner, root, timeout=60)).status == "completed"
    everything = json_events(
        (await agentrun_cli(server_address(env), queue, owner, "watch", root, "--json")).stdout
    )
    started = [e["offset"] for e in everything if e["event"]["kind"] == "child_started"]
    offset = str(max(started) + 1)
    done = await agentrun_cli(
        server_address(env), queue, owner, "watch", root, "--from-offset", offset, "--json"
    )
    assert done.returncode == 0, done.stderr
    events = json_events(done.stdout)
    assert min(e["offset"] for e in events if e["run_id"] == root) == int(offset)
    for name in (f"{root}.1-scripted", f"{root}.2-scripted"):
        assert position(events, name, "finish") < position(events, root, "child_finished", name)


def test_the_live_tree_shows_what_a_running_run_is_streaming():
    def node(run_id: str, status: Status, *below: RunNode) -> RunNode:
        summary = RunSummary(run_id=run_id, agent_id="scripted", status=status, assistant="old")
        return RunNode(summary, Timing(), list(below))

    tree = node("run-1", "running", node("run-1.1", "running"), node("run-1.2", "completed"))
    latest = {"run-1": "planning the", "run-1.1": "reading", "run-1.2": "never shown"}
    output = io.StringIO()
    Console(file=output, width=200).print(tree_view(tree, datetime.now(UTC), latest=latest))
    lines = output.getvalue().splitlines()
    assert lines[0].endswith("planning the") and lines[1].endswith("reading"), lines
    assert lines[2].endswith("old"), lines


async def test_events_of_a_tree_put_a_childs_finish_before_its_parent_hears_of_it(
    runs: AgentRunClient, owner: str
):
    root = await runs.start(owner, "scripted", TREE)
    assert (await runs.wait(owner, root, timeout=60)).status == "completed"
    events = [
        {"run_id": item.event.run_id, "event": item.event.model_dump(mode="json")}
        async for item in runs.events(owner, root, descendants=True)
    ]
    for name in (f"{root}.1-scripted", f"{root}.2-scripted"):
        assert position(events, name, "finish") < position(events, root, "child_finished", name)
