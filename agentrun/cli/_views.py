"""What the command line shows of runs: trees, lineage and timing, gathered from Temporal.

Summaries come from the owner-scoped client (a run of another owner is unknown); a
tree and its timing from Temporal's visibility store (``AgentRunClient.subtree``), a
single run's timing from describing its current workflow execution (its epoch).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio.service import RPCError, RPCStatusCode

from agentrun._client import AgentRunClient
from agentrun._constants import QUERY_CHILDREN
from agentrun._delegation import unknown_run
from agentrun._models import RunSummary

__all__ = [
    "Retrying",
    "RunDetails",
    "RunNode",
    "Timing",
    "children",
    "run_details",
    "run_tree",
    "timing",
]


class Timing(BaseModel):
    """When the run's current epoch started and closed (None while it runs)."""

    started_at: datetime | None = None
    closed_at: datetime | None = None

    def seconds(self, now: datetime | None = None) -> float | None:
        """How long the epoch ran, or has been running; None when unknown."""
        if self.started_at is None:
            return None
        end = self.closed_at or now or datetime.now(UTC)
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass
class RunNode:
    """A run, its timing, and the runs it delegated."""

    summary: RunSummary
    timing: Timing
    children: list[RunNode] = field(default_factory=list)

    def walk(self) -> list[RunNode]:
        """This node and its descendants, depth first."""
        return [self, *(node for child in self.children for node in child.walk())]


class Retrying(BaseModel):
    """A turn (or tool call) of the run that failed and waits for its next attempt."""

    activity: str
    attempt: int  # the attempt to come
    error: str  # the last attempt's failure: the provider's message for a model call
    next_attempt_at: datetime | None = None


class RunDetails(BaseModel):
    """Everything ``agentrun show`` says about one run."""

    summary: RunSummary
    timing: Timing
    lineage: list[str]
    children: list[RunSummary]
    retrying: list[Retrying] = []


async def timing(runs: AgentRunClient, run_id: str) -> Timing:
    """Start and close time of the run's current execution."""
    timed, _ = await _execution(runs, run_id)
    return timed


async def _execution(runs: AgentRunClient, run_id: str) -> tuple[Timing, list[Retrying]]:
    """The current execution's timing, and its activities waiting to be retried, as
    Temporal describes them (no worker needed)."""
    try:
        description = await runs.temporal.get_workflow_handle(run_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return Timing(), []
        raise
    pending = description.raw_description.pending_activities
    retrying = [
        Retrying(
            activity=activity.activity_type.name,
            attempt=activity.attempt,
            error=activity.last_failure.message,
            next_attempt_at=(
                activity.next_attempt_schedule_time.ToDatetime(UTC)
                if activity.HasField("next_attempt_schedule_time")
                else None
            ),
        )
        for activity in pending
        if activity.attempt > 1 and activity.HasField("last_failure")
    ]
    return Timing(started_at=description.start_time, closed_at=description.close_time), retrying


async def owned_summary(runs: AgentRunClient, owner: str, run_id: str) -> RunSummary:
    """The run's summary; ``Unknown run_id`` when it is unknown or another owner's.

    Raises:
        DelegationError: the run is unknown to ``owner``.
    """
    summary = await runs.summary(owner, run_id)
    if summary is None:
        raise unknown_run(run_id)
    return summary


async def run_tree(runs: AgentRunClient, owner: str, run_id: str) -> RunNode:
    """The run and its descendants of the same owner, children sorted by run_id.

    Raises:
        DelegationError: the run is unknown to ``owner``.
    """
    listed = await runs.subtree(owner, run_id)
    spent = await runs.with_spend(owner, [run.summary for run in listed], under=run_id)
    nodes = [
        RunNode(summary, Timing(started_at=run.started_at, closed_at=run.closed_at))
        for run, summary in zip(listed, spent, strict=True)
    ]
    by_id = {node.summary.run_id: node for node in nodes}
    top = nodes[0]
    # Depth first, siblings by run_id: each run comes after its parent.
    for node in nodes[1:]:
        by_id.get(node.summary.parent_run_id or "", top).children.append(node)
    return top


async def children(runs: AgentRunClient, run_id: str) -> list[RunSummary]:
    """The summaries of the runs ``run_id`` delegated (its ``children`` query)."""
    handle = runs.temporal.get_workflow_handle(run_id)
    children: list[RunSummary] = await handle.query(QUERY_CHILDREN, result_type=list[RunSummary])
    return children


async def run_details(runs: AgentRunClient, owner: str, run_id: str) -> RunDetails:
    """The run's summary, ancestors (root first), children and timing.

    Raises:
        DelegationError: the run is unknown to ``owner``.
    """
    summary = await owned_summary(runs, owner, run_id)
    delegated, (run_timing, retrying), lineage, spent = await asyncio.gather(
        children(runs, run_id),
        _execution(runs, run_id),
        _ancestors(runs, summary),
        runs.spend(owner, run_id),
    )
    return RunDetails(
        summary=summary.model_copy(update={"tree_usage": spent}),
        timing=run_timing,
        lineage=lineage,
        children=delegated,
        retrying=retrying,
    )


async def _ancestors(runs: AgentRunClient, summary: RunSummary) -> list[str]:
    """Run ids from the root down to the run's parent."""
    ancestors: list[str] = []
    parent = summary.parent_run_id
    while parent is not None and parent not in ancestors:
        ancestors.insert(0, parent)
        above = await runs.summary(summary.owner_thread_id, parent)
        parent = above.parent_run_id if above is not None else None
    return ancestors
