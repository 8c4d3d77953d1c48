"""Scenario 3: stop cascade. Trees whose leaves are all mid-sleep, stopped from the root.

Both sides close a workflow only once its turn has seen the cancel
(``WAIT_CANCELLATION_COMPLETED``); each tree's histories are read afterwards to check
it (no activity left open at close) and to count what each side writes per stopped run.

The sides stop their trees in pairs, one after the other, each pair's first side the
other's in the next: the ratio is the median of each pair's, so a moment of load on the
machine (a 100-run baseline stop took 3.9 to 5.1 s in one run of the scenario) weighs on
both sides of a pair alike, not on three stops of one side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError

from agentrun import AgentRunClient
from agentrun._constants import HEARTBEAT_EVERY, TURN_ACTIVITY
from bench._harness import (
    ACTIVITY_STARTS,
    QUICK,
    Figure,
    Report,
    agentrun_worker,
    fresh_server,
    new_owner,
    new_queue,
    percentile,
)
from bench.baseline import BaselineTree, baseline_worker
from bench.scenarios.running import cpu_seconds

LEAF = {"steps": [{"sleep": 600}]}


def _delegate(prompt: object) -> dict[str, object]:
    return {
        "tool": "agent_run",
        "args": {"agent_id": "scripted", "prompt": prompt, "background": True},
    }


# runs in the tree: (middle runs under the root, leaves under each middle; 0 = leaves only).
SHAPES = {10: (9, 0), 100: (9, 10), 300: (13, 22)}
# Stops of each tree per side: the 300 tree once (building it and its 286 heartbeating
# leaves is most of the scenario's time), the 100 tree six times, three pairs with each
# side first (once when quick): a 100-run stop takes 1.5 to 2.5 s on either side, and
# the ratios of four pairs of one run spread from 0.77 to 1.23 (2026-12-01 01:09 UTC:
# their median 1.152; six probe runs of six pairs each gave 0.96 to 1.15). The
# 10 tree eight times: its stop is a few tenths of a second, about half of it the wait
# for the leaves' next heartbeat (``STOP_PHASE``), and one slow stop in four pairs
# moved their median by 0.15.
REPEATS = {10: 8, 100: 6, 300: 1}
# Every leaf of the 300 tree holds a turn: both workers get room for them, and the
# tree's one owner may hold them all (by default an owner gets half the slots, and
# the middles' turns would wait behind 200 sleeping leaves).
MAX_TURNS_ENV = "AGENTRUN_MAX_CONCURRENT_TURNS"
MAX_OWNER_TURNS_ENV = "AGENTRUN_MAX_TURNS_PER_OWNER"
TURN_SLOTS = "400"
# Seconds between every leaf being inside its turn and the stop, on both sides: the
# leaves' first heartbeats settle. Counted from visibility listing every run instead,
# agentrun's worker was still starting turns when the stop came (a stop of the 100
# tree took 5 s in one run and 9 s in the next). Three heartbeats of each leaf.
SETTLE = 1.0
# Then a part of a heartbeat, drawn anew for each stop: a turn sees its cancel only in
# its next heartbeat's response, and with a fixed settle every stop came at the same
# point of the leaves' heartbeat cycle (the tree's turns start together, and beat every
# 0.3 s from their start), where a user's stop comes at any point of it. Measured with
# 16 pairs of 10-run stops a side (2026-12-01, before 00:15 UTC): fixed, agentrun 0.22 s and the
# baseline 0.20 s at the median, each with a few stops of 0.36 to 0.42 s (one leaf had
# beaten just before its cancel came); drawn, 0.34 and 0.33 s.
STOP_PHASE = random.Random(2026)


def tree_script(size: int) -> str:
    """A root over 9 leaves (10 runs), or over middles of leaves (100: 9 x 10; 300: 13 x 22)."""
    middles, leaves = SHAPES[size]
    if leaves == 0:
        return json.dumps(fan_out(LEAF, middles))
    return json.dumps(fan_out(fan_out(LEAF, leaves), middles))


def fan_out(child: object, count: int) -> dict[str, object]:
    """A script that starts ``count`` children in one step, as a model's response with
    parallel tool calls: a middle run asks its root for runs once (docs/budgets.md)."""
    return {"steps": [{"tools": [_delegate(child)] * count}]}


async def _running(client: Client, owner: str) -> int:
    query = f"OwnerThreadId = '{owner}' AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def _baseline_running(client: Client) -> int:
    query = "WorkflowType = 'BaselineTree' AND ExecutionStatus = 'Running'"
    return (await client.count_workflows(query)).count


async def _wait_running(client: Client, owner: str | None, size: int, timeout: float = 300) -> None:
    """Until ``size`` runs of the owner (None: baseline nodes) are running."""
    deadline = time.monotonic() + timeout
    count = _baseline_running(client) if owner is None else _running(client, owner)
    while await count < size:
        count = _baseline_running(client) if owner is None else _running(client, owner)
        if time.monotonic() > deadline:
            raise TimeoutError(f"tree of {size} did not start within {timeout}s")
        await asyncio.sleep(0.2)


async def _wait_started(activity_type: str, count: int, timeout: float = 120) -> None:
    """Until this process's workers have started ``count`` activities of the type since
    ``ACTIVITY_STARTS`` was last read: every leaf inside its turn, not only listed
    running (a run is listed from its start; its first workflow task, and its turn's
    start, can come seconds later on a busy worker)."""
    deadline = time.monotonic() + timeout
    while ACTIVITY_STARTS.started[activity_type] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} {activity_type} did not start within {timeout}s")
        await asyncio.sleep(0.05)


@dataclass
class Histories:
    """What a stopped tree wrote: history events by type, over its runs."""

    runs: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    since_stop: Counter[str] = field(default_factory=Counter)  # written after the stop
    unseen_cancels: int = 0  # activities still open when their workflow closed
    # Seconds, per leaf: the stop until its cancel request, that until its turn's
    # cancel request, that until the turn returned, that until the run closed.
    phases: dict[str, list[float]] = field(default_factory=dict)

    def per_run(self, since_stop: bool = False) -> float:
        return sum((self.since_stop if since_stop else self.kinds).values()) / self.runs


_ACTIVITY_CLOSES = (
    "activity_task_completed_event_attributes",
    "activity_task_failed_event_attributes",
    "activity_task_canceled_event_attributes",
    "activity_task_timed_out_event_attributes",
)
# Histories read at once: enough to be quick, few enough not to load the server.
HISTORY_READS = 16


async def tree_histories(client: Client, query: str, stopped_at: float) -> Histories:
    """Every history ``query`` lists, counted by event type (all, and those written from
    ``stopped_at``, a wall time, on); and how many activities (turns, sleeps) had not
    closed when their workflow did: each must have seen its cancel."""
    ids = [execution.id async for execution in client.list_workflows(query)]
    gate = asyncio.Semaphore(HISTORY_READS)

    async def read(workflow_id: str) -> Sequence[HistoryEvent]:
        async with gate:
            return (await client.get_workflow_handle(workflow_id).fetch_history()).events

    found = Histories(runs=len(ids), phases={name: [] for name in PHASES})
    for events in await asyncio.gather(*(read(i) for i in ids)):
        scheduled: set[int] = set()
        marks: dict[str, float] = {}
        for event in events:
            kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
            found.kinds[kind] += 1
            at = event.event_time.ToDatetime(UTC).timestamp()
            if at >= stopped_at:
                found.since_stop[kind] += 1
                marks.setdefault(kind, at)
            attributes = event.WhichOneof("attributes")
            if attributes == "activity_task_scheduled_event_attributes":
                scheduled.add(event.event_id)
            elif attributes in _ACTIVITY_CLOSES:
                scheduled.discard(getattr(event, attributes).scheduled_event_id)
        found.unseen_cancels += len(scheduled)
        _leaf_phases(found.phases, marks, stopped_at)
    return found


# A leaf's way from the stop to its close, as its history's first events of each kind
# after the stop show it.
PHASES = {
    "stop to run's cancel request": ("", "workflow_execution_cancel_requested"),
    "to turn's cancel request": (
        "workflow_execution_cancel_requested",
        "activity_task_cancel_requested",
    ),
    "to turn returned": ("activity_task_cancel_requested", "activity_task_"),
    "to run closed": ("activity_task_", "workflow_execution_canceled"),
}


def _leaf_phases(phases: dict[str, list[float]], marks: dict[str, float], stopped: float) -> None:
    if "activity_task_cancel_requested" not in marks:
        return  # not a leaf in a turn
    closes = ("activity_task_completed", "activity_task_canceled")
    returned = [marks[kind] for kind in closes if kind in marks]
    if not returned or "workflow_execution_canceled" not in marks:
        return
    at = {**marks, "": stopped, "activity_task_": min(returned)}
    for name, (start, end) in PHASES.items():
        phases[name].append(at[end] - at[start])


@dataclass
class Asleep:
    """Cores used while a tree slept, the settle before its stop: this process (both
    sides' workers, one side's tree at a time, and an idle client) and the server."""

    workers: float
    server: float


# A baseline stop: its seconds, the root's id, the wall time of the cancel, the cores
# used asleep.
BaselineStop = tuple[float, str, float, Asleep]


async def settle(server_pid: int | None) -> Asleep:
    """Sleep ``SETTLE`` and a random part of a heartbeat (every leaf is then inside its
    sleep, at any point of its heartbeat cycle); the cores used meanwhile."""
    start, own, served = time.perf_counter(), time.process_time(), cpu_seconds(server_pid or 0)
    await asyncio.sleep(SETTLE + STOP_PHASE.uniform(0, HEARTBEAT_EVERY))
    took = time.perf_counter() - start
    used = time.process_time() - own, cpu_seconds(server_pid or 0) - served
    return Asleep(used[0] / took, used[1] / took)


async def baseline_stop_once(
    client: Client, queue: str, size: int, server_pid: int | None
) -> BaselineStop:
    """Seconds from the root's cancel until no node of the baseline tree is running,
    the root's workflow id, the wall time of the cancel, and the cores it used asleep."""
    middles, leaves = SHAPES[size]
    fanout = [middles, leaves] if leaves else [middles]
    started = ACTIVITY_STARTS.started["baseline_sleep"]
    handle = await client.start_workflow(
        BaselineTree.run, fanout, id=f"baseline-tree-{uuid.uuid4().hex[:8]}", task_queue=queue
    )
    built = time.perf_counter()
    await _wait_running(client, None, size)
    await _wait_started("baseline_sleep", started + (middles * leaves or middles))
    print(f"    baseline tree of {size} running in {time.perf_counter() - built:.1f} s", flush=True)
    asleep = await settle(server_pid)
    start, wall_start = time.perf_counter(), time.time()
    await handle.cancel()
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    while await _baseline_running(client):
        await asyncio.sleep(0.02)
    return time.perf_counter() - start, handle.id, wall_start, asleep


