"""Stopping a subtree faster than Temporal's own cascade, with no query to any run.

A stopped run cancels the children it runs and closes only once they have closed
(workflows/_children.py), so one cancel at the top would cascade through Temporal as
a plain workflow tree's does: a level further down only after a workflow task of each
run above it, and, on a busy server, after its queue of cancel requests. The client,
which lists the tree anyway, adds:

- a cancel of every open run of the subtree, a level at a time (the next level once
  the server has taken this one's): a run's cancel is in its history before its
  children's, so it closes stopped, never completed by children that closed first;
  each cancel gives the reason ``STOP_TREE_REASON``, and a run cancelled for it sends
  its children no cancel of its own unless one still runs ``CASCADE_FALLBACK`` later
  (workflows/_children.py; BENCHMARKS.md, stop);
- the wait: one result long poll per *top* (the run stopped, and runs no running
  parent stops: children resumed after their parent closed), and a visibility count
  of the subtree's running runs, which says whether the stop still makes progress and
  when visibility has caught up;
- each final summary, from one listing of how every run closed: a stopped run keeps
  its latest text in its memo as it closes (the first ``TEXT_MEMO_CHARS``), and a run
  that completed or failed meanwhile has its result read, which carries its summary.

Nothing is read from a run while the tree stops: a read of each run (a ``describe``
for its latest text) during the cascade took the server's time from it, 50 s of a
300-run tree's stop on a busy machine (BENCHMARKS.md).

A busy or unreachable server is asked again with backoff, never raised while it may
pass; a run that has not closed once nothing in the subtree has closed for 30 s is
returned as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from temporalio.client import Client, WorkflowContinuedAsNewError, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import STOP_TREE_REASON, TEXT_MEMO
from agentrun._delegation import not_running
from agentrun._listing import VisibleRun, list_tree, list_trees
from agentrun._models import RunSummary
from agentrun._reading import Listing, RunReader
from agentrun._spend import subtree_query

__all__ = ["RETRY_STATUSES", "TreeStop", "descendants", "levels", "retried"]

T = TypeVar("T")

# What a stop outlasts: a busy, slow or briefly unreachable server.
RETRY_STATUSES = (
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.RESOURCE_EXHAUSTED,
)
_ATTEMPTS = 8
_PAUSE_FIRST = 0.1
_PAUSE_LONGEST = 8.0
# A stop gives up waiting once nothing in the subtree has closed for this long.
STALL_SECONDS = 30.0
# Cancels in flight at once, per level of the tree.
_CANCELS_AT_ONCE = 64
# While the tops are open, how often the subtree's running runs are counted (progress).
_PROGRESS_EVERY = 2.0
# Once the tops have closed, how visibility is asked until it shows every close.
_CAUGHT_UP_PAUSE_FIRST = 0.02
_CAUGHT_UP_PAUSE_LONGEST = 1.0


async def retried(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``; a busy or unreachable server is asked again, with backoff, for about
    half a minute before its error is raised."""
    pause = _PAUSE_FIRST
    for _ in range(1, _ATTEMPTS):
        try:
            return await call()
        except RPCError as err:
            if err.status not in RETRY_STATUSES:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _PAUSE_LONGEST)
    return await call()


def levels(top_id: str, runs: Sequence[tuple[str, str | None]]) -> list[list[str]]:
    """``(run_id, parent_run_id)`` of runs below ``top_id``, each after its parent if
    that is among them, grouped by depth under ``top_id``, nearest first. A run whose
    parent is not among them counts as the top's child."""
    depth = {top_id: 0}
    found: list[list[str]] = []
    for run_id, parent in runs:
        at = depth[run_id] = depth.get(parent or top_id, 0) + 1
        while len(found) < at:
            found.append([])
        found[at - 1].append(run_id)
    return found


def descendants(runs: dict[str, VisibleRun], top: str) -> list[str]:
    """The run ids below ``top``, depth first, siblings by run_id."""
    children: dict[str, list[str]] = {}
    for run_id, run in runs.items():
        if run.summary.parent_run_id is not None:
            children.setdefault(run.summary.parent_run_id, []).append(run_id)
    order: list[str] = []
    visited = {top}
    stack = sorted(children.get(top, []), reverse=True)
    while stack:
        run_id = stack.pop()
        if run_id in visited:
            continue
        visited.add(run_id)
        order.append(run_id)
        stack.extend(sorted(children.get(run_id, []), reverse=True))
    return order


