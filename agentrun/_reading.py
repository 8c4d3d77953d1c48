"""Reading one run: Temporal says whose it is and how it closed; the run says the rest.

A run is looked up with ``describe`` first, which the server answers alone: its owner
is a search attribute, so another owner's run is refused before anything else is
asked, exactly as a run that does not exist is. Then what only the run knows:

- a running run answers its ``summary`` query (its worker holds it in memory), and a
  described one's running turn adds its latest text from its heartbeated checkpoint
  (``agentrun._live_text``);
- a completed run's result is its summary, and a failed run's error carries it: both
  are read from the close event, by the server alone;
- a stopped, terminated or timed-out run (or one that failed without its summary) is
  asked its latest text by a query, which replays its history on a worker; the status
  is always how Temporal says its workflow closed.

Reads (queries, results) go a few at a time per client: a listing of thousands of runs
never floods a worker with replays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import ApplicationError, FailureError, TerminatedError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import QUERY_SUMMARY, WORKFLOW_TYPE
from agentrun._listing import VisibleRun, visible_run
from agentrun._live_text import with_live_text
from agentrun._models import RunSummary

__all__ = ["QUERY_TIMEOUT", "READS_AT_ONCE", "Listing", "NoAnswerError", "RunReader"]

QUERY_TIMEOUT = timedelta(seconds=10)
# Reads of runs in flight at once, per client: a query of a closed run replays its
# history on a worker, and a worker asked for a thousand replays at once answers none
# in time.
READS_AT_ONCE = 16
_NO_ANSWER = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
# Seconds before a query the run's full query buffer refused is asked again.
_BUSY_PAUSE = 0.2
_NO_STATE = (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT)
T = TypeVar("T")


class NoAnswerError(RPCError):
    """A query of a run that no worker answered in time: none serves its task queue,
    or the one that does is too busy. The message says which run and query."""


class Listing:
    """The reads of one listing: best effort, one run at a time never fails the list.

    Once a query goes unanswered (no worker, or one too busy), the rest of the
    listing asks no more queries: those runs are listed as visibility shows them.
    """

    def __init__(self, queries: bool = True) -> None:
        """Start with queries allowed, or (``queries=False``) with none at all: what
        visibility and ``describe`` show, which no worker has to answer."""
        self.answering = queries


class RunReader:
    """Reads runs through one Temporal client, ``READS_AT_ONCE`` at a time."""

    def __init__(self, client: Client, queue: str) -> None:
        """Read through ``client``; ``queue`` is named when no worker answers."""
        self._client = client
        self._queue = queue
        self._reads = asyncio.Semaphore(READS_AT_ONCE)

    async def bounded(self, read: Awaitable[T]) -> T:
        """``read``, awaited once fewer than ``READS_AT_ONCE`` reads are in flight."""
        async with self._reads:
            return await read

    async def visible(self, owner_thread_id: str, run_id: str) -> VisibleRun | None:
        """The run as Temporal describes it, or None if it is unknown or another owner's.

        The server answers alone, for a run of another owner as for one that does not
        exist; no query is sent.
        """
        try:
            description = await self._client.get_workflow_handle(run_id).describe()
        except RPCError as err:
            if err.status in _NO_STATE:
                return None
            raise
        if description.workflow_type != WORKFLOW_TYPE:
            return None
        seen = visible_run(description, description.parent_id)
        if seen is None or seen.summary.owner_thread_id != owner_thread_id:
            return None
        return seen

    async def current(self, seen: VisibleRun, listing: Listing | None = None) -> RunSummary:
        """The run's summary now, from ``seen`` and what only the run knows.

        Without a ``listing``, a running run that no worker answers raises; with one,
        every read is best effort and the run is summarised from visibility.
        """
        if seen.closed is None:
            said = await self._said(seen, listing, pinned=False) or seen.summary
            return await self._live(seen, said, listing)
        return await self._closed(seen, listing)

    async def _live(
        self, seen: VisibleRun, said: RunSummary, listing: Listing | None
    ) -> RunSummary:
        """``said`` with its running turn's latest text, from a describe of the run."""
        if isinstance(seen.execution, WorkflowExecutionDescription):
            return await with_live_text(self._client, seen.execution, said)
        handle = self._client.get_workflow_handle(said.run_id, run_id=seen.execution.run_id)
        try:
            description = await self.bounded(handle.describe(rpc_timeout=QUERY_TIMEOUT))
        except RPCError:
            if listing is None:
                raise
            return said
        return await with_live_text(self._client, description, said)

    async def query(
        self,
        run_id: str,
        name: str,
        result_type: type[T],
        execution: str | None = None,
        attempts: int = 2,
    ) -> T | None:
        """The query's answer; None if the run has no such state (unknown, no input).

        Raises:
            NoAnswerError: no worker answered in time, ``attempts`` times.
        """
        handle: WorkflowHandle[object, object] = self._client.get_workflow_handle(
            run_id, run_id=execution
        )
        for attempt in range(1, attempts + 1):
            try:
                # Queries need a worker: without one, give up in 10 s, not 30 s.
                async with self._reads:
                    answer: T = await handle.query(
                        name, result_type=result_type, rpc_timeout=QUERY_TIMEOUT
                    )
                return answer
            except RPCError as err:
                if err.status in _NO_STATE:
                    return None
                if _no_poller(err):
                    raise self._no_answer(err, run_id, name) from None
                if err.status == RPCStatusCode.RESOURCE_EXHAUSTED and attempt < attempts:
                    # The run's buffer of queries waiting on its workflow task is full
                    # (a busy run, many readers): asked again a moment later.
                    await asyncio.sleep(_BUSY_PAUSE * attempt)
                    continue
                if err.status not in _NO_ANSWER:
                    raise
                # A query that lands as the run closes can go unanswered (the worker
                # evicts the run with the query buffered); asked again, it is answered.
                if attempt == attempts:
                    raise self._no_answer(err, run_id, name) from None
            except WorkflowQueryFailedError:
                return None
        return None

    async def _said(
        self, seen: VisibleRun, listing: Listing | None, pinned: bool
    ) -> RunSummary | None:
        """The run's own summary query; None when it cannot say (or, listing, did not)."""
        if listing is not None and not listing.answering:
            return None
        execution = seen.execution.run_id if pinned else None
        # A closed run's text is a best-effort extra: its status is already known.
        attempts = 1 if listing is not None or pinned else 2
        try:
            said = await self.query(
                seen.summary.run_id, QUERY_SUMMARY, RunSummary, execution, attempts
            )
        except RPCError as err:
            if listing is None and not pinned:
                raise
            if listing is not None and _unanswered(err):
                listing.answering = False
            return None
        if said is None or said.owner_thread_id != seen.summary.owner_thread_id:
            return None  # a run whose input was invalid has no summary of its own
        return said

    async def _closed(self, seen: VisibleRun, listing: Listing | None) -> RunSummary:
        """A closed run's summary: its result or failure, else visibility plus its text."""
        handle = self._client.get_workflow_handle(
            seen.summary.run_id, run_id=seen.execution.run_id, result_type=RunSummary
        )
        error: str | None = None
        try:
            async with self._reads:
                result: RunSummary = await handle.result(
                    follow_runs=False, rpc_timeout=QUERY_TIMEOUT
                )
            if result.status == "completed":
                return result
        except WorkflowFailureError as err:
            told = _told_summary(err)
            if told is not None:
                return told
            error = _close_error(seen.closed, err)
        except (WorkflowContinuedAsNewError, ValueError):
            pass
        except RPCError:
            if listing is None:
                raise
        said = await self._said(seen, listing, pinned=True)
        if said is None:
            return seen.summary.model_copy(update={"error": error})
        # The run's own word on its text and parent; Temporal's on how it ended.
        return said.model_copy(update={"status": seen.summary.status, "error": error or said.error})

    def _no_answer(self, err: RPCError, run_id: str, name: str) -> NoAnswerError:
        seconds = int(QUERY_TIMEOUT.total_seconds())
        return NoAnswerError(
            f"no worker answered the {name!r} query of run {run_id} within {seconds} s "
            f"({err.message or err.status.name}): is a worker serving task queue "
            f"{self._queue!r}, and not overloaded?",
            err.status,
            err.raw_grpc_status,
        )


