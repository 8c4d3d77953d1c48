"""Runs as Temporal's visibility store lists them: owner, agent, status, epoch, parent.

Listing an owner's runs, or a tree, reads visibility and never the runs themselves: a
query needs a worker, and a query of a closed run replays its whole history there, so
listing by queries costs one replay per run (1,400 at once took a worker past every
query's deadline). Every run carries its owner, agent, status and epoch as search
attributes (docs/contract.md), and Temporal adds its parent, its start and close time
and how its workflow closed. What only the run knows, its latest assistant text, is
read afterwards, a few runs at a time (``agentrun._client``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from agentrun._constants import (
    AGENT_ID,
    DELEGATION_EPOCH,
    DELEGATION_STATUS,
    OWNER_THREAD_ID,
    WORKFLOW_TYPE,
)
from agentrun._models import RunSummary, Status

__all__ = [
    "ListedRun",
    "VisibleRun",
    "closed_status",
    "list_owner_runs",
    "list_tree",
    "list_trees",
    "owner_query",
    "visible_run",
]

LIST_PAGE_SIZE = 1000
# Run ids named in one ``... IN (...)`` query (trees to follow, runs to look up).
IDS_PER_QUERY = 100

# How a closed workflow ended, as a run status (docs/delegation.md, section 2): a
# cancel is a stop, and a run terminated or timed out from outside was stopped too,
# as its parent sees it (workflows/_children.py).
_CLOSED: dict[WorkflowExecutionStatus, Status] = {
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "stopped",
    WorkflowExecutionStatus.TERMINATED: "stopped",
    WorkflowExecutionStatus.TIMED_OUT: "stopped",
}
_STATUSES: tuple[Status, ...] = ("running", "completed", "failed", "stopped")
# The Temporal statuses (visibility's ExecutionStatus) that can hold runs of a status.
_CLOSED_AS: dict[Status, tuple[str, ...]] = {
    "running": ("Running",),
    "completed": ("Running", "Completed"),
    "failed": ("Running", "Failed"),
    "stopped": ("Running", "Canceled", "Terminated", "TimedOut"),
}


class ListedRun(BaseModel):
    """A run of a tree, with when its current epoch started and closed (None while it runs)."""

    summary: RunSummary
    started_at: datetime | None = None
    closed_at: datetime | None = None


@dataclass(frozen=True)
class VisibleRun:
    """A run as visibility lists it: its current execution, and the summary that gives.

    The summary has no ``assistant`` text and no ``error``: only the run knows those.
    """

    summary: RunSummary
    execution: WorkflowExecution

    @property
    def closed(self) -> WorkflowExecutionStatus | None:
        """How the current execution closed, or None while it runs."""
        status = self.execution.status
        return status if status in _CLOSED else None

    def listed(self, summary: RunSummary | None = None) -> ListedRun:
        """``summary`` (or visibility's) with the current epoch's start and close time."""
        return ListedRun(
            summary=summary or self.summary,
            started_at=self.execution.start_time,
            closed_at=self.execution.close_time,
        )


def closed_status(status: WorkflowExecutionStatus | None) -> Status | None:
    """The run status a closed workflow's Temporal status says; None while it runs."""
    return _CLOSED.get(status) if status is not None else None


def visible_run(execution: WorkflowExecution, parent_run_id: str | None) -> VisibleRun | None:
    """The run an execution (listed or described) shows; None if it names no owner."""
    attributes = execution.typed_search_attributes
    owner = attributes.get(OWNER_THREAD_ID)
    if not owner:
        return None
    said = attributes.get(DELEGATION_STATUS)
    status = closed_status(execution.status) or next((s for s in _STATUSES if s == said), "running")
    summary = RunSummary(
        run_id=execution.id,
        agent_id=attributes.get(AGENT_ID) or "",
        status=status,
        owner_thread_id=owner,
        parent_run_id=parent_run_id,
        epoch=attributes.get(DELEGATION_EPOCH) or 1,
    )
    return VisibleRun(summary, execution)


def owner_query(owner_thread_id: str) -> str:
    """The visibility query of every execution of the owner's runs."""
    return f"WorkflowType = '{WORKFLOW_TYPE}' AND {OWNER_THREAD_ID.name} = {quote(owner_thread_id)}"


def quote(value: str) -> str:
    """A visibility-query string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _names(values: Iterable[str]) -> str:
    """The inside of a visibility query's ``IN (...)``: distinct literals, in order."""
    return ", ".join(quote(value) for value in dict.fromkeys(values))


async def list_owner_runs(
    client: Client,
    owner_thread_id: str,
    statuses: Collection[Status] | None = None,
    agents: Collection[str] | None = None,
) -> dict[str, VisibleRun]:
    """The owner's runs, by run_id, as each one's current execution shows it.

    With ``statuses`` or ``agents``, the store itself leaves out the rest (a large
    owner's few running runs cost a few rows, not all of them). Every running run
    is kept whatever its status says: it may be about to say another.
    """
    query = owner_query(owner_thread_id)
    if agents:
        query += f" AND {AGENT_ID.name} IN ({_names(agents)})"
    if not statuses:
        return _runs(await _executions(client, query))
    closes = [name for status in statuses for name in _CLOSED_AS[status]]
    found = await _executions(client, f"{query} AND ExecutionStatus IN ({_names(closes)})")
    # A stopped epoch may have been resumed since, into any status: all of that run's
    # executions say which is current.
    stopped = sorted({e.id for e in found if closed_status(e.status) == "stopped"})
    for start in range(0, len(stopped), IDS_PER_QUERY):
        ids = _names(stopped[start : start + IDS_PER_QUERY])
        found += await _executions(client, f"{query} AND WorkflowId IN ({ids})")
    return _runs(found)


async def list_tree(client: Client, owner_thread_id: str, root_id: str) -> dict[str, VisibleRun]:
    """Every run of the owner in the Temporal tree under ``root_id``, by run_id.

    A stopped child resumed while its parent was closed runs on as a root of its own
    (Temporal records no parent for that execution): its earlier epochs name the
    parent, and its own tree is listed too.
    """
    executions: list[WorkflowExecution] = []
    pending, asked = [root_id], {root_id}
    while pending:
        roots, pending = pending[:IDS_PER_QUERY], pending[IDS_PER_QUERY:]
        found = await _executions(client, _trees_query(owner_thread_id, roots))
        executions.extend(found)
        for run_id, run in _runs(found).items():
            # Only a stopped run can have been resumed.
            if run.summary.status == "stopped" and run.closed and run_id not in asked:
                asked.add(run_id)
                pending.append(run_id)
    return _runs(executions)


async def list_trees(
    client: Client, owner_thread_id: str, root_ids: Collection[str]
) -> dict[str, VisibleRun]:
    """Every run of the owner in the Temporal trees under ``root_ids``, by run_id: a
    query per ``IDS_PER_QUERY`` roots, and no look for the trees of runs resumed since
    (``list_tree`` asks after every closed stopped run: a stopped tree of 100 runs was
    a second query naming 99 of them)."""
    ids = sorted(root_ids)
    executions: list[WorkflowExecution] = []
    for start in range(0, len(ids), IDS_PER_QUERY):
        roots = ids[start : start + IDS_PER_QUERY]
        executions.extend(await _executions(client, _trees_query(owner_thread_id, roots)))
    return _runs(executions)


def _trees_query(owner_thread_id: str, root_ids: list[str]) -> str:
    return f"{owner_query(owner_thread_id)} AND RootWorkflowId IN ({_names(root_ids)})"


async def _executions(client: Client, query: str) -> list[WorkflowExecution]:
    # The iterator asks for each next page (of LIST_PAGE_SIZE) as it goes.
    return [e async for e in client.list_workflows(query, page_size=LIST_PAGE_SIZE)]


def _runs(executions: list[WorkflowExecution]) -> dict[str, VisibleRun]:
    """Each run's current execution (every epoch and continue-as-new is one), with
    the parent any of them names."""
    current: dict[str, WorkflowExecution] = {}
    parents: dict[str, str] = {}
    for execution in executions:
        if execution.parent_id:
            parents.setdefault(execution.id, execution.parent_id)
        known = current.get(execution.id)
        if known is None or _order(execution) > _order(known):
            current[execution.id] = execution
    runs = (visible_run(e, parents.get(run_id)) for run_id, e in current.items())
    return {run.summary.run_id: run for run in runs if run is not None}


def _order(execution: WorkflowExecution) -> tuple[bool, datetime, int]:
    """Later is newer; the one running execution of an id is its newest."""
    epoch = execution.typed_search_attributes.get(DELEGATION_EPOCH) or 0
    started = execution.start_time or datetime.min.replace(tzinfo=UTC)
    return (execution.status == WorkflowExecutionStatus.RUNNING, started, epoch)
