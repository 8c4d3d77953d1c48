"""The ``AgentRun`` workflow: one execution per run epoch (docs/contract.md).

The agent runs in turns, each an activity; the delegation tools it calls are executed
here, as child workflows. A stop is a Temporal cancel: it cascades to the subtree,
and once requested the run ends ``stopped`` whatever its agent reports afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.contrib.workflow_streams import WorkflowStream, WorkflowStreamState
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.workflow import ActivityCancellationType

from agentrun._constants import (
    AGENT_ID,
    AWAITING_APPROVAL,
    DELEGATION_EPOCH,
    DELEGATION_STATUS,
    EVENTS_TOPIC,
    OWNER_THREAD_ID,
    QUERY_CHILDREN,
    QUERY_PENDING_APPROVALS,
    QUERY_RUN_STATE,
    QUERY_SUMMARY,
    QUERY_THREAD,
    SIGNAL_ASSISTANT_OUTPUT,
    SIGNAL_CHILD_SETTLED,
    STOP_TREE_REASON,
    TEXT_MEMO,
    TEXT_MEMO_CHARS,
    TURN_ACTIVITY,
    UPDATE_DECIDE_TOOL_CALL,
    UPDATE_RESERVE_RUNS,
    UPDATE_SEND_MESSAGE,
    WORKFLOW_TYPE,
)
from agentrun._delegation import DelegationError, last_assistant_text, unknown_run
from agentrun._models import (
    AgentEvent,
    AgentRunInput,
    EventKind,
    Message,
    PendingApproval,
    ReserveRuns,
    ResumeChildRequest,
    RunGrant,
    RunState,
    RunSummary,
    Status,
    ToolCall,
    ToolCallInput,
    ToolDecision,
    ToolRoute,
    TurnInput,
    TurnResult,
    UserMessage,
    parse_run_input,
)
from agentrun._payload_guard import PayloadTooLargeError
from agentrun._versions import taken
from agentrun._webui import current_details, resume_hint
from agentrun.workflows._approvals import Approvals, awaiting_details
from agentrun.workflows._budgets import TreeBudget
from agentrun.workflows._children import CHILD_REPORT_PATCH, Children, Parent
from agentrun.workflows._stream_guard import count_stream_polls, guard_stream_publish
from agentrun.workflows._tools import call_tool

STREAM_OFFSET_QUERY = "__temporal_workflow_stream_offset"
# A turn gets its thread in its input while that is small; beyond this the turn reads
# it with the ``thread`` query, so history does not grow with the square of the thread.
INLINE_THREAD_BYTES = 16 * 1024
# The newest events a continue-as-new carries: the rest of the input is the thread.
CARRIED_STREAM_BYTES = 256 * 1024
TURN_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))


class _AgentFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# An input the converter cannot decode (not JSON, invalid UTF-8) raises a ValueError
# before ``__init__`` runs; failing the run on it beats retrying the task forever.
@workflow.defn(name=WORKFLOW_TYPE, failure_exception_types=[ValueError])
class AgentRunWorkflow:
    """One epoch of one run."""

    @workflow.init
    def __init__(self, raw: Any = None) -> None:
        """Validate the input (bad input fails the run in ``run``) and open the stream."""
        self._input_error: str | None = None
        try:
            self._input = parse_run_input(raw)
        except ValueError as err:
            self._input_error = str(err)
            self._input = AgentRunInput(owner_thread_id="-", agent_id="-", prompt="-")
        info = workflow.info()
        self._run_id = info.workflow_id
        self._parent_run_id = info.parent.workflow_id if info.parent else self._input.parent_run_id
        self._stream = WorkflowStream(prior_state=self._input.stream_state)
        guard_stream_publish(self._run_id, self._said_on_stream)
        count_stream_polls()
        self._events = self._stream.topic(EVENTS_TOPIC, type=AgentEvent)
        self._thread: list[Message] = self._input.initial_thread()
        self._agent_state = dict(self._input.agent_state)
        self._status: Status = "running"
        self._error: str | None = None
        self._turn = self._input.turn
        self._turns_here = 0
        self._usage = self._input.usage  # all this run's epochs and executions so far
        self._tail_from: int | None = None  # the thread's length when the last turn began
        self._tree = TreeBudget(self._run_id, self._input, self._parent_run_id is not None)
        self._children = Children(
            Parent(
                self._run_id,
                self._input.owner_thread_id,
                self._input.depth,
                info.task_queue,
                self._input.version,
            ),
            self._input.children,
            self._publish_child,
            self._tree.access(),
        )
        self._approvals = Approvals(
            self._run_id, self._input.agent_id, self._input.owner_thread_id, self._awaiting
        )
        self._awaiting_approval = False
        self._inbox: list[Message] = []  # user messages sent while it runs

    @workflow.run
    async def run(self, raw: Any = None) -> RunSummary:
        """Run the agent to its end; the result is the run summary."""
        if self._input_error is not None:
            raise ApplicationError(self._input_error, type="InvalidInput", non_retryable=True)
        if self._input.search_attributes_set:
            self._status = "running"
        else:  # started without them (by an older client, or through Temporal itself)
            self._set_status("running")
        if not self._input.continued:
            self._publish("run_started")
        try:
            await self._converse_while_told()
        except asyncio.CancelledError:
            await self._close_stopped()
            raise
        except _AgentFailed as failed:
            await self._close_failed(failed.message)
        except PayloadTooLargeError as too_large:  # a turn, child or continue-as-new input
            await self._close_failed(too_large.message)
        if self._stop_requested():
            await self._close_stopped()
            raise asyncio.CancelledError
        self._set_status("completed")
        self._publish("finish", summary=self.summary())
        return self.summary()

    async def _converse_while_told(self) -> None:
        """Turns until the agent is done, and again for each message sent meanwhile."""
        while True:
            await self._converse()
            # Background children finish before their parent does: nothing is orphaned.
            await workflow.wait_condition(lambda: not self._children.running() or bool(self._inbox))
            if not self._inbox:
                return

    async def _converse(self) -> None:
        while True:
            self._take_inbox()
            if self._should_continue_as_new():
                await self._continue_as_new()
            result = await self._run_turn()
            self._publish_turn_events(result.events)
            self._thread.extend(result.messages)
            self._agent_state = result.agent_state
            self._usage += result.usage.model_copy(update={"tool_calls": len(result.tool_calls)})
            self._tree.record(self._usage)
            self._children.policy = result.policy
            self._tree.adopt(result.policy)
            if result.budget_exceeded is not None:
                self._tree.spent(result.budget_exceeded)
            if self._stop_requested() or result.stopped:
                raise asyncio.CancelledError
            await self._stop_if_over_budget()
            if result.error is not None:
                raise _AgentFailed(result.error)
            if not result.tool_calls:
                return
            await self._execute_tools(result.tool_calls, result.routes)
            await self._stop_if_over_budget()

    async def _stop_if_over_budget(self) -> None:
        """A budget found spent stops its subtree and this run (``TreeBudget.spent``):
        wait for the cancel, then the run stops as for any stop, saying why."""
        if self._tree.stop is not None:
            await workflow.wait_condition(self._stop_requested)
            raise asyncio.CancelledError

    def _should_continue_as_new(self) -> bool:
        # Children belong to this execution (its close policy would cancel them), so a
        # run continues as new only between children.
        due = (
            workflow.info().is_continue_as_new_suggested()
            or self._turns_here >= self._input.continue_as_new_after
        )
        return due and not self._children.running()

    async def _continue_as_new(self) -> None:
        """Carry thread, children, epoch, turn count and the event stream to a new run."""
        carried = self._input.model_copy(
            update={
                "prompt": None,
                "messages": self._thread,
                "parent_run_id": self._parent_run_id,
                "agent_state": self._agent_state,
                "children": self._children.summaries(),
                "turn": self._turn,
                "continued": True,
                "usage": self._usage,
                "budget": self._tree.budget,
                "tree_runs": self._tree.ledger.counts if self._tree.ledger else {},
                "search_attributes_set": False,  # the next run sets its own
            }
        )
        self._stream.truncate(_carried_stream_start(self._stream.get_state()))
        await self._stream.continue_as_new(
            lambda state: [carried.model_copy(update={"stream_state": state})]
        )

    async def _run_turn(self) -> TurnResult:
        self._turn += 1
        self._turns_here += 1
        inline = _fits(self._thread, INLINE_THREAD_BYTES)
        tail_from = self._tail_from if self._tail_from is not None else len(self._thread)
        tail = self._thread[tail_from:]
        if not _fits(tail, INLINE_THREAD_BYTES):
            tail_from, tail = len(self._thread), []
        self._tail_from = len(self._thread)
        turn = TurnInput(
            run_id=self._run_id,
            owner_thread_id=self._input.owner_thread_id,
            agent_id=self._input.agent_id,
            epoch=self._input.epoch,
            turn=self._turn,
            depth=self._input.depth,
            messages=self._thread if inline else tail,
            thread_by_query=not inline,
            tail_from=0 if inline else tail_from,
            agent_state=self._agent_state,
            children=self._children.summaries(),
            stream_offset=self._stream_offset(),
            budgets=self._tree.scopes(),
            followed=self._input.followed and self._turn == 1,
        )
        try:
            # Decoded here, not by the SDK: a result this code cannot read (nested past
            # the JSON parser's limit, say) then fails the run saying so.
            raw = await workflow.execute_activity(
                TURN_ACTIVITY,
                turn,
                result_type=RawValue,
                start_to_close_timeout=timedelta(seconds=self._input.turn_timeout),
                heartbeat_timeout=timedelta(seconds=self._input.heartbeat_timeout),
                retry_policy=TURN_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"{self._input.agent_id} turn {self._turn}",
            )
        except ActivityError as err:
            if self._stop_requested():
                raise asyncio.CancelledError from err
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            raise _AgentFailed(message) from err
        try:
            result: TurnResult = workflow.payload_converter().from_payload(raw.payload, TurnResult)
            return result
        except ValueError as err:
            raise _AgentFailed(_unreadable(err)) from None

    async def _execute_tools(self, calls: list[ToolCall], routes: list[ToolRoute]) -> None:
        """Every call of the turn at once; their results join the thread in call order."""
        thread = list(self._thread)
        by_call = {route.call_id: route for route in routes}
        contents = await asyncio.gather(
            *(self._execute(call, by_call.get(call.id), thread) for call in calls)
        )
        for call, content in zip(calls, contents, strict=True):
            message = Message(role="tool", tool_call_id=call.id, name=call.name, content=content)
            self._thread.append(message)
            self._publish("tool_result", message=message)

    async def _execute(self, call: ToolCall, route: ToolRoute | None, thread: list[Message]) -> str:
        if route is not None and route.approval:
            refused = await self._decision(call, route)
            if refused is not None:
                return refused
        # No route: a delegation tool of a turn recorded before tools had routes.
        if route is None or route.kind == "delegation":
            return json.dumps(await self._children.execute(call, thread))
        if route.kind == "result":
            return route.content or ""
        tool_input = ToolCallInput(
            run_id=self._run_id,
            owner_thread_id=self._input.owner_thread_id,
            agent_id=self._input.agent_id,
            epoch=self._input.epoch,
            call_id=call.id,
            tool=route.tool,
            args=call.args,
        )
        return await call_tool(route, tool_input)

    def _take_inbox(self) -> None:
        """The messages sent to the run join its thread, for its next turn to see."""
        self._thread.extend(self._inbox)
        self._inbox.clear()

    async def _decision(self, call: ToolCall, route: ToolRoute) -> str | None:
        """Wait for the owner's decision on ``call``; None when approved, else the
        result the agent gets instead."""
        how = f"agentrun approve {self._run_id} {call.id} --owner {self._input.owner_thread_id}"
        self._publish("approval_requested", tool_call=call, text=f"{call.name} awaits: {how}")
        refused = await self._approvals.decision(call, route)
        self._publish("approval_decided", tool_call=call, text=refused or "approved")
        return refused

    def _awaiting(self) -> None:
        """Keep ``AwaitingApproval`` and the Web UI's details current as calls wait."""
        pending = list(self._approvals.pending.values())
        if bool(pending) != self._awaiting_approval:
            self._awaiting_approval = bool(pending)
            workflow.upsert_search_attributes([AWAITING_APPROVAL.value_set(bool(pending))])
        self._show(f"{len(pending)} call(s) awaiting approval")

    async def _close_stopped(self) -> None:
        self._take_inbox()  # a resumed run sees them
        self._set_status("stopped")
        by_stop_tree = workflow.cancellation_reason() == STOP_TREE_REASON
        await self._children.stop_all(cancelled_by_stopper=by_stop_tree)
        self._error = await self._tree.closing_error() or self._error
        self._publish("finish", summary=self.summary())
        await self._tree.stopped()
        await self._tell_parent()
        self._keep_text()

    def _keep_text(self) -> None:
        """A stopped run's latest text, in its memo as it closes (one history event):
        whoever stopped it reads every final summary from one listing, no query."""
        text = last_assistant_text(self._thread)
        if self._input.text_memo and text:
            workflow.upsert_memo({TEXT_MEMO: text[:TEXT_MEMO_CHARS]})

    async def _tell_parent(self) -> None:
        """How runs stopped before a parent read a child's summary from the child itself:
        by a signal, which any client of the namespace could forge (docs/reliability.md).
        Patched, so those runs replay as they ran; a run now sends nothing. A live run
        asks no patch (no marker, no upsert at each stop): only a replayed history can
        be one from before, and its markers say which."""
        parent = workflow.info().parent
        if parent is None or not workflow.unsafe.is_replaying():
            return
        if taken(self._input.version, CHILD_REPORT_PATCH):
            return
        if not workflow.patched("child-settled-signal"):
            return
        # If the parent has closed there is nothing left to tell. Awaited: a signal a
        # run sends in the workflow task that closes it is never delivered.
        with contextlib.suppress(FailureError):
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                SIGNAL_CHILD_SETTLED, self.summary()
            )

    async def _close_failed(self, message: str) -> None:
        self._error = message
        self._set_status("failed")
        await self._children.stop_all()
        self._publish("error", text=message)
        self._publish("finish", summary=self.summary())
        raise ApplicationError(
            message, self.summary().model_dump(mode="json"), type="AgentFailed", non_retryable=True
        )

    def _stream_offset(self) -> int:
        # The stream's documented offset query, read in-process: no round trip.
        offset = workflow.get_query_handler(STREAM_OFFSET_QUERY)
        return int(offset()) if offset else 0

    def _stop_requested(self) -> bool:
        return workflow.cancellation_reason() is not None

    def _set_status(self, status: Status) -> None:
        self._status = status
        updates: list[SearchAttributeUpdate[Any]] = [
            OWNER_THREAD_ID.value_set(self._input.owner_thread_id),
            AGENT_ID.value_set(self._input.agent_id),
            DELEGATION_STATUS.value_set(status),
            DELEGATION_EPOCH.value_set(self._input.epoch),
        ]
        workflow.upsert_search_attributes(updates)

    def _publish(self, kind: EventKind, **fields: Any) -> None:
        event = AgentEvent.model_validate(
            {"run_id": self._run_id, "epoch": self._input.epoch, "kind": kind, **fields}
        )
        self._events.publish(event)
        self._show(_describe(event))

    def _publish_turn_events(self, events: list[AgentEvent]) -> None:
        """The turn's last events, which it handed back instead of sending."""
        for event in events:
            self._events.publish(event)
        if events:
            self._show(_describe(events[-1]))

    def _show(self, last_event: str) -> None:
        details = current_details(last_event, self._children.summaries())
        pending = list(self._approvals.pending.values())
        if pending:
            details = awaiting_details(pending, self._input.owner_thread_id) + "\n\n" + details
        if self._status == "stopped":
            details = resume_hint(self._run_id, self._input.owner_thread_id) + "\n\n" + details
        workflow.set_current_details(details)

    def _publish_child(self, kind: EventKind, summary: RunSummary) -> None:
        self._publish(kind, summary=summary)

    def _said_on_stream(self, turn: int, text: str) -> None:
        """A running turn's latest text or retry notice, as its stream shows it: for
        the Web UI only.
        The run's own record (summary, thread) takes text only from turn results."""
        if turn == self._turn:
            self._show(f"turn {turn} {text[:300]}")

    @workflow.signal(name=SIGNAL_CHILD_SETTLED)
    def child_settled(self, report: RawValue) -> None:
        """A child's stopped summary, as children once reported it. Any client could
        send one, so a run now settles its children from their own executions and
        drops the report; runs from before replay taking it."""
        if taken(self._input.version, CHILD_REPORT_PATCH):
            workflow.logger.warning("Dropped a child_settled signal to run %s", self._run_id)
            return
        try:
            summary = workflow.payload_converter().from_payload(report.payload, RunSummary)
        except ValueError as err:
            workflow.logger.warning("Dropped an unreadable child_settled signal: %s", err)
            return
        self._children.settle(summary)

    @workflow.signal(name=SIGNAL_ASSISTANT_OUTPUT)
    def assistant_output(self, report: RawValue) -> None:
        """Ignored: turns once sent their latest text this way, and any client could.
        A running turn's text is read from its heartbeat (``agentrun._live_text``)."""

    @workflow.update(name="resume_child")
    async def resume_child(self, request: ResumeChildRequest) -> RunSummary:
        """Resume a stopped child of this run, keeping it in this run's tree."""
        try:
            return await self._children.resume(request.run_id, request.prompt, request.budget)
        except DelegationError as err:
            raise ApplicationError(str(err), type=err.code, non_retryable=True) from None

    @workflow.update(name=UPDATE_DECIDE_TOOL_CALL)
    def decide_tool_call(self, decision: ToolDecision) -> None:
        """The owner approves or denies a call that awaits a decision."""
        self._approvals.decide(decision)

    @decide_tool_call.validator
    def _check_decision(self, decision: ToolDecision) -> None:
        self._approvals.validate(decision)

    @workflow.update(name=UPDATE_SEND_MESSAGE)
    def send_message(self, message: UserMessage) -> None:
        """A user message for the run: its next turn sees it (one is taken for it if
        the agent had finished and the run only waits for background children)."""
        sent = Message.user(message.content)
        self._inbox.append(sent)
        self._publish("user_message", message=sent)

    @send_message.validator
    def _check_message(self, message: UserMessage) -> None:
        if message.owner_thread_id != self._input.owner_thread_id:
            raise ApplicationError(str(unknown_run(self._run_id)), type="unknown_run")
        if self._status != "running" or self._stop_requested():
            raise ApplicationError(f"Run {self._run_id} is stopping", type="not_running")

    @workflow.update(name=UPDATE_RESERVE_RUNS)
    def reserve_runs(self, request: ReserveRuns) -> RunGrant:
        """Runs for a run of this tree to start, as many as the tree may still have."""
        ledger = self._tree.ledger
        if ledger is None:  # the validator refused it
            raise ApplicationError(str(unknown_run(self._run_id)), type="unknown_run")
        return ledger.grant(request, self._tree.policy.max_runs_per_tree)

    @reserve_runs.validator
    def _check_reserve(self, request: ReserveRuns) -> None:
        if self._tree.ledger is None:
            raise ApplicationError(str(unknown_run(self._run_id)), type="unknown_run")
        self._tree.ledger.validate(request, self._tree.policy.max_runs_per_tree)

    @workflow.query(name=QUERY_PENDING_APPROVALS)
    def pending_approvals(self) -> list[PendingApproval]:
        """The calls that await the owner's decision, oldest first."""
        return list(self._approvals.pending.values())

    @workflow.query(name=QUERY_SUMMARY)
    def summary(self) -> RunSummary:
        """The run summary, on an open or closed run."""
        return RunSummary(
            run_id=self._run_id,
            agent_id=self._input.agent_id,
            status=self._status,
            assistant=last_assistant_text(self._thread),
            error=self._error,
            owner_thread_id=self._input.owner_thread_id,
            parent_run_id=self._parent_run_id,
            epoch=self._input.epoch,
            usage=self._usage,
            budget=self._tree.budget,
        )

    @workflow.query(name=QUERY_THREAD)
    def thread(self) -> list[Message]:
        """The run's messages."""
        return self._thread

    @workflow.query(name=QUERY_CHILDREN)
    def children(self) -> list[RunSummary]:
        """Summaries of the runs it delegated."""
        return self._children.summaries()

    @workflow.query(name=QUERY_RUN_STATE)
    def run_state(self) -> RunState:
        """What resuming this run as its next epoch needs."""
        return RunState(
            summary=self.summary(),
            thread=self._thread,
            agent_state=self._agent_state,
            children=self._children.summaries(),
            depth=self._input.depth,
            stream_state=self._stream.get_state(),
            budget=self._tree.budget,
            budgets=self._input.budgets,
            root_run_id=self._tree.root_run_id,
            tree_runs=self._tree.ledger.counts if self._tree.ledger else {},
        )


