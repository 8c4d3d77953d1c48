"""Scenario 7: crash recovery. A worker SIGKILLed mid-step; a new one is started at once.

For each heartbeat setting (``AgentRunInput.heartbeat_timeout`` 2 s and the 5 s default)
and each repetition: a fresh server, ``python worker.py`` as a subprocess, and one run
of the scripted agent whose script is a long sleep then a ``say``. The worker gets
SIGKILL ``KILL_INTO_SLEEP`` s plus a random 0 to ``KILL_SPREAD`` s into the sleep (so the
kills fall at any point of the 0.25 s sleep slices and the 0.3 s heartbeat throttle;
always the same point would always lose the same) and a new worker is spawned straight
away. Everything is read from the server's side, by polling ``describe()`` every
``POLL`` seconds for the run's pending turn activity:

* step resumes after kill: from the kill (wall clock, just after the signal) until the
  ``last_started_time`` of the turn's retry (``attempt >= 2``, started after the kill).
  Target: heartbeat timeout + 1.5 s.
* work lost: seconds of sleep the retry does again. The sleep is the turn's first step,
  so it began at the first attempt's ``last_started_time``; at the kill it had slept
  ``kill - began``. The retry resumes from the checkpoint the server holds, the
  activity's ``heartbeat_details`` (a TurnCheckpoint), read in the last ``describe()``
  before the retry started (so a heartbeat still in flight at the kill is counted):
  lost = ``kill - began - checkpoint.agent_state.slept``, or all of ``kill - began``
  when no valid checkpoint had landed. Target: 0.5 s.
* new checkpoint after kill: the ``last_heartbeat_time`` of the retry's first
  checkpoint past the one it resumed from. The retry's sleep really goes on somewhat
  before (within a slice and a heartbeat); the gap to "step resumes" is the retry's
  own start-up (reading the run's stream to skip already published events).
* run with kill / clean run: start-to-result time of the crashed run over that of one
  clean run of the same script and setting.

Also kept in the samples, to explain where the resume time goes (resume = heartbeat
timeout - silence + after timeout): the silence before the kill (kill - the last
heartbeat the server got, ``last_heartbeat_time``), and the time from the heartbeat
timeout (that heartbeat + the timeout) until the retry started: the turn's retry
backoff (TURN_RETRY, 1 s first interval) plus dispatch to the new worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter

from agentrun import AgentRunClient
from agentrun._constants import TURN_ACTIVITY
from agentrun._models import AgentRunInput, TurnCheckpoint
from agentrun._server import EmbeddedServer
from bench._harness import QUICK, Figure, Report, fresh_server, new_owner, new_queue, percentile
from bench.scenarios.memory import spawn_worker

SETTINGS = (2.0, 5.0)
SLEEP = 8.0
KILL_INTO_SLEEP = 3.0
KILL_SPREAD = 1.5  # 6 slices of 0.25 s, 5 heartbeat throttles of 0.3 s
SCRIPT = json.dumps({"steps": [{"sleep": SLEEP}, {"say": "done"}]})
POLL = 0.05
RESUME_MARGIN = 1.5
LOST_TARGET = 0.5
DEADLINE = 120.0

Handle = WorkflowHandle[object, object]


@dataclass(frozen=True)
class Snapshot:
    """The run's turn activity as ``describe()`` shows it; times are epoch seconds."""

    attempt: int
    running: bool
    started: float | None
    heartbeat: float | None
    slept: float | None  # the heartbeated checkpoint's sleep so far; None if none valid


@dataclass(frozen=True)
class Crash:
    """One crashed run, in seconds."""

    resume: float  # kill -> retry started
    lost: float  # sleep done again by the retry
    total: float  # start -> result
    silence: float  # last heartbeat the server had -> kill
    after_timeout: float  # heartbeat timeout (last heartbeat + timeout) -> retry started
    progressed: float | None  # kill -> the retry's first new checkpoint; None if not seen


def _seconds(stamp: Timestamp) -> float | None:
    """Epoch seconds; None for an unset (zero) timestamp."""
    return stamp.ToNanoseconds() / 1e9 or None


