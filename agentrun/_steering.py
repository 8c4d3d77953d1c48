"""Steering running runs: decisions on calls that await approval, and user messages.

Both are workflow updates (``decide_tool_call``, ``send_message``) whose validators
check the owner, so any Temporal client can send them and a refused one leaves nothing
in the run's history. Runs awaiting a decision are found through visibility
(``AwaitingApproval = true``), then asked which calls wait (``pending_approvals``).
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import (
    AWAITING_APPROVAL,
    QUERY_PENDING_APPROVALS,
    UPDATE_DECIDE_TOOL_CALL,
    UPDATE_SEND_MESSAGE,
)
from agentrun._delegation import DelegationError, unknown_run
from agentrun._listing import owner_query
from agentrun._models import PendingApproval, RunSummary, ToolDecision, UserMessage
from agentrun._reading import RunReader

__all__ = ["Steering", "closed_run_error", "refused"]


class Steering:
    """Decisions and messages for one Temporal client's runs."""

    def __init__(self, client: Client, reader: RunReader) -> None:
        """Send through ``client``; ``reader`` checks owners and reads runs."""
        self._client = client
        self._reader = reader

    async def decide(
        self, owner: str, run_id: str, call_id: str | None, approved: bool, reason: str | None
    ) -> str:
        """Approve or deny a waiting call (the only one, when ``call_id`` is None);
        the call's id.

        Raises:
            DelegationError: an unknown or foreign run, an unknown or decided call, no
                call or several waiting when none is named, or a closed run.
        """
        if call_id is None:
            call_id = await self._only_call(owner, run_id)
        decision = ToolDecision(
            owner_thread_id=owner, call_id=call_id, approved=approved, reason=reason or None
        )
        await self._update(owner, run_id, UPDATE_DECIDE_TOOL_CALL, decision)
        return call_id

    async def send(self, owner: str, run_id: str, content: str) -> None:
        """A user message for a running run, seen at the start of its next turn.

        Raises:
            DelegationError: unknown or foreign run, or a closed one (the message says
                what to do instead).
        """
        await self._update(
            owner, run_id, UPDATE_SEND_MESSAGE, UserMessage(owner_thread_id=owner, content=content)
        )

    async def pending(self, owner: str, run_id: str | None = None) -> list[PendingApproval]:
        """Every call awaiting a decision in the owner's runs (or in ``run_id``)."""
        if run_id is not None:
            if await self._reader.visible(owner, run_id) is None:
                raise unknown_run(run_id)
            return await self._pending_of(run_id)
        query = f"{owner_query(owner)} AND {AWAITING_APPROVAL.name} = true"
        query += " AND ExecutionStatus = 'Running'"
        run_ids = [execution.id async for execution in self._client.list_workflows(query)]
        found = await asyncio.gather(*(self._pending_of(r) for r in run_ids))
        return sorted((p for calls in found for p in calls), key=lambda p: p.requested_at)

    async def _pending_of(self, run_id: str) -> list[PendingApproval]:
        calls = await self._reader.query(run_id, QUERY_PENDING_APPROVALS, list[PendingApproval])
        return calls or []

    async def _only_call(self, owner: str, run_id: str) -> str:
        waiting = await self.pending(owner, run_id)
        if len(waiting) == 1:
            return waiting[0].call_id
        if not waiting:
            raise DelegationError(f"Run {run_id} has no call awaiting a decision")
        ids = ", ".join(p.call_id for p in waiting)
        raise DelegationError(
            f"Run {run_id} has {len(waiting)} calls awaiting a decision: {ids}; name one"
        )

    async def _update(self, owner: str, run_id: str, name: str, argument: BaseModel) -> None:
        seen = await self._reader.visible(owner, run_id)
        if seen is None:
            raise unknown_run(run_id)
        if seen.closed is not None:
            raise closed_run_error(seen.summary)
        try:
            await self._client.get_workflow_handle(run_id).execute_update(name, argument)
        except WorkflowUpdateFailedError as err:
            raise refused(err) from None
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            summary = await self._reader.current(seen)  # it closed meanwhile
            raise closed_run_error(summary) from None


def refused(err: WorkflowUpdateFailedError) -> DelegationError:
    """An update the run refused (its validator's or handler's error), as the client's
    error: the run's own message and code."""
    cause = err.cause
    message = cause.message if isinstance(cause, ApplicationError) else str(cause)
    code = cause.type if isinstance(cause, ApplicationError) and cause.type else ""
    return DelegationError(message, code=code or "invalid_state")


def closed_run_error(summary: RunSummary) -> DelegationError:
    """What to do instead of steering a run that has closed."""
    run_id = summary.run_id
    if summary.status == "stopped":
        hint = f"resume it with a message: agentrun resume {run_id} TEXT"
    else:
        hint = f"start a new run from its thread: agentrun run --from {run_id} TEXT"
    return DelegationError(f"Run {run_id} is {summary.status}: {hint}", code="not_running")
