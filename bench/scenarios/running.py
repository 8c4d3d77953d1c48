"""Scenario 9: a worker with 1,000 turns running at once, each streaming.

A worker of one's own (``bench/ticker_worker.py``: the plugin, a ``ticker`` agent that
streams like a model's response) as a subprocess, with room for every turn
(``AGENTRUN_MAX_CONCURRENT_TURNS``, ``AGENTRUN_MAX_TURNS_PER_OWNER``) and its
Prometheus endpoint on (``AGENTRUN_METRICS_ADDRESS``). Each run's one turn emits a word
every ``WORD_EVERY`` seconds for minutes, nobody following: a batch of events a second
(``AGENTRUN_STREAM_UNWATCHED_BATCH_MS``) and a heartbeat every 0.3 s. Once the worker's
activity slots say every turn runs, a window of ``WINDOW`` seconds: the worker's RSS
and CPU, the server's CPU, and the events a sample of runs took in (their histories).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from temporalio.client import Client

from agentrun import AgentRunClient
from bench._harness import QUICK, Figure, Report, fresh_server, new_owner, new_queue
from bench.scenarios.memory import ROOT, rss_mb

TURNS = 100 if QUICK else 1000
WORD_EVERY = 0.5
PROMPT = json.dumps({"words": 1200, "every": WORD_EVERY})  # ten minutes: outlives the window
WINDOW = 10.0 if QUICK else 20.0
SAMPLE = 20  # runs whose histories are read after the window
# The longest the scenario waits for every turn to run; then it measures what runs.
START_TIMEOUT = 40.0
PUBLISH_SIGNAL = "__temporal_workflow_stream_publish"
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU the process has used (``/proc/PID/stat``), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def running_turns(metrics: str) -> int:
    """Activity slots in use, as the worker's Prometheus endpoint says (0 before it serves)."""
    try:
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0
    used = 0.0
    for line in text.splitlines():
        if "slots_used" in line and 'worker_type="ActivityWorker"' in line:
            used += float(line.rsplit(" ", 1)[1])
    return int(used)


@contextlib.asynccontextmanager
async def ticker_worker(address: str, queue: str, metrics: str) -> AsyncIterator[int]:
    """``bench.ticker_worker`` as a subprocess with room for every turn; yields its pid."""
    room = str(TURNS + 50)
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "AGENTRUN_TASK_QUEUE": queue,
        "AGENTRUN_MAX_CONCURRENT_TURNS": room,
        "AGENTRUN_MAX_TURNS_PER_OWNER": room,
        "AGENTRUN_METRICS_ADDRESS": metrics,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.ticker_worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield worker.pid
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()


async def events_taken(client: Client, run_ids: list[str], start: float, end: float) -> int:
    """Events the runs' streams took in between two wall times (their publish signals)."""
    taken = 0
    for run_id in run_ids:
        history = await client.get_workflow_handle(run_id).fetch_history()
        for event in history.events:
            signaled = event.workflow_execution_signaled_event_attributes
            if signaled.signal_name != PUBLISH_SIGNAL:
                continue
            if not start <= event.event_time.ToDatetime(UTC).timestamp() < end:
                continue
            batch = json.loads(signaled.input.payloads[0].data or b"{}")
            taken += len(batch.get("items", []))
    return taken


@dataclass
class Window:
    """What a window of ``TURNS`` running turns measured."""

    rss: float
    idle_rss: float
    worker_cores: float
    server_cores: float
    events_per_turn_second: float
    started_in: float
    running: int  # turns running in the window (the worker's activity slots in use)


async def _start_all(runs: AgentRunClient, owner: str, metrics: str) -> list[str]:
    """Start the runs; return once every turn runs, or ``START_TIMEOUT`` has passed."""
    began, run_ids = time.monotonic(), []
    for _ in range(0, TURNS, 50):
        run_ids += await asyncio.gather(*(runs.start(owner, "ticker", PROMPT) for _ in range(50)))
    while running_turns(metrics) < TURNS and time.monotonic() - began < START_TIMEOUT:
        await asyncio.sleep(1.0)
    return run_ids


async def measure() -> Window:
    """Start ``TURNS`` streaming runs on a fresh worker; measure a window once all run."""
    async with fresh_server() as server:
        metrics, queue = f"127.0.0.1:{_free_port()}", new_queue("running")
        async with ticker_worker(server.address, queue, metrics) as pid:
            runs, owner = AgentRunClient(server.client, queue), new_owner()
            await runs.wait(owner, await runs.start(owner, "scripted", "warm up"), timeout=60)
            idle, began = rss_mb(pid), time.monotonic()
            run_ids = await _start_all(runs, owner, metrics)
            started_in = time.monotonic() - began
            worker_before, server_before = cpu_seconds(pid), cpu_seconds(server.pid or 0)
            clock, wall = time.monotonic(), time.time()
            await asyncio.sleep(WINDOW)
            worker_after, server_after = cpu_seconds(pid), cpu_seconds(server.pid or 0)
            elapsed, rss, running = time.monotonic() - clock, rss_mb(pid), running_turns(metrics)
            sample = run_ids[:: max(1, TURNS // SAMPLE)][:SAMPLE]
            taken = await events_taken(server.client, sample, wall, wall + elapsed)
    return Window(
        rss=rss,
        idle_rss=idle,
        worker_cores=(worker_after - worker_before) / elapsed,
        server_cores=(server_after - server_before) / elapsed,
        events_per_turn_second=taken / len(sample) / elapsed,
        started_in=started_in,
        running=running,
    )


async def run(report: Report) -> None:
    """RSS and CPU of a worker with ``TURNS`` turns running and streaming."""
    found = await measure()
    s, n = "running", f"{TURNS} running turns"
    report.add(Figure(s, f"worker RSS, {n}", found.rss, "MB"))
    report.add(Figure(s, "worker RSS idle (before them)", found.idle_rss, "MB"))
    # Per turn that ran (short of TURNS when the start window closed first).
    per_turn = (found.rss - found.idle_rss) * 1024 / max(1, min(found.running, TURNS))
    report.add(Figure(s, "worker RSS per running turn", per_turn, "KB"))
    report.add(Figure(s, f"worker CPU, {n}", found.worker_cores, "cores"))
    report.add(Figure(s, f"server CPU, {n}", found.server_cores, "cores"))
    report.add(
        Figure(
            s,
            f"time until all {TURNS} turns ran (at most {START_TIMEOUT:.0f})",
            found.started_in,
            "s",
        )
    )
    report.add(Figure(s, "turns running in the window", found.running, "turns"))
    # How fast runs reach a running turn: each is its run's first workflow task, then
    # the turn's activity task, while the turns already running load worker and server.
    rate = min(found.running, TURNS) / found.started_in
    report.add(Figure(s, "start rate (runs reaching a running turn)", rate, "runs/s"))
    scripted = 1 / WORD_EVERY
    figure = f"events streamed per turn per second (script: {scripted:.0f})"
    report.add(Figure(s, figure, found.events_per_turn_second, "ev/s"))