async def _last_close(client: Client, owner: str) -> float:
    """The wall time the tree's last run closed, as the server recorded it."""
    closes = [
        execution.close_time.timestamp()
        async for execution in client.list_workflows(f"OwnerThreadId = '{owner}'")
        if execution.close_time is not None
    ]
    return max(closes)


@dataclass
class Stopped:
    """One stop of an agentrun tree."""

    seen: float  # seconds from ``stop_tree`` until visibility shows no run running
    last_close: float  # ... until the last close the server recorded
    walk_closed: float  # ... over the closed tree
    owner: str
    stopped_at: float  # wall time ``stop_tree`` was called
    asleep: Asleep


async def stop_once(
    runs: AgentRunClient, size: int, walk: bool = True, server_pid: int | None = None
) -> Stopped:
    """Seconds from ``stop_tree`` until every run closed (seen by the client; recorded
    by the server), and of a subtree walk over the closed runs."""
    owner = new_owner()
    built = time.perf_counter()
    started = ACTIVITY_STARTS.started[TURN_ACTIVITY]
    root = await runs.start(owner, "scripted", tree_script(size))
    await _wait_running(runs.temporal, owner, size)
    await _wait_started(TURN_ACTIVITY, started + size)  # every run's first turn
    print(f"    agentrun tree of {size} running in {time.perf_counter() - built:.1f} s", flush=True)
    asleep = await settle(server_pid)
    summary = await runs.summary(owner, root)
    assert summary is not None
    # No walk of the open tree here: its reads of every run (a query and a describe
    # each) loaded the server the stop then shares, and stop_tree reads no run.
    start, wall_start = time.perf_counter(), time.time()
    await runs.stop_tree(owner, root)
    while await _running(runs.temporal, owner):
        await asyncio.sleep(0.02)
    seen = time.perf_counter() - start
    last_close = await _last_close(runs.temporal, owner) - wall_start
    walk_start, walk_closed = time.perf_counter(), 0.0
    if walk:  # what `agentrun tree` costs over the closed tree (the last stop of a size)
        await runs.subtree(owner, root)
        walk_closed = time.perf_counter() - walk_start
    return Stopped(seen, last_close, walk_closed, owner, wall_start, asleep)