async def _slept(converter: DataConverter, info: PendingActivityInfo) -> float | None:
    """``agent_state.slept`` of the heartbeated checkpoint, if it is a valid one."""
    if not info.heartbeat_details.payloads:
        return None
    try:
        details = await converter.decode(info.heartbeat_details.payloads)
        checkpoint = TurnCheckpoint.model_validate(details[0])
    except (ValidationError, ValueError, IndexError):
        return None
    slept = checkpoint.agent_state.get("slept")
    in_sleep = checkpoint.agent_state.get("step") == 0
    if not in_sleep or isinstance(slept, bool) or not isinstance(slept, int | float):
        return None
    return float(slept) if slept >= 0 else None


async def snapshot(handle: Handle, converter: DataConverter) -> Snapshot | None:
    """The pending turn activity, or None when no turn is pending."""
    description = await handle.describe()
    for info in description.raw_description.pending_activities:
        if info.activity_type.name != TURN_ACTIVITY:
            continue
        return Snapshot(
            attempt=info.attempt,
            running=info.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
            started=_seconds(info.last_started_time),
            heartbeat=_seconds(info.last_heartbeat_time),
            slept=await _slept(converter, info),
        )
    return None


async def snapshots(handle: Handle, converter: DataConverter) -> AsyncIterator[Snapshot | None]:
    """A snapshot every ``POLL`` seconds, for at most ``DEADLINE`` seconds."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        yield await snapshot(handle, converter)
        await asyncio.sleep(POLL)
    raise TimeoutError(f"the turn did not reach the awaited state in {DEADLINE} s")


async def _until(
    handle: Handle,
    converter: DataConverter,
    done: Callable[[Snapshot], bool],
) -> tuple[Snapshot, Snapshot | None]:
    """The first snapshot ``done`` accepts, and the last one before it."""
    before: Snapshot | None = None
    async for current in snapshots(handle, converter):
        if current is not None and done(current):
            return current, before
        before = current if current is not None else before
    raise AssertionError("unreachable")


async def _ready(runs: AgentRunClient, owner: str) -> None:
    """Wait until the worker serves (an echo run completes)."""
    await runs.wait(owner, await runs.start(owner, "scripted", "ready?"), timeout=60)


class Workers:
    """``python worker.py`` subprocesses on one server and queue; all killed at the end."""

    def __init__(self, server: EmbeddedServer, queue: str) -> None:
        self._server, self._queue = server, queue
        self._alive: list[subprocess.Popen[bytes]] = []

    def spawn(self) -> None:
        self._alive.append(spawn_worker(self._server.address, self._queue))

    def kill_newest(self) -> float:
        """SIGKILL the newest worker; the wall time of the kill."""
        worker = self._alive.pop()
        worker.send_signal(signal.SIGKILL)
        killed = time.time()
        worker.wait()
        return killed

    def kill_all(self) -> None:
        while self._alive:
            self.kill_newest()


@contextlib.asynccontextmanager
async def _setup() -> AsyncIterator[tuple[EmbeddedServer, Workers, AgentRunClient, str]]:
    """A fresh server, one worker that serves, a client on its queue and a new owner."""
    async with fresh_server() as server:
        queue = new_queue("crash")
        workers = Workers(server, queue)
        workers.spawn()
        try:
            runs, owner = AgentRunClient(server.client, queue), new_owner()
            await _ready(runs, owner)
            yield server, workers, runs, owner
        finally:
            workers.kill_all()


async def _start(runs: AgentRunClient, owner: str, timeout: float) -> Handle:
    run_id = f"{owner}/crash"
    run_input = AgentRunInput(
        owner_thread_id=owner, agent_id="scripted", prompt=SCRIPT, heartbeat_timeout=timeout
    )
    run_input.check_prompt()
    await runs._start(run_id, run_input)
    return runs.temporal.get_workflow_handle(run_id)


async def clean(timeout: float) -> float:
    """Seconds from start to result of the run, with no crash."""
    async with _setup() as (_, _, runs, owner):
        start = time.perf_counter()
        handle = await _start(runs, owner, timeout)
        await asyncio.wait_for(handle.result(), DEADLINE)
        return time.perf_counter() - start


async def crashed(timeout: float) -> Crash:
    """Start the run, kill its worker mid-sleep and start another at once; measure."""
    async with _setup() as (server, workers, runs, owner):
        converter = server.client.data_converter
        start = time.perf_counter()
        handle = await _start(runs, owner, timeout)
        first, _ = await _until(handle, converter, lambda s: s.running and bool(s.started))
        began = first.started or 0.0
        kill_at = began + KILL_INTO_SLEEP + random.uniform(0.0, KILL_SPREAD)
        await asyncio.sleep(max(0.0, kill_at - time.time()))
        killed = workers.kill_newest()
        workers.spawn()

        def retried(s: Snapshot) -> bool:
            return s.attempt >= 2 and s.running and (s.started or 0.0) > killed

        retry, held = await _until(handle, converter, retried)
        held = held or retry
        progressed = await _progressed(handle, converter, held.slept or 0.0)
        await asyncio.wait_for(handle.result(), DEADLINE)
        times = Times(killed, began, time.perf_counter() - start, timeout)
        return _crash(times, retry, held, progressed)


async def _progressed(handle: Handle, converter: DataConverter, slept: float) -> float | None:
    """When the retry first heartbeated a checkpoint past ``slept``; None if never seen."""
    async for current in snapshots(handle, converter):
        if current is None or current.slept is None:
            return None  # the turn, or its sleep, ended first
        if current.attempt >= 2 and current.slept > slept:
            return current.heartbeat
    return None


@dataclass(frozen=True)
class Times:
    """Of one crashed run: the kill and the sleep's start (epoch s), total and timeout (s)."""

    killed: float
    began: float
    total: float
    timeout: float