def _told_summary(err: WorkflowFailureError) -> RunSummary | None:
    """The summary a failed run closed with (the ``AgentFailed`` error's details)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details:
        try:
            return RunSummary.model_validate(cause.details[0])
        except ValueError:
            return None
    return None


def _close_error(status: WorkflowExecutionStatus | None, err: WorkflowFailureError) -> str | None:
    """How a run closed when it did not say so itself: a failure's message, or how it
    was ended from outside (a stop leaves no error)."""
    cause = err.cause
    if status == WorkflowExecutionStatus.FAILED:
        return cause.message if isinstance(cause, FailureError) else str(err)
    if status == WorkflowExecutionStatus.TERMINATED:
        reason = cause.message if isinstance(cause, TerminatedError) else ""
        said = "Workflow execution terminated"
        # temporalio's text when the terminate named no reason.
        return said if reason in ("", "Workflow terminated") else f"{said}: {reason}"
    if status == WorkflowExecutionStatus.TIMED_OUT:
        return "Workflow execution timed out"
    return None


def _unanswered(err: RPCError) -> bool:
    """No worker answered: none polls the queue, or it did not answer in time."""
    return err.status in _NO_ANSWER or _no_poller(err)


def _no_poller(err: RPCError) -> bool:
    """The server knows no worker polls the run's task queue (for a few minutes)."""
    return err.status == RPCStatusCode.FAILED_PRECONDITION and "no poller" in err.message