async def stop_pairs(
    runs: AgentRunClient, baseline_queue: str, size: int, server_pid: int | None
) -> tuple[list[Stopped], list[BaselineStop]]:
    """``REPEATS[size]`` stops a side (one when quick), in pairs: each pair's first side
    is the other's in the next, so a moment of load falls on both sides alike."""
    repeats = 1 if QUICK else REPEATS[size]
    results: list[Stopped] = []
    bases: list[BaselineStop] = []
    for n in range(repeats):
        # The closed tree is walked after a size's last stop, not the 300 tree's (15 s
        # of the full run; the 100 tree's shows its cost).
        walk = n == repeats - 1 and size != 300
        if n % 2 == 0:
            results.append(await stop_once(runs, size, walk, server_pid))
        bases.append(await baseline_stop_once(runs.temporal, baseline_queue, size, server_pid))
        if n % 2 == 1:
            results.append(await stop_once(runs, size, walk, server_pid))
    return results, bases


async def run(report: Report) -> None:
    """Stop trees of 10, 100 and 300 runs, agentrun's and the baseline's (``REPEATS``)."""
    os.environ[MAX_TURNS_ENV] = os.environ[MAX_OWNER_TURNS_ENV] = TURN_SLOTS
    try:
        async with fresh_server() as server, agentrun_worker(server.client) as queue:
            baseline_queue = new_queue("baseline")
            async with baseline_worker(server.client, baseline_queue):
                for size in SHAPES:
                    runs = AgentRunClient(server.client, queue)
                    results, bases = await stop_pairs(runs, baseline_queue, size, server.pid)
                    _report(report, size, results, [seconds for seconds, *_ in bases])
                    _report_asleep(report, size, results, [asleep for *_, asleep in bases])
                    read_from = time.perf_counter()
                    ours = await tree_histories(
                        server.client,
                        f"OwnerThreadId = '{results[-1].owner}'",
                        results[-1].stopped_at,
                    )
                    _, root_id, cancelled_at, _ = bases[-1]
                    theirs = await tree_histories(
                        server.client, f"RootWorkflowId = '{root_id}'", cancelled_at
                    )
                    read = time.perf_counter() - read_from
                    print(f"    histories of both trees of {size} read in {read:.1f} s", flush=True)
                    _report_histories(report, size, ours, theirs)
    finally:
        del os.environ[MAX_TURNS_ENV], os.environ[MAX_OWNER_TURNS_ENV]


