"""Commands that need a worker: said at once, and once, when none polls the queue.

Without a worker a run waits in its task queue and every query waits for its timeout;
the commands check Temporal's list of the queue's pollers first instead.
"""

from __future__ import annotations

import asyncio

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
    "require_worker",
    "require_worker_for",
    "until_worker_polls",
    "warn_without_worker",
]

WORKER_CHECK_SECONDS = 1.0


async def require_worker(runs: AgentRunClient, consequence: str) -> None:
    """Return when a worker polls the runs' task queue.

    Raises:
        NoWorkerError: none does; the message says ``consequence`` and how to start one.
    """
    if not await worker_polls(runs.temporal, runs.task_queue):
        raise NoWorkerError(no_worker_hint(runs.temporal, runs.task_queue, consequence))


async def require_worker_for(runs: AgentRunClient, owner: str, run_id: str) -> None:
    """Return when the run is the owner's and a worker polls to answer its queries.

    Raises:
        DelegationError: the run is unknown to ``owner``.
        NoWorkerError: no worker polls the runs' task queue.
    """
    if not await runs.known(owner, run_id):
        raise unknown_run(run_id)
    await require_worker(runs, QUERIES_NEED_A_WORKER)


async def warn_without_worker(runs: AgentRunClient, consequence: str) -> None:
    """Say on stderr (off any ``--json`` output) when no worker polls, and what it costs."""
    if not await worker_polls(runs.temporal, runs.task_queue):
        hint = no_worker_hint(runs.temporal, runs.task_queue, consequence)
        errors.print(f"note: {hint}", highlight=False, markup=False, soft_wrap=True)


async def until_worker_polls(runs: AgentRunClient, consequence: str) -> None:
    """Return once a worker polls the runs' task queue; while none does, say so once
    (on stderr, off any ``--json`` output) and wait quietly."""
    if await worker_polls(runs.temporal, runs.task_queue):
        return
    hint = no_worker_hint(runs.temporal, runs.task_queue, consequence)
    errors.print(f"waiting: {hint}", highlight=False, markup=False, soft_wrap=True)
    while not await worker_polls(runs.temporal, runs.task_queue):
        await asyncio.sleep(WORKER_CHECK_SECONDS)
    errors.print("A worker is polling now.", highlight=False, markup=False)
