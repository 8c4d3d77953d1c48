"""Scenario 5: worker memory. ``python worker.py`` as a subprocess, N runs asleep on it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from temporalio.client import Client

from agentrun import AgentRunClient
from bench._harness import QUICK, Figure, Report, fresh_server, new_owner, new_queue

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = json.dumps({"steps": [{"sleep": 600}]})
SETTLE = 3.0


def rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def spawn_worker(address: str, queue: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "AGENTRUN_TASK_QUEUE": queue}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_running(client: Client, owner: str, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    query = f"OwnerThreadId = '{owner}' AND ExecutionStatus = 'Running'"
    while (await client.count_workflows(query)).count < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} runs did not start within {timeout}s")
        await asyncio.sleep(0.5)


async def measure(count: int) -> tuple[float, float]:
    """(idle RSS, RSS with ``count`` sleeping runs), in MB, on a fresh server and worker."""
    async with fresh_server() as server:
        queue = new_queue("memory")
        worker = spawn_worker(server.address, queue)
        try:
            runs, owner = AgentRunClient(server.client, queue), new_owner()
            await runs.wait(owner, await runs.start(owner, "scripted", "warm up"), timeout=60)
            await asyncio.sleep(SETTLE)
            idle = rss_mb(worker.pid)
            for batch in range(0, count, 50):
                size = min(50, count - batch)
                await asyncio.gather(*(runs.start(owner, "scripted", SLEEPER) for _ in range(size)))
            await _wait_running(server.client, owner, count)
            await asyncio.sleep(SETTLE)
            return idle, rss_mb(worker.pid)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()


async def run(report: Report) -> None:
    """RSS with 1, 100 and (full run) 1000 concurrent sleeping runs."""
    counts = (1, 100) if QUICK else (1, 100, 1000)
    for count in counts:
        idle, loaded = await measure(count)
        report.samples[f"rss_{count}"] = [idle, loaded]
        target, met = ("<= 400 MB", loaded <= 400) if count == 1000 else ("", None)
        report.add(
            Figure("memory", f"worker RSS, {count} sleeping runs", loaded, "MB", target, met)
        )
        report.add(Figure("memory", f"worker RSS idle (before the {count})", idle, "MB"))
