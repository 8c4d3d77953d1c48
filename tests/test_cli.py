"""``agentrun`` end to end: each command's output, ``--json`` shape and exit code.

Every command runs as a real process against the session's dev server, with an
in-process worker (or, for the restart test, worker processes) on the test's queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, NoAnswerError, RunSummary
from agentrun._server import EmbeddedServer, free_ports
from tests.conftest import server_address
from tests.helpers import child, eventually, run, script

ROOT = Path(__file__).resolve().parent.parent
LONG = {"sleep": 60}
CLI_TIMEOUT = 90
SERVER_DOWN_SECONDS = 14


class Cli:
    """Runs ``agentrun`` for one test: its server, task queue and owner."""

    def __init__(self, env: WorkflowEnvironment, queue: str, owner: str) -> None:
        self._setup(server_address(env), queue, owner)

    @classmethod
    def at(cls, address: str, queue: str, owner: str) -> Cli:
        """The command line of another server than the session's."""
        cli = cls.__new__(cls)
        cli._setup(address, queue, owner)
        return cli

    def _setup(self, address: str, queue: str, owner: str) -> None:
        self.owner = owner
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "AGENTRUN_TASK_QUEUE": queue,
            "AGENTRUN_OWNER": owner,
            "COLUMNS": "200",  # wide enough that no table or tree line wraps
        }

    async def __call__(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # In a thread: the in-process worker needs this event loop to serve the CLI.
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "agentrun.cli", *args],
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )

    async def json(self, *args: str) -> Any:
        """The command's ``--json`` output, asserting it exited 0."""
        done = await self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(env: WorkflowEnvironment, queue: str, owner: str, worker: Worker) -> Cli:
    return Cli(env, queue, owner)


def json_lines(output: str) -> list[Any]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.strip() == f"error: {text}", done.stderr
    assert "Traceback" not in done.stdout + done.stderr


FAN_OUT = script(
    {"say": "Plan: two helpers"},
    run(
        "scripted",
        child({"say": "one started"}, {"sleep": 1}, {"say": "one done"}),
        background=True,
    ),
    run("scripted", child({"say": "two done"})),
    {"say": "all done"},
)