class TreeStop:
    """One ``stop_tree``: the cancels, the wait, the final summaries."""

    def __init__(self, client: Client, reader: RunReader, seen: VisibleRun) -> None:
        """Stop the run ``seen`` (already checked to be the owner's) and its subtree."""
        self._client = client
        self._reader = reader
        self._seen = seen
        self._owner = seen.summary.owner_thread_id

    async def stop(self, root: RunSummary) -> list[RunSummary]:
        """The subtree's final summaries, root first, depth first.

        Raises:
            DelegationError: ``Run '…' is not running …`` when nothing in it runs.
        """
        first = asyncio.create_task(self.cancel(root.run_id)) if root.status == "running" else None
        root_id = self._seen.execution.root_id or root.run_id
        runs = await retried(lambda: list_tree(self._client, self._owner, root_id))
        below = [runs[r] for r in descendants(runs, root.run_id)]
        tops = [run.summary for run in below if _open(run) and not _cascaded(run, runs)]
        if first is not None:
            await first
        await self._cancel_downwards(root.run_id, below)
        if first is not None:
            tops.insert(0, root)
        elif not tops:
            raise not_running(root.run_id, root.status)
        finals = await self._wait(root.run_id, tops)
        before = {run.summary.run_id: run for run in [self._seen, *below]}
        # The trees listed before: the stop closed every run in them as stopped, and
        # a search for trees of resumed runs would name each one.
        roots = {run.execution.root_id or run_id for run_id, run in runs.items()}
        return await self._closed(roots | {root_id}, list(before), before, finals)

    async def _cancel_downwards(self, top_id: str, below: list[VisibleRun]) -> None:
        """Cancel every open run below ``top_id``, a level at a time: a run's cancel is
        in its history before its children's (so it closes stopped, never completed
        by children that closed first), and a leaf's cancel does not wait on workflow
        tasks of each run above it, one level after another."""
        gate = asyncio.Semaphore(_CANCELS_AT_ONCE)

        async def cancel(run_id: str) -> None:
            async with gate:
                await self.cancel(run_id)

        open_runs = [(r.summary.run_id, r.summary.parent_run_id) for r in below if _open(r)]
        for level in levels(top_id, open_runs):
            await asyncio.gather(*(cancel(run_id) for run_id in level))

    async def cancel(self, run_id: str) -> None:
        """Request the run's cancel; a run already gone is nothing to cancel."""
        handle = self._client.get_workflow_handle(run_id)
        try:
            await retried(lambda: self._reader.bounded(handle.cancel(reason=STOP_TREE_REASON)))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def _wait(self, top_id: str, tops: list[RunSummary]) -> dict[str, RunSummary]:
        """Until the tops have closed and visibility shows nothing running below
        ``top_id``, or nothing has closed for ``STALL_SECONDS``; the tops' finals."""
        closing = {top.run_id: asyncio.create_task(self._final(top)) for top in tops}
        query = f"{subtree_query(self._owner, top_id)} AND ExecutionStatus = 'Running'"
        stall = _Stall()
        pause = _CAUGHT_UP_PAUSE_FIRST
        try:
            while True:
                pending = [task for task in closing.values() if not task.done()]
                if pending:
                    await asyncio.wait(pending, timeout=_PROGRESS_EVERY)
                running = await self._count(query)
                if running == 0 or stall.stalled(running):
                    break
                if not pending:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _CAUGHT_UP_PAUSE_LONGEST)
        finally:
            for task in closing.values():
                task.cancel()
        done = (task for task in closing.values() if task.done() and not task.cancelled())
        finals = (task.result() for task in done)
        return {final.run_id: final for final in finals if final is not None}

    async def _count(self, query: str) -> int | None:
        """The subtree's running runs as visibility counts them; None if it cannot say."""
        try:
            counted = await retried(lambda: self._client.count_workflows(query))
        except RPCError:
            return None
        return counted.count

    async def _final(self, running: RunSummary) -> RunSummary | None:
        """A top's final summary once it has closed, if it completed or failed: its
        result is its summary, its error carries it. None when the listing says it
        (stopped: its text is in its memo), or it has not closed."""
        handle = self._client.get_workflow_handle(running.run_id, result_type=RunSummary)
        try:
            return await retried(lambda: handle.result(follow_runs=True))
        except WorkflowFailureError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.details:
                with contextlib.suppress(ValueError):
                    return RunSummary.model_validate(cause.details[0])
        except (WorkflowContinuedAsNewError, RPCError):
            pass
        return None

    async def _closed(
        self,
        roots: set[str],
        order: list[str],
        before: dict[str, VisibleRun],
        finals: dict[str, RunSummary],
    ) -> list[RunSummary]:
        """Each run's final summary, in ``order``: one listing of the tree says how each
        closed, and a stopped run's memo its latest text (workflows/agent_run.py); a run
        that completed or failed has its result read, which carries its summary."""
        try:
            now = await retried(lambda: list_trees(self._client, self._owner, roots))
        except RPCError:
            now = {}
        listing = Listing(queries=False)

        async def final(run_id: str) -> RunSummary:
            known = finals.get(run_id)
            if known is not None:
                return known
            run = now.get(run_id, before[run_id])
            if run.closed is None:
                return run.summary  # still open: as it was
            if run.summary.status == "stopped":
                return run.summary.model_copy(update={"assistant": await memo_text(run)})
            return await self._reader.current(run, listing)

        return list(await asyncio.gather(*(final(run_id) for run_id in order)))


async def memo_text(run: VisibleRun) -> str | None:
    """The latest text a stopped run kept in its memo; None if it kept none."""
    try:
        text = await run.execution.memo_value(TEXT_MEMO, None)
    except (ValueError, TypeError):
        return None  # written by something else
    return text if isinstance(text, str) else None


class _Stall:
    """Whether a stop still makes progress: the running count fell within the window."""

    def __init__(self) -> None:
        self._fewest: int | None = None
        self._since = time.monotonic()

    def stalled(self, running: int | None) -> bool:
        now = time.monotonic()
        if running is not None and (self._fewest is None or running < self._fewest):
            self._fewest, self._since = running, now
        return now - self._since > STALL_SECONDS


def _open(run: VisibleRun) -> bool:
    return run.closed is None and run.summary.status == "running"


def _cascaded(run: VisibleRun, runs: dict[str, VisibleRun]) -> bool:
    """Whether the run's running parent stops it when it stops (its own child)."""
    parent_id = run.execution.parent_id
    parent = runs.get(parent_id) if parent_id is not None else None
    return parent is not None and _open(parent)
