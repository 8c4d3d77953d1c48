"""Commands that need a worker: said at once, and once, when none polls the queue.

Without a worker a run waits in its task queue and every query waits for its timeout;
the commands check Temporal's list of the queue's pollers first instead.
"""

from __future__ import annotations

import asyncio
import contextlib

from temporalio.service import RPCError

from agentrun._client import AgentRunClient
from agentrun._delegation import unknown_run
from agentrun._task_queue import (
    QUERIES_NEED_A_WORKER,
    NoWorkerError,
    no_worker_hint,
    worker_polls,
)
from agentrun.cli._common import errors

__all__ = [
    "WORKER_CHECK_SECONDS",
    "WorkerNotice",
    "require_worker",
    "require_worker_for",
    "warn_without_worker",
]

WORKER_CHECK_SECONDS = 1.0


async def require_worker(runs: AgentRunClient, consequence: str, queue: str | None = None) -> None:
    """Return when a worker polls ``queue`` (default: the runs' task queue).

    Raises:
        NoWorkerError: none does; the message says ``consequence`` and how to start one.
    """
    queue = queue or runs.task_queue
    if not await worker_polls(runs.temporal, queue):
        raise NoWorkerError(no_worker_hint(runs.temporal, queue, consequence))


async def require_worker_for(runs: AgentRunClient, owner: str, run_id: str) -> None:
    """Return when the run is the owner's and a worker polls its task queue to answer
    its queries.

    Raises:
        DelegationError: the run is unknown to ``owner``.
        NoWorkerError: no worker polls the run's task queue.
    """
    queue = await runs.task_queue_of(owner, run_id)
    if queue is None:
        raise unknown_run(run_id)
    await require_worker(runs, QUERIES_NEED_A_WORKER, queue)


async def warn_without_worker(runs: AgentRunClient, consequence: str) -> None:
    """Say on stderr (off any ``--json`` output) when no worker polls, and what it costs."""
    if not await worker_polls(runs.temporal, runs.task_queue):
        hint = no_worker_hint(runs.temporal, runs.task_queue, consequence)
        errors.print(f"note: {hint}", highlight=False, markup=False, soft_wrap=True)


class WorkerNotice:
    """Says once (on stderr, off any ``--json`` output) when no worker polls the runs'
    task queue, then waits quietly in the background until one does.

    ``waiting`` is true meanwhile: a follower whose stream breaks then neither reports
    it nor gives up, since the notice has said why and a worker may come.
    """

    def __init__(self, runs: AgentRunClient, consequence: str, queue: str | None = None) -> None:
        """Watch ``queue`` (default: the runs' task queue); ``consequence`` says what
        waits for a worker."""
        self._runs = runs
        self._queue = queue or runs.task_queue
        self._consequence = consequence
        self.waiting = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WorkerNotice:
        """Start watching the task queue's pollers."""
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while not (polls := await self._polls()):
            if polls is False and not self.waiting:
                runs = self._runs
                hint = no_worker_hint(runs.temporal, self._queue, self._consequence)
                errors.print(f"waiting: {hint}", highlight=False, markup=False, soft_wrap=True)
                self.waiting = True
            await asyncio.sleep(WORKER_CHECK_SECONDS)
        if self.waiting:
            self.waiting = False
            errors.print("A worker is polling now.", highlight=False, markup=False)

    async def _polls(self) -> bool | None:
        """Whether a worker polls; None when the server itself does not answer (the
        followers say so)."""
        try:
            return await worker_polls(self._runs.temporal, self._queue)
        except RPCError:
            return None