def _report(report: Report, size: int, results: list[Stopped], bases: list[float]) -> None:
    stops = [result.seen for result in results]
    report.samples[f"stop_{size}"] = stops
    report.samples[f"stop_baseline_{size}"] = bases
    p50, base = percentile(stops, 50), percentile(bases, 50)
    # Each stop against the baseline's stop of its pair (run one after the other).
    ratio = percentile([ours / theirs for ours, theirs in zip(stops, bases, strict=True)], 50)
    report.add(Figure("stop", f"tree of {size}: stop to all closed p50", p50, "s"))
    report.add(Figure("stop", f"tree of {size}: max of {len(stops)}", max(stops), "s"))
    report.add(Figure("stop", f"tree of {size}: baseline cancel to all closed p50", base, "s"))
    figure = f"tree of {size}: ratio agentrun/baseline p50"
    report.add(Figure("stop", figure, ratio, "x", "<= 1.2", ratio <= 1.2))
    report.add(Figure("stop", f"tree of {size}: ratio of the p50s", p50 / base, "x"))
    last_close = percentile([result.last_close for result in results], 50)
    report.add(Figure("stop", f"tree of {size}: stop to last close (server) p50", last_close, "s"))
    if walk := results[-1].walk_closed:
        report.add(Figure("stop", f"tree of {size}: subtree walk over closed runs", walk, "s"))