def _carried_stream_start(state: WorkflowStreamState) -> int:
    """The first offset a continued run keeps: the newest events up to a size budget.

    Live followers have seen every event; a reader asking for an offset before this
    one is served from here (Workflow Streams truncation semantics).
    """
    kept = 0
    start = state.base_offset + len(state.log)
    for item in reversed(state.log):
        kept += len(item.data) + len(item.topic)
        if kept > CARRIED_STREAM_BYTES:
            break
        start -= 1
    return start


def _fits(messages: list[Message], limit: int) -> bool:
    """Whether the messages' JSON is about ``limit`` bytes or less (stops counting past it)."""
    size = 0
    for m in messages:
        size += len(m.content) + 64 + sum(len(str(c.args)) for c in m.tool_calls)
        if size > limit:
            return False
    return True


def _unreadable(err: ValueError) -> str:
    """The failure message for a turn result the run cannot read, in a few lines."""
    first = str(err).strip().splitlines()[:3]
    return "The run could not read its turn's result: " + " ".join(first)[:500]


def _describe(event: AgentEvent) -> str:
    """An event in a few words, for the Web UI's current details."""
    if event.summary is not None:
        return f"{event.kind} `{event.summary.run_id}` {event.summary.status}"
    if event.message is not None and event.message.content:
        return f"{event.kind}: {event.message.content[:80]}"
    return event.kind if event.text is None else f"{event.kind}: {event.text[:80]}"


__all__ = ["AgentRunWorkflow"]
