"""Small helpers the tests share: scripts, polling, history reads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from agentrun import Message
from agentrun._blobs import REFS_SUFFIX
from agentrun._constants import TURN_ACTIVITY

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def script(*steps: dict[str, Any]) -> str:
    """A scripted agent prompt."""
    return json.dumps({"steps": list(steps)})


def run(agent_id: str, prompt: str | dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An ``agent_run`` tool step."""
    return {"tool": "agent_run", "args": {"agent_id": agent_id, "prompt": prompt, **extra}}


def tool(tool_name: str, /, **args: Any) -> dict[str, Any]:
    """Any tool step."""
    return {"tool": tool_name, "args": args}


def child(*steps: dict[str, Any]) -> dict[str, Any]:
    """A nested script, as a child's prompt."""
    return {"steps": list(steps)}


def tool_returns(messages: list[ModelMessage]) -> list[str]:
    """What a FunctionModel was given back by its tool calls so far, in order."""
    return [
        str(part.content)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


def tool_results(thread: list[Message] | None) -> list[dict[str, Any]]:
    """The JSON of each tool result in a thread, in order."""
    assert thread is not None
    return [json.loads(m.content) for m in thread if m.role == "tool"]


def stored_blobs(directory: Path) -> list[Path]:
    """The payload files of local storage under ``directory`` (not their records)."""
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and not path.name.endswith(REFS_SUFFIX)
    )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], object],
    timeout: float = 30.0,
    every: float = 0.1,
) -> T:
    """Poll ``probe`` until ``accept`` holds; the last value (asserting it holds)."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not accept(value) and time.monotonic() < deadline:
        await asyncio.sleep(every)
        value = await probe()
    assert accept(value), f"still not accepted after {timeout}s: {value!r}"
    return value


async def history_events(client: Client, run_id: str, run: str | None = None) -> list[Any]:
    """The history events of the run's latest (or given) execution."""
    history = await client.get_workflow_handle(run_id, run_id=run).fetch_history()
    return list(history.events)


async def turn_results(client: Client, run_id: str) -> list[dict[str, Any]]:
    """The decoded results of the run's completed turn activities."""
    results = []
    types: dict[int, str] = {}
    for event in await history_events(client, run_id):
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            types[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attributes = event.activity_task_completed_event_attributes
            if types.get(attributes.scheduled_event_id) == TURN_ACTIVITY:
                results.append(json.loads(attributes.result.payloads[0].data))
    return results


def spawn_worker(address: str, queue: str, **extra_env: str) -> subprocess.Popen[bytes]:
    """``python worker.py`` as its own process, on ``queue`` at ``address``."""
    variables = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "AGENTRUN_TASK_QUEUE": queue,
        **extra_env,
    }
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=variables)


async def agentrun_cli(
    address: str, queue: str, owner: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``agentrun *args`` as its own process, as ``owner``, on ``queue`` at ``address``.

    In a thread: an in-process worker needs the test's event loop to serve the command.
    """
    variables = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "AGENTRUN_TASK_QUEUE": queue,
        "AGENTRUN_OWNER": owner,
        "COLUMNS": "200",  # wide enough that no table or tree line wraps
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agentrun.cli", *args],
        cwd=ROOT,
        env=variables,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def worker_log_once(
    address: str,
    cwd: Path,
    processes: list[subprocess.Popen[bytes]],
    says: str,
    command: tuple[str, ...] = (str(ROOT / "worker.py"),),
    **env: str,
) -> Path:
    """``python worker.py`` (or ``python *command``) in ``cwd`` at ``address``, its
    output in ``cwd/worker.log``; the log once the worker ``says`` it. The process joins
    ``processes`` (killed at the test's end)."""
    log = cwd / "worker.log"
    variables = {**os.environ, "TEMPORAL_ADDRESS": address, **env}
    variables.pop("AGENTRUN_AGENTS", None)  # the registry file in cwd, if any
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, *command],
            cwd=cwd,
            env=variables,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    processes.append(worker)
    await eventually(lambda: asyncio.to_thread(log.read_text), lambda text: says in text, 60)
    return log


async def current_details(client: Client, run_id: str) -> str:
    """The run's current details, as the Web UI reads them."""
    metadata: WorkflowMetadata = await client.get_workflow_handle(run_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return str(metadata.current_details)
