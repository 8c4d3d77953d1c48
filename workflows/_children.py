"""The runs a run delegated: child workflows, their table, and the three tools.

Deterministic workflow code. A child is an ``AgentRun`` child workflow whose ID is its
run_id; a watcher task per child keeps the table current, and a result from an older
epoch of a child never overwrites a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from pydantic import JsonValue
from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

from agentrun._constants import (
    CASCADE_FALLBACK,
    MAX_CHILDREN_PER_RUN,
    READ_RUN_ACTIVITY,
    READ_SUMMARY_ACTIVITY,
    RUN_VERSION,
    WORKFLOW_TYPE,
)
from agentrun._delegation import (
    DelegationError,
    RunArgs,
    ToolResult,
    error_result,
    fork_messages,
    not_resumable,
    not_running,
    parse_run_args,
    required_run_id,
    unknown_run,
)
from agentrun._ledger import TreeAccess
from agentrun._models import (
    AgentPolicy,
    AgentRunInput,
    EventKind,
    Message,
    ReadRunInput,
    RunState,
    RunSummary,
    ToolCall,
)
from agentrun._run_ids import child_run_id
from agentrun._usage import Budget
from agentrun._versions import PATCHES_TAKEN, taken
from agentrun._visibility import start_search_attributes
from agentrun._webui import static_details, static_summary

# How long a stop waits for its stopped children to be seen closed and read.
STOP_SETTLE_TIMEOUT = timedelta(seconds=30)
# How long a resume waits for a child stopped from outside to be seen closed.
SETTLE_TIMEOUT = timedelta(seconds=10)
# Runs that read a stopped child's summary from the child's own execution, not from a
# signal it sent: patched, so runs from before replay as they ran.
CHILD_REPORT_PATCH = "child-report-from-execution"
# Runs that name children ``<parent>.<n>-<agent>``, numbered before their start.
CHILD_IDS_PATCH = "child-ids-with-agent"
_Read = TypeVar("_Read", RunState, RunSummary)
# Ids a new child tries: its number, then that with a random suffix (docs/reliability.md).
CHILD_ID_ATTEMPTS = 3


@dataclass(frozen=True)
class Parent:
    """The run that owns the children."""

    run_id: str
    owner_thread_id: str
    depth: int
    task_queue: str
    version: int  # ``AgentRunInput.version`` (agentrun/_versions.py)


class Children:
    """The children table of one run, and the delegation tools that act on it."""

    def __init__(
        self,
        parent: Parent,
        carried: list[RunSummary],
        publish: Callable[[EventKind, RunSummary], None],
        tree: TreeAccess,
    ) -> None:
        """Start from the children a previous epoch left (all settled by then)."""
        self._parent = parent
        self._publish = publish
        self._tree = tree
        self._permits = tree.permits()
        self.table: dict[str, RunSummary] = {child.run_id: child for child in carried}
        self.policy = AgentPolicy(visible_agents=[], max_depth=0)
        self._watchers: set[asyncio.Task[None]] = set()
        self._numbered = len(self.table)  # the highest child number given out

    def summaries(self) -> list[RunSummary]:
        """Every child's summary, sorted by run_id."""
        return [self.table[run_id] for run_id in sorted(self.table)]

    def running(self) -> list[str]:
        """Run ids of the children still running."""
        return [run_id for run_id, child in self.table.items() if child.status == "running"]

    async def execute(self, call: ToolCall, thread: list[Message]) -> ToolResult:
        """Execute one delegation tool call; errors are results, never exceptions."""
        try:
            if call.name == "agent_run":
                return await self._agent_run(parse_run_args(call.args), thread)
            if call.name == "agent_stop":
                return await self._agent_stop(required_run_id(call.args))
            if call.name == "agent_output":
                return await self._agent_output(required_run_id(call.args))
        except DelegationError as err:
            return error_result(err.code, str(err))
        return error_result("unknown_tool", f"Unknown tool: {call.name}")

    async def stop_all(self, *, cancelled_by_stopper: bool = False) -> None:
        """Stop every running child and wait (bounded) until each has closed.

        ``cancelled_by_stopper``: whoever stopped this run cancels its children too
        (``STOP_TREE_REASON``). The run then waits for them to close and cancels only
        those still running ``CASCADE_FALLBACK`` later. Its own requests would arrive
        after the stopper's. Under load their acknowledgements came in seconds after
        the children had closed; the run waited for every one, and one that arrived
        while the run closed had its close refused and retried (BENCHMARKS.md, stop).
        """
        if cancelled_by_stopper and self.running():
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: not self.running(), timeout=CASCADE_FALLBACK)
        running = self.running()
        if _cancels_at_once(self._parent.version, len(running)):
            await asyncio.gather(*(self._cancel(run_id) for run_id in running))
        else:  # how runs stopped before this change replay
            for run_id in running:
                await self._cancel(run_id)
        try:
            await workflow.wait_condition(lambda: not self.running(), timeout=STOP_SETTLE_TIMEOUT)
        except TimeoutError:
            workflow.logger.warning("Children still closing after stop: %s", self.running())

    async def _agent_run(self, args: RunArgs, thread: list[Message]) -> ToolResult:
        if args.run_id is not None:
            return await self._existing(args)
        if args.agent_id is None:
            raise DelegationError("missing 'agent_id'", code="invalid_arguments")
        if args.prompt is None:
            raise DelegationError("missing 'prompt'", code="invalid_arguments")
        self._check_allowed(args.agent_id)
        await self._take_run(args.agent_id)
        messages = fork_messages(thread) if args.fork_context else []
        child = AgentRunInput(
            owner_thread_id=self._parent.owner_thread_id,
            agent_id=args.agent_id,
            messages=[*messages, Message.user(args.prompt)],
            parent_run_id=self._parent.run_id,
            depth=self._parent.depth + 1,
            root_run_id=self._tree.root_run_id,
            budgets=self._tree.scopes(),
        )
        run_id = await self._start_new(child)
        return await self._settled_if_foreground(run_id, args.background)

    async def _start_new(self, child: AgentRunInput) -> str:
        """Start a new child as ``<parent>.<n>-<agent>``, or that with ``-<random>`` when
        the id is taken: workflow ids are namespace-wide, and another owner may have
        started a run with the id this child would have had. Its agent never learns of it."""
        number = self._child_id(child.agent_id)
        for attempt in range(CHILD_ID_ATTEMPTS):
            run_id = number if attempt == 0 else f"{number}-{workflow.uuid4().hex[:8]}"
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await self._start(run_id, child, WorkflowIDReusePolicy.REJECT_DUPLICATE)
                return run_id
        raise DelegationError(f"Cannot start '{child.agent_id}': no free run_id under {number}")

    def _child_id(self, agent_id: str) -> str:
        """A new child's id, ``<parent>.<n>-<agent>``: the number taken before its start
        is awaited, so calls of one turn that start children at once get ``.1``, ``.2``,
        ... (patched: runs from before named children ``<parent>.<n>``, numbered by the
        children already in the table)."""
        if not taken(self._parent.version, CHILD_IDS_PATCH):
            return f"{self._parent.run_id}.{len(self.table) + 1}"
        self._numbered = max(self._numbered, len(self.table)) + 1
        return child_run_id(self._parent.run_id, self._numbered, agent_id)

    def _check_allowed(self, agent_id: str) -> None:
        if agent_id not in self.policy.visible_agents:
            raise DelegationError(
                f"Unknown or unavailable agent_id: {agent_id}", code="unknown_agent"
            )
        depth = self._parent.depth + 1
        if depth > self.policy.max_depth:
            raise DelegationError(
                f"Cannot start '{agent_id}' at depth {depth}: "
                f"the maximum delegation depth is {self.policy.max_depth}"
            )
        if len(self.table) >= MAX_CHILDREN_PER_RUN:
            raise DelegationError(
                f"Cannot start '{agent_id}': run '{self._parent.run_id}' already delegated "
                f"{len(self.table)} runs, the most one run may delegate"
            )

    async def _take_run(self, agent_id: str) -> None:
        """One run of the tree's count for a new child, granted by the root (at once
        when this run is the root), or the reason there is none."""
        grant = self._tree.grant_now(1) or await self._permits.take()
        if grant.granted:
            return
        if grant.stop is not None:
            self._tree.spent(grant.stop)
        raise DelegationError(f"Cannot start '{agent_id}': {grant.refused}")

    async def _existing(self, args: RunArgs) -> ToolResult:
        run_id = args.run_id or ""
        child = self.table.get(run_id)
        if child is None:
            raise unknown_run(run_id)
        if child.status == "stopped":
            return await self._resume(child, args.prompt, args.background)
        if child.status == "running":
            state = await self._read(run_id)
            if state is not None and state.summary.epoch == child.epoch:
                return state.summary.tool_view()
        return child.tool_view()

    async def _resume(
        self, child: RunSummary, prompt: str | None, background: bool, budget: Budget | None = None
    ) -> ToolResult:
        state = await self._read(child.run_id)
        if state is None:
            raise unknown_run(child.run_id)
        resumed = state.resumed(self._parent.owner_thread_id, prompt, self._parent.run_id, budget)
        await self._start(child.run_id, resumed)
        return await self._settled_if_foreground(child.run_id, background)

    async def resume(
        self, run_id: str, prompt: str | None, budget: Budget | None = None
    ) -> RunSummary:
        """Resume a stopped child in the background (the owner's client asked)."""
        child = self.table.get(run_id)
        if child is None:
            raise unknown_run(run_id)
        if child.status == "running":
            # Stopped from outside a moment ago: its watcher is still settling it.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.table[run_id].status != "running", timeout=SETTLE_TIMEOUT
                )
            child = self.table[run_id]
        if child.status != "stopped":
            raise not_resumable(run_id, child.status)
        await self._resume(child, prompt, background=True, budget=budget)
        return self.table[run_id]

    async def _agent_stop(self, run_id: str) -> ToolResult:
        child = self.table.get(run_id)
        if child is None:
            raise unknown_run(run_id)
        if child.status != "running":
            raise not_running(run_id, child.status)
        await self._cancel(run_id)
        return await self._settled_if_foreground(run_id, background=False)

    async def _agent_output(self, run_id: str) -> ToolResult:
        child = self.table.get(run_id)
        if child is None:
            raise unknown_run(run_id)
        if child.status == "running":
            state = await self._read(run_id)
            if state is not None and state.summary.epoch == child.epoch:
                child = state.summary
        elif child.status == "stopped" and taken(self._parent.version, CHILD_REPORT_PATCH):
            # Its text as it closed, from itself: settled while this run stopped, the
            # table has only its status.
            said = await self._read_summary(run_id)
            if said is not None and said.epoch == child.epoch and said.status == "stopped":
                child = said
        output: JsonValue = child.assistant
        return {
            "run_id": run_id,
            "agent_id": child.agent_id,
            "status": child.status,
            "output": output,
        }

    async def _start(
        self,
        run_id: str,
        child: AgentRunInput,
        reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    ) -> None:
        """Start ``run_id``: a new child (``reuse`` rejects any run with its id) or a
        resumed one (its closed execution is reused).

        Raises:
            WorkflowAlreadyStartedError: a new child's id is taken.
            DelegationError: a resumed child is already running.
        """
        try:
            handle = await workflow.start_child_workflow(
                WORKFLOW_TYPE,
                child.model_copy(
                    update={
                        "search_attributes_set": True,
                        "text_memo": True,
                        "version": RUN_VERSION,
                    }
                ),
                id=run_id,
                task_queue=self._parent.task_queue,
                result_type=RunSummary,
                search_attributes=start_search_attributes(child),
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                id_reuse_policy=reuse,
                static_summary=static_summary(child),
                static_details=static_details(child, run_id),
            )
        except WorkflowAlreadyStartedError:
            if reuse == WorkflowIDReusePolicy.REJECT_DUPLICATE:
                raise
            raise DelegationError(f"Run '{run_id}' is already running") from None
        self.table[run_id] = RunSummary(
            run_id=run_id,
            agent_id=child.agent_id,
            status="running",
            owner_thread_id=child.owner_thread_id,
            parent_run_id=self._parent.run_id,
            epoch=child.epoch,
        )
        self._publish("child_started", self.table[run_id])
        watcher = asyncio.create_task(self._watch(handle, run_id, child.epoch))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(
        self, handle: ChildWorkflowHandle[object, RunSummary], run_id: str, epoch: int
    ) -> None:
        """Settle a child from its own execution: how it closed is Temporal's record of
        it, its summary is its result, its failure's details, or what it says when read
        after closing. No signal any client could forge is taken for it."""
        try:
            summary = await handle
        except ChildWorkflowError as err:
            if not self._running(run_id, epoch):
                return  # a run from before: the child reported its stopped summary itself
            summary = await self._closed_summary(run_id, err)
        self.settle(summary.model_copy(update={"epoch": epoch}))

    def settle(self, summary: RunSummary) -> None:
        """Record a child's final summary; a stale epoch never overwrites a newer one."""
        if self._running(summary.run_id, summary.epoch):
            self.table[summary.run_id] = summary
            self._publish("child_finished", summary)

    def _running(self, run_id: str, epoch: int) -> bool:
        current = self.table.get(run_id)
        return current is not None and current.epoch == epoch and current.status == "running"

    async def _closed_summary(self, run_id: str, err: ChildWorkflowError) -> RunSummary:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.details:
            try:
                return RunSummary.model_validate(cause.details[0])
            except ValueError:
                pass
        if taken(self._parent.version, CHILD_REPORT_PATCH):
            if isinstance(cause, CancelledError) and workflow.cancellation_reason() is not None:
                # Stopped with this run: the status now, the text when asked for it
                # (``agent_output``); no read while the whole tree closes.
                return self.table[run_id].model_copy(update={"status": "stopped"})
            said = await self._read_summary(run_id)
        else:  # how runs from before read it
            state = await self._read(run_id)
            said = state.summary if state is not None else None
        if said is not None and said.status != "running":
            return said
        known = self.table[run_id]
        status = "failed" if isinstance(cause, ApplicationError) else "stopped"
        return known.model_copy(update={"status": status, "error": str(cause or err)})

    async def _settled_if_foreground(self, run_id: str, background: bool) -> ToolResult:
        if not background:
            epoch = self.table[run_id].epoch
            await workflow.wait_condition(
                lambda: self.table[run_id].status != "running" or self.table[run_id].epoch != epoch
            )
        return self.table[run_id].tool_view()

    async def _cancel(self, run_id: str) -> None:
        # A cancel request, not the child handle: it also reaches a child that a
        # previous epoch of this run started, and its subtree follows natively.
        try:
            await workflow.get_external_workflow_handle(run_id).cancel()
        except FailureError:
            # The child closed before the request reached it (``stop_tree`` cancels
            # every level itself): nothing left to cancel. Before this, the stopping
            # run failed with the request's error; a history of that replays so.
            if not taken(self._parent.version, CLOSED_CHILD_CANCEL_PATCH):
                raise

    async def _read(self, run_id: str) -> RunState | None:
        """The child's state, read by an activity (workflows cannot query each other)."""
        return await _read_run(READ_RUN_ACTIVITY, run_id, RunState)

    async def _read_summary(self, run_id: str) -> RunSummary | None:
        """The child's summary alone (a closed child's replays its history)."""
        return await _read_run(READ_SUMMARY_ACTIVITY, run_id, RunSummary)


async def _read_run(activity: str, run_id: str, result: type[_Read]) -> _Read | None:
    read: _Read | None = await workflow.execute_activity(
        activity,
        ReadRunInput(run_id=run_id),
        result_type=result | None,  # type: ignore[arg-type]
        start_to_close_timeout=timedelta(seconds=30),
    )
    return read


# Patched where a stopping run's cancel request to a child fails (the child had closed).
CLOSED_CHILD_CANCEL_PATCH = "cancel-of-closed-child-is-done"


def _cancels_at_once(version: int, running: int) -> bool:
    """Whether a stop cancels its running children at once (patched), not one by one.

    With one child or none both ways issue the same commands, so a live run asks
    nothing (no marker, no ``TemporalChangeVersion`` upsert: two history events per
    stopped run). On replay the history says: a run from before this marked the patch
    whatever its children, and the marker is matched here.
    """
    if version >= PATCHES_TAKEN:
        return True
    if running > 1 or workflow.unsafe.is_replaying():
        return workflow.patched("cancel-children-at-once")
    return True