def assert_each_run_streamed_in_order(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Every run's offsets are 0, 1, 2, … with no gap and no repeat; returns them."""
    offsets: dict[str, list[int]] = {}
    for line in events:
        offsets.setdefault(line["run_id"], []).append(line["offset"])
    for run_id, seen in offsets.items():
        assert seen == list(range(len(seen))), (run_id, seen)
    return offsets


async def test_run_follows_the_tree_to_its_end_and_prints_it(cli: Cli):
    done = await cli("run", "scripted", FAN_OUT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    root = done.stderr.split()[1]  # "Started run-… (Ctrl-C detaches …)"
    assert any(line.startswith(root) and "message" in line and "all done" in line for line in lines)
    assert any(line.startswith(f"{root}.1-scripted ") and "one done" in line for line in lines)
    assert any(line.startswith(f"{root}.2-scripted ") and "two done" in line for line in lines)
    tree = [line for line in lines if line.startswith(f"{root} completed")]
    assert tree and "epoch 1" in tree[0], done.stdout
    branches = [line for line in lines if "── " in line]
    assert len(branches) == 2 and all("completed" in b for b in branches), done.stdout


async def test_run_json_streams_every_event_then_the_summary(cli: Cli):
    done = await cli("run", "scripted", FAN_OUT, "--json")
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    *events, last = lines
    root = last["summary"]["run_id"]
    assert (last["summary"]["status"], last["summary"]["assistant"]) == ("completed", "all done")
    assert set(events[0]) == {"run_id", "offset", "event"}
    offsets = assert_each_run_streamed_in_order(events)
    assert set(offsets) == {root, f"{root}.1-scripted", f"{root}.2-scripted"}
    kinds = [e["event"]["kind"] for e in events if e["run_id"] == root]
    assert kinds[0] == "run_started" and kinds[-1] == "finish"
    assert "text_delta" in kinds and kinds.count("child_started") == 2


async def test_run_detached_returns_the_run_id_at_once(cli: Cli, runs: AgentRunClient):
    started = await cli.json("run", "scripted", script({"say": "later"}), "--detach")
    summary = await runs.wait(cli.owner, started["run_id"], timeout=30)
    assert (summary.status, summary.assistant) == ("completed", "later")
    human = await cli("run", "scripted", script({"say": "x"}), "--detach")
    assert human.returncode == 0 and human.stdout.strip().startswith("run-")
    assert f"agentrun watch {human.stdout.strip()}" in human.stderr


async def test_run_that_fails_exits_4_with_its_summary(cli: Cli):
    done = await cli("run", "scripted", script({"fail": "no luck"}), "--json")
    assert done.returncode == 4, done.stderr
    summary = json_lines(done.stdout)[-1]["summary"]
    assert (summary["status"], summary["error"]) == ("failed", "no luck")


async def test_ls_lists_running_and_stopped_unless_told_otherwise(cli: Cli, runs: AgentRunClient):
    owner = cli.owner
    done = await runs.start(owner, "scripted", script({"say": "done"}))
    await runs.wait(owner, done, timeout=30)
    stopped = await runs.start(owner, "helper", script(LONG))
    await runs.stop_tree(owner, stopped)
    running = await runs.start(owner, "scripted", script({"say": "busy"}, LONG))
    await eventually(lambda: runs.all(owner), lambda found: len(found) == 3)

    listed = await cli.json("ls")
    assert [(s["run_id"], s["status"]) for s in listed] == sorted(
        [(stopped, "stopped"), (running, "running")]
    )
    assert {s["run_id"] for s in await cli.json("ls", "--all")} == {done, stopped, running}
    assert [s["run_id"] for s in await cli.json("ls", "--status", "completed")] == [done]
    assert [s["run_id"] for s in await cli.json("ls", "--all", "--agent", "helper")] == [stopped]
    table = await cli("ls")
    assert table.returncode == 0
    assert table.stdout.split()[:6] == ["RUN", "AGENT", "STATUS", "EPOCH", "PARENT", "OUTPUT"]
    assert running in table.stdout and "busy" in table.stdout and done not in table.stdout
    await runs.stop_tree(owner, running)


async def test_show_gives_summary_lineage_epoch_and_timing(cli: Cli, runs: AgentRunClient):
    grandchild = child({"say": "deep"})
    root = await runs.start(
        cli.owner, "scripted", script(run("scripted", child(run("scripted", grandchild))))
    )
    await runs.wait(cli.owner, root, timeout=30)
    shown = await cli.json("show", f"{root}.1-scripted.1-scripted")
    assert shown["run_id"] == f"{root}.1-scripted.1-scripted" and shown["lineage"] == [
        root,
        f"{root}.1-scripted",
    ]
    assert (shown["status"], shown["assistant"], shown["epoch"]) == ("completed", "deep", 1)
    assert shown["started_at"] <= shown["closed_at"] and shown["duration_seconds"] >= 0
    middle = await cli.json("show", f"{root}.1-scripted")
    assert [c["run_id"] for c in middle["children"]] == [f"{root}.1-scripted.1-scripted"]
    human = await cli("show", f"{root}.1-scripted.1-scripted")
    assert human.returncode == 0
    assert f"{root} › {root}.1-scripted › {root}.1-scripted.1-scripted" in human.stdout
    assert "duration" in human.stdout and "epoch" in human.stdout


async def test_thread_prints_the_runs_messages(cli: Cli, runs: AgentRunClient):
    run_id = await runs.start(cli.owner, "scripted", script({"say": "hello"}, {"say": "bye"}))
    await runs.wait(cli.owner, run_id, timeout=30)
    messages = await cli.json("thread", run_id)
    assert [(m["role"], m["content"]) for m in messages][1:] == [
        ("assistant", "hello"),
        ("assistant", "bye"),
    ]
    human = await cli("thread", run_id)
    assert human.returncode == 0
    assert "assistant: hello" in human.stdout and "user: " in human.stdout


async def test_tree_shows_statuses_and_durations(cli: Cli, runs: AgentRunClient):
    root = await runs.start(
        cli.owner,
        "scripted",
        script(
            run("scripted", child(LONG), background=True), run("scripted", child({"say": "hi"}))
        ),
    )
    await eventually(
        lambda: runs.summary(cli.owner, f"{root}.2-scripted"),
        lambda s: s and s.status == "completed",
    )
    tree = await cli.json("tree", root)
    assert (tree["run_id"], tree["status"]) == (root, "running")
    assert [(c["run_id"], c["status"]) for c in tree["children"]] == [
        (f"{root}.1-scripted", "running"),
        (f"{root}.2-scripted", "completed"),
    ]
    assert all(c["duration_seconds"] >= 0 and c["started_at"] for c in tree["children"])
    assert tree["children"][0]["closed_at"] is None
    human = await cli("tree", root)  # not a terminal: printed once
    assert human.returncode == 0
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"{root} running") and "s " in lines[0]
    assert "running" in lines[1] and "completed" in lines[2] and "hi" in lines[2]
    await runs.stop_tree(cli.owner, root)


async def test_stop_then_resume(cli: Cli, runs: AgentRunClient):
    root = await runs.start(
        cli.owner, "scripted", script(run("scripted", child(LONG), background=True), LONG)
    )
    await eventually(lambda: runs.summary(cli.owner, f"{root}.1-scripted"), lambda s: s is not None)
    stopped = await cli.json("stop", root)
    assert [(s["run_id"], s["status"]) for s in stopped] == [
        (root, "stopped"),
        (f"{root}.1-scripted", "stopped"),
    ]
    again = await cli("stop", root)
    assert_one_error_line(again, 1, f"Run '{root}' is not running (current status: stopped)")

    resumed = await cli.json("resume", root, script({"say": "back again"}))
    assert (resumed["run_id"], resumed["epoch"]) == (root, 2)
    final = await runs.wait(cli.owner, root, timeout=30)
    assert (final.status, final.epoch) == ("completed", 2)
    not_stopped = await cli("resume", root)
    assert not_stopped.returncode == 1 and "cannot be resumed" in not_stopped.stderr
    human = await cli("resume", f"{root}.1-scripted")
    assert human.returncode == 0 and f"Resumed {root}.1-scripted as epoch 2" in human.stdout
    await runs.stop_tree(cli.owner, f"{root}.1-scripted")


async def test_watch_json_starts_at_the_offset_asked(cli: Cli, runs: AgentRunClient):
    run_id = await runs.start(cli.owner, "scripted", script({"say": "a b c"}, {"say": "d"}))
    await runs.wait(cli.owner, run_id, timeout=30)
    everything = json_lines((await cli("watch", run_id, "--json")).stdout)
    assert_each_run_streamed_in_order(everything)
    later = json_lines((await cli("watch", run_id, "--json", "--from-offset", "3")).stdout)
    assert later == everything[3:]
    human = await cli("watch", run_id)
    assert human.returncode == 0
    assert [line.split()[:3] for line in human.stdout.splitlines()][-1] == [
        run_id,
        str(len(everything) - 1),
        "finish",
    ]


@pytest.mark.parametrize(
    "command",
    [("show",), ("thread",), ("tree",), ("watch",), ("stop",), ("resume",), ("tree", "--json")],
)
async def test_unknown_run_is_one_line_and_exit_1(cli: Cli, command: tuple[str, ...]):
    done = await cli(command[0], "run-nope", *command[1:])
    assert_one_error_line(done, 1, "Unknown run_id: run-nope")


async def test_another_owners_run_is_unknown(cli: Cli, runs: AgentRunClient):
    run_id = await runs.start(cli.owner, "scripted", script({"say": "mine"}))
    await runs.wait(cli.owner, run_id, timeout=30)
    done = await cli("show", run_id, "--owner", "someone-else")
    assert_one_error_line(done, 1, f"Unknown run_id: {run_id}")


async def test_usage_errors_exit_2(cli: Cli):
    without_owner = {k: v for k, v in cli.env.items() if k != "AGENTRUN_OWNER"}
    # Independent commands: run side by side.
    missing, *others = await asyncio.gather(
        cli("ls", env=without_owner),
        cli("ls", "--owner", " "),
        cli("ls", "--status", "sleeping"),
        cli("run", "scripted", "   "),
        cli("watch", "run-x", "--from-offset", "-1"),
    )
    assert missing.returncode == 2 and "--owner" in missing.stderr
    assert [done.returncode for done in others] == [2, 2, 2, 2], [d.stderr for d in others]


async def test_unreachable_server_exits_3(cli: Cli):
    (port,) = free_ports(1)
    unreachable = {**cli.env, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}"}
    commands = (("ls",), ("show", "run-x"), ("run", "scripted", "hi"))
    answers = await asyncio.gather(*(cli(*command, env=unreachable) for command in commands))
    for command, done in zip(commands, answers, strict=True):
        assert done.returncode == 3, (command, done.stderr)
        assert done.stderr.startswith(f"error: cannot reach Temporal at 127.0.0.1:{port}")
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


async def test_help_documents_the_exit_codes(cli: Cli):
    done = await cli("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for phrase in ("0 success", "1 user error", "2 usage error", "3 Temporal unreachable"):
        assert phrase in text


# --- watch across a worker restart ----------------------------------------------------


def spawn_worker(address: str, queue: str) -> subprocess.Popen[bytes]:
    variables = {**os.environ, "TEMPORAL_ADDRESS": address, "AGENTRUN_TASK_QUEUE": queue}
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=variables)


async def start_watch(cli: Cli, run_id: str) -> asyncio.subprocess.Process:
    """``agentrun watch RUN --json`` in the background."""
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agentrun.cli", "watch", run_id, "--json"),
        cwd=ROOT,
        env=cli.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def assert_watched_the_stored_streams(
    watch: asyncio.subprocess.Process, runs: AgentRunClient, owner: str, run_ids: list[str]
) -> str:
    """The watch ended well and printed each run's stream exactly; its stderr."""
    stdout, stderr = await asyncio.wait_for(watch.communicate(), CLI_TIMEOUT)
    assert watch.returncode == 0, stderr.decode()
    watched = json_lines(stdout.decode())
    assert_each_run_streamed_in_order(watched)
    assert {w["run_id"] for w in watched} == set(run_ids)
    for run_id in run_ids:
        stored = [
            (e.offset, e.event.model_dump(mode="json", exclude_none=True))
            async for e in runs.events(owner, run_id)
        ]
        assert [(w["offset"], w["event"]) for w in watched if w["run_id"] == run_id] == stored
    return stderr.decode()


async def test_watch_across_a_worker_restart_prints_every_event_once_in_order(
    env: WorkflowEnvironment, queue: str, owner: str, processes: list[subprocess.Popen[bytes]]
):
    cli = Cli(env, queue, owner)
    runs = AgentRunClient(env.client, queue)
    processes.append(spawn_worker(server_address(env), queue))
    helper = child({"say": "helper starts"}, {"sleep": 4}, {"say": "helper ends"})
    root = await runs.start(
        owner,
        "scripted",
        script(
            {"say": "root starts"},
            run("scripted", helper, background=True),
            {"sleep": 4},
            {"say": "root ends"},
        ),
    )
    watch = await start_watch(cli, root)
    # A worker process starting on a loaded machine can take a while to import.
    await eventually(
        lambda: runs.summary(owner, f"{root}.1-scripted"),
        lambda s: s and s.assistant == "helper starts",
        timeout=90,
    )
    await asyncio.sleep(1)  # both runs inside their sleeps, past several checkpoints
    processes[0].send_signal(signal.SIGKILL)
    await asyncio.to_thread(processes[0].wait)
    await asyncio.sleep(1)
    processes.append(spawn_worker(server_address(env), queue))

    summary = await runs.wait(owner, root, timeout=60)
    assert (summary.status, summary.assistant) == ("completed", "root ends")
    await assert_watched_the_stored_streams(watch, runs, owner, [root, f"{root}.1-scripted"])


async def said(runs: AgentRunClient, owner: str, run_id: str) -> str | None:
    """The run's latest text; None while its worker, still starting on a loaded
    machine, does not answer."""
    try:
        summary = await runs.summary(owner, run_id)
    except NoAnswerError:
        return None
    return summary.assistant if summary else None


async def wait_for_reconnected_worker(runs: AgentRunClient, owner: str, run_id: str) -> RunSummary:
    """Wait for the run; until the worker's pollers are back, queries say none is seen."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await runs.wait(owner, run_id, timeout=60)
        except RPCError as err:
            if err.status != RPCStatusCode.FAILED_PRECONDITION or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_watch_across_a_server_restart_goes_on_after_the_last_event(
    tmp_path: Path, queue: str, owner: str, processes: list[subprocess.Popen[bytes]]
):
    port, ui_port = free_ports(2)
    db = tmp_path / "restart.db"
    server = EmbeddedServer(db=db, port=port, ui_port=ui_port)
    await server.start()
    try:
        processes.append(spawn_worker(server.address, queue))
        runs = AgentRunClient(server.client, queue)
        run_id = await runs.start(
            owner, "scripted", script({"say": "before"}, {"sleep": 6}, {"say": "after"})
        )
        cli = Cli.at(server.address, queue, owner)
        watch = await start_watch(cli, run_id)
        await eventually(lambda: said(runs, owner, run_id), lambda text: text == "before")
        await server.stop()  # the watch's connection breaks mid-run
        # Longer than the SDK's own retries of a failed RPC (10 s), so the watch sees it.
        await asyncio.sleep(SERVER_DOWN_SECONDS)
        server = EmbeddedServer(db=db, port=port, ui_port=ui_port)
        await server.start()
        runs = AgentRunClient(server.client, queue)
        final = await wait_for_reconnected_worker(runs, owner, run_id)
        assert (final.status, final.assistant) == ("completed", "after")
        stderr = await assert_watched_the_stored_streams(watch, runs, owner, [run_id])
        assert f"lost the stream of {run_id}" in stderr
    finally:
        await server.stop()
