"""Tool calls that wait for their owner's decision (docs/approvals.md).

Deterministic workflow code. A call that needs approval waits on a condition, which
costs nothing while it waits: no timer (unless the tool has an ``approval_timeout``),
no activity, no workflow task. The ``decide_tool_call`` update ends the wait; its
validator refuses another owner, an unknown call and a second decision, so a refused
decision leaves nothing in the run's history.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from agentrun._delegation import unknown_run
from agentrun._models import PendingApproval, ToolCall, ToolDecision, ToolRoute

DENIED = "User denied the action"
TIMED_OUT = "Approval timed out"


class Approvals:
    """The calls of one run that wait for a decision, and the decisions taken."""

    def __init__(
        self, run_id: str, agent_id: str, owner_thread_id: str, changed: Callable[[], None]
    ) -> None:
        """``changed`` is called whenever a call starts or stops waiting."""
        self._run_id = run_id
        self._agent_id = agent_id
        self._owner = owner_thread_id
        self._changed = changed
        self.pending: dict[str, PendingApproval] = {}
        self._decided: dict[str, ToolDecision] = {}

    async def decision(self, call: ToolCall, route: ToolRoute) -> str | None:
        """Wait for the owner's decision on ``call``: None once approved, else the
        tool result the agent gets instead (denied, or timed out)."""
        now = workflow.now()
        timeout = timedelta(seconds=route.approval_timeout) if route.approval_timeout else None
        self.pending[call.id] = PendingApproval(
            run_id=self._run_id,
            agent_id=self._agent_id,
            call_id=call.id,
            tool=call.name,
            args=call.args,
            requested_at=now,
            timeout_at=now + timeout if timeout else None,
        )
        self._changed()
        try:
            await workflow.wait_condition(lambda: call.id in self._decided, timeout=timeout)
        except TimeoutError:
            return TIMED_OUT
        finally:
            self.pending.pop(call.id, None)
            self._changed()
        decided = self._decided[call.id]
        if decided.approved:
            return None
        return f"{DENIED}: {decided.reason}" if decided.reason else DENIED

    def validate(self, decision: ToolDecision) -> None:
        """Refuse a decision this run cannot take (before anything is written).

        Raises:
            ApplicationError: another owner (``Unknown run_id: …``, as for a run that
                does not exist), an unknown call, or one already decided.
        """
        if decision.owner_thread_id != self._owner:
            raise ApplicationError(str(unknown_run(self._run_id)), type="unknown_run")
        if decision.call_id in self._decided:
            raise ApplicationError(
                f"Call {decision.call_id} of run {self._run_id} is already decided",
                type="already_decided",
            )
        if decision.call_id not in self.pending:
            waiting = ", ".join(sorted(self.pending)) or "none"
            raise ApplicationError(
                f"Unknown call_id: {decision.call_id} (run {self._run_id} awaits: {waiting})",
                type="unknown_call",
            )

    def decide(self, decision: ToolDecision) -> None:
        """Take a validated decision; the waiting call goes on."""
        self._decided[decision.call_id] = decision


def awaiting_details(pending: list[PendingApproval], owner: str) -> str:
    """The Web UI's current details while calls await a decision."""
    lines = [f"**awaiting approval** by owner `{owner}`"]
    for call in pending:
        lines.append(
            f"- `{call.tool}` call `{call.call_id}`: "
            f"`agentrun approve {call.run_id} {call.call_id} --owner {owner}` or "
            f"`agentrun deny {call.run_id} {call.call_id} --owner {owner} --reason TEXT`"
        )
    return "\n".join(lines)