def _report_asleep(report: Report, size: int, results: list[Stopped], bases: list[Asleep]) -> None:
    sides = {"agentrun": [result.asleep for result in results], "baseline": bases}
    for side, asleep in sides.items():
        workers = percentile([a.workers for a in asleep], 50)
        server = percentile([a.server for a in asleep], 50)
        report.add(
            Figure("stop", f"tree of {size} asleep: workers' CPU p50, {side}", workers, "cores")
        )
        report.add(
            Figure("stop", f"tree of {size} asleep: server CPU p50, {side}", server, "cores")
        )


def _report_histories(report: Report, size: int, ours: Histories, theirs: Histories) -> None:
    """History per stopped run on both sides, and the event types agentrun writes more of."""
    for side, found in (("agentrun", ours), ("baseline", theirs)):
        # Both close a workflow only after its activities: a cancel every turn has seen
        # (0 expected; a run terminated by its closing parent would count here).
        unseen = found.unseen_cancels + found.kinds["workflow_execution_terminated"]
        figure = f"tree of {size}: runs closed before their turn saw the cancel, {side}"
        report.add(Figure("stop", figure, unseen, "runs", "0", unseen == 0))
        assert found.runs == size, f"{side}: {found.runs} runs, not {size}"
        figure = f"tree of {size}: history events per stopped run, {side}"
        report.add(Figure("stop", figure, found.per_run(), "events"))
        figure = f"tree of {size}: of which written by the stop, {side}"
        report.add(Figure("stop", figure, found.per_run(since_stop=True), "events"))
    for name in PHASES:
        for side, found in (("agentrun", ours), ("baseline", theirs)):
            figure = f"tree of {size}: leaf {name} p50, {side}"
            report.add(Figure("stop", figure, percentile(found.phases[name], 50), "s"))
    kinds = ours.since_stop.keys() | theirs.since_stop.keys()
    extra = {k: (ours.since_stop[k] - theirs.since_stop[k]) / size for k in kinds}
    for kind, per_run in sorted(extra.items(), key=lambda item: -abs(item[1])):
        if abs(per_run) >= 0.5:
            figure = f"tree of {size}: stop writes {kind} per run, agentrun - baseline"
            report.add(Figure("stop", figure, per_run, "events"))
