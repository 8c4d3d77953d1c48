"""Scenario 7: crash recovery. A worker killed (SIGKILL) mid-turn; a new one takes over.

The figure is the delay a crash adds: time to completion with a kill and an immediate
restart, minus the same run's time without a crash (measured in the same run).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time

from agentrun.client import AgentRunClient
from bench._harness import QUICK, Figure, Report, fresh_server, new_owner, new_queue, percentile
from bench.scenarios.memory import spawn_worker

SLEEP = 3.0
KILL_AFTER = 1.5
SCRIPT = json.dumps({"steps": [{"sleep": SLEEP}, {"say": "done"}]})


async def _ready(runs: AgentRunClient, owner: str) -> None:
    """Wait until the worker serves (an echo run completes)."""
    await runs.wait(owner, await runs.start(owner, "scripted", "ready?"), timeout=60)


async def once(crash: bool) -> float:
    """Seconds from start to completion of the sleeping run, with or without a kill."""
    async with fresh_server() as server:
        queue = new_queue("crash")
        worker = spawn_worker(server.address, queue)
        try:
            runs, owner = AgentRunClient(server.client, queue), new_owner()
            await _ready(runs, owner)
            start = time.perf_counter()
            run_id = await runs.start(owner, "scripted", SCRIPT)
            if crash:
                await asyncio.sleep(KILL_AFTER)
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                worker = spawn_worker(server.address, queue)
            await server.client.get_workflow_handle(run_id).result()
            return time.perf_counter() - start
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()


async def run(report: Report) -> None:
    """Added delay of a crash, over a few repetitions."""
    repeats = 1 if QUICK else 3
    clean = [await once(crash=False) for _ in range(repeats)]
    crashed = [await once(crash=True) for _ in range(repeats)]
    report.samples["crash_clean"] = clean
    report.samples["crash_crashed"] = crashed
    s = "crash"
    report.add(Figure(s, "run without crash p50", percentile(clean, 50), "s"))
    report.add(Figure(s, "run with kill + restart p50", percentile(crashed, 50), "s"))
    added = percentile(crashed, 50) - percentile(clean, 50)
    report.add(Figure(s, "delay a crash adds p50", added, "s"))
    ratio = percentile(crashed, 50) / percentile(clean, 50)
    report.add(Figure(s, "ratio crashed/clean", ratio, "x"))