def _crash(times: Times, retry: Snapshot, held: Snapshot, progressed: float | None) -> Crash:
    """One crash's figures, from the retry's snapshot and the last one before it."""
    assert retry.started is not None
    slept = held.slept if held.slept is not None else 0.0
    last_beat = held.heartbeat if held.heartbeat is not None else times.began
    return Crash(
        resume=retry.started - times.killed,
        lost=times.killed - times.began - slept,
        total=times.total,
        silence=times.killed - last_beat,
        after_timeout=retry.started - (last_beat + times.timeout),
        progressed=None if progressed is None else progressed - times.killed,
    )


def _report(report: Report, timeout: float, crashes: list[Crash], clean_run: float) -> None:
    tag, key = f" [heartbeat {timeout:g}s]", f"{timeout:g}s"
    resume = [c.resume for c in crashes]
    lost = [c.lost for c in crashes]
    ratio = [c.total / clean_run for c in crashes]
    report.samples[f"crash_resume_{key}"] = resume
    report.samples[f"crash_lost_{key}"] = lost
    report.samples[f"crash_total_{key}"] = [c.total for c in crashes]
    report.samples[f"crash_clean_{key}"] = [clean_run]
    report.samples[f"crash_silence_{key}"] = [c.silence for c in crashes]
    report.samples[f"crash_after_timeout_{key}"] = [c.after_timeout for c in crashes]
    progressed = [c.progressed for c in crashes if c.progressed is not None]
    report.samples[f"crash_progressed_{key}"] = progressed
    s, limit = "crash", timeout + RESUME_MARGIN
    p50 = percentile(resume, 50)
    report.add(
        Figure(s, f"step resumes after kill p50{tag}", p50, "s", f"<= {limit:g} s", p50 <= limit)
    )
    report.add(Figure(s, f"step resumes after kill max{tag}", max(resume), "s"))
    p50 = percentile(lost, 50)
    target = f"<= {LOST_TARGET:g} s"
    report.add(Figure(s, f"work lost p50{tag}", p50, "s", target, p50 <= LOST_TARGET))
    report.add(Figure(s, f"work lost max{tag}", max(lost), "s"))
    if progressed:
        name = f"new checkpoint after kill p50{tag}"
        report.add(Figure(s, name, percentile(progressed, 50), "s"))
    report.add(Figure(s, f"run with kill / clean run p50{tag}", percentile(ratio, 50), "x"))


async def run(report: Report) -> None:
    """Resume delay and work lost after a SIGKILL, for each heartbeat setting."""
    repeats = 1 if QUICK else 2
    for timeout in SETTINGS:
        clean_run = await clean(timeout)
        crashes = [await crashed(timeout) for _ in range(repeats)]
        _report(report, timeout, crashes, clean_run)
