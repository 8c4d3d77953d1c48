"""The owner's client: start, read, follow, stop and resume runs, scoped to an owner.

Every operation names the owner thread and checks it first: a run of another owner
looks exactly like a run that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, CancelledError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import (
    DEFAULT_TASK_QUEUE,
    OWNER_THREAD_ID,
    QUERY_CHILDREN,
    QUERY_RUN_STATE,
    QUERY_SUMMARY,
    QUERY_THREAD,
    WORKFLOW_TYPE,
)
from agentrun._delegation import DelegationError, not_resumable, not_running, unknown_run
from agentrun._follow import follow
from agentrun._models import (
    MAX_RUN_ID_CHARS,
    AgentEvent,
    AgentRunInput,
    Message,
    RunState,
    RunSummary,
    check_id,
)
from agentrun._visibility import query_literal, start_search_attributes
from agentrun._webui import static_details, static_summary

__all__ = ["AgentRunClient", "DelegationError", "StreamedEvent"]

_CLOSE_WAIT = timedelta(seconds=30)
QUERY_TIMEOUT = timedelta(seconds=10)
_QUERY_RETRY_STATUSES = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
# What a wait outlasts: no answer in time, and a workflow task in failed state (Temporal
# retries it; a query meanwhile gets FAILED_PRECONDITION).
_WAIT_RETRY_STATUSES = (
    *_QUERY_RETRY_STATUSES,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.UNAVAILABLE,
)
T = TypeVar("T")


class StreamedEvent(BaseModel):
    """An event as a follower receives it: its run's stream offset, and the event."""

    offset: int
    event: AgentEvent


class AgentRunClient:
    """Owner-scoped operations on runs (docs/delegation.md section 3)."""

    def __init__(self, client: Client, queue: str = DEFAULT_TASK_QUEUE) -> None:
        """Wrap a Temporal client that has the ``AgentRunPlugin``.

        Args:
            client: The Temporal client.
            queue: The task queue runs are started on (``AGENTRUN_TASK_QUEUE`` for the
                command line and the worker).
        """
        self.temporal = client
        self.task_queue = queue

    async def start(
        self,
        owner_thread_id: str,
        agent_id: str,
        prompt: str | None,
        messages: list[Message] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Start a new root run; returns its run_id."""
        run_input = AgentRunInput(
            owner_thread_id=owner_thread_id,
            agent_id=agent_id,
            prompt=prompt,
            messages=messages or [],
        )
        run_input.check_prompt()
        run_id = _new_run_id(run_id)
        try:
            # A new run never replaces an existing one, whoever owns it.
            await self._start(run_id, run_input, WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            raise DelegationError(
                f"run_id '{run_id}' is already taken; choose another", code="invalid_arguments"
            ) from None
        return run_id

    async def summary(self, owner_thread_id: str, run_id: str) -> RunSummary | None:
        """The run's summary, or None if unknown or owned by another thread."""
        summary = await self._query(run_id, QUERY_SUMMARY, RunSummary)
        if summary is None or summary.owner_thread_id != owner_thread_id:
            return None
        return summary

    async def thread(self, owner_thread_id: str, run_id: str) -> list[Message] | None:
        """The run's messages, or None (same scoping as ``summary``)."""
        if await self.summary(owner_thread_id, run_id) is None:
            return None
        return await self._query(run_id, QUERY_THREAD, list[Message])

    async def all(self, owner_thread_id: str) -> list[RunSummary]:
        """All the owner's runs, sorted by run_id."""
        try:
            check_id(owner_thread_id)
        except ValueError:
            return []  # no run can have such an owner
        owner = query_literal(owner_thread_id)
        query = f"WorkflowType = '{WORKFLOW_TYPE}' AND {OWNER_THREAD_ID.name} = {owner}"
        run_ids = {execution.id async for execution in self.temporal.list_workflows(query)}
        found = await asyncio.gather(*(self.summary(owner_thread_id, r) for r in run_ids))
        return sorted((s for s in found if s is not None), key=lambda s: s.run_id)

    async def running_or_stopped(self, owner_thread_id: str) -> list[RunSummary]:
        """The owner's runs that are running or stopped, sorted by run_id."""
        runs = await self.all(owner_thread_id)
        return [run for run in runs if run.status in ("running", "stopped")]

    async def stop_tree(self, owner_thread_id: str, run_id: str) -> list[RunSummary]:
        """Stop the run and every running descendant; the subtree's summaries, root first.

        Raises:
            DelegationError: ``Unknown run_id: …`` or ``Run '…' is not running …``.
        """
        root = await self.summary(owner_thread_id, run_id)
        if root is None:
            raise unknown_run(run_id)
        # A stopped run cancels the children it runs (workflows/_children.py), so the
        # root's cancel goes out at once and cascades through Temporal while the walk
        # finds the runs no running parent will cancel: one cancel per run.
        cascaded = {root.run_id} if root.status == "running" else set()
        first = asyncio.create_task(self._cancel(root.run_id)) if cascaded else None
        tree = await self._subtree(root, cascaded)
        running = {s.run_id: s for s in tree if s.status == "running"}
        if first is not None:
            await first
            running[root.run_id] = root
        if not running:
            raise not_running(run_id, root.status)
        await asyncio.gather(*(self._cancel(r) for r in running if r not in cascaded))
        finals = await asyncio.gather(*(self._final(s) for s in running.values()))
        closed = {final.run_id: final for final in finals}
        return [closed.get(s.run_id, s) for s in tree]

    async def resume(
        self, owner_thread_id: str, run_id: str, prompt: str | None = None
    ) -> RunSummary:
        """Resume a stopped run as its next epoch, with an optional new user prompt.

        A child run is resumed by its parent when the parent is still running, so it
        stays in the parent's tree.
        """
        summary = await self.summary(owner_thread_id, run_id)
        if summary is None:
            raise unknown_run(run_id)
        if summary.status != "stopped":
            raise not_resumable(run_id, summary.status)
        if summary.parent_run_id and await self._resume_through_parent(summary, prompt):
            return await self.summary(owner_thread_id, run_id) or summary
        state = await self._query(run_id, QUERY_RUN_STATE, RunState)
        if state is None:
            raise unknown_run(run_id)
        thread = [*state.thread, Message.user(prompt)] if prompt else state.thread
        await self._start(
            run_id,
            AgentRunInput(
                owner_thread_id=owner_thread_id,
                agent_id=summary.agent_id,
                messages=thread,
                epoch=summary.epoch + 1,
                parent_run_id=summary.parent_run_id,
                depth=state.depth,
                agent_state=state.agent_state,
                children=state.children,
                stream_state=state.stream_state,
            ),
        )
        return await self.summary(owner_thread_id, run_id) or summary

    async def wait(
        self, owner_thread_id: str, run_id: str, timeout: float | None = None
    ) -> RunSummary:
        """Wait until the run is no longer running; its final summary.

        A worker that cannot answer the summary query for now (too busy to answer in
        time, or its workflow task failed and is being retried) does not end the wait:
        it waits for the run to close, through Temporal, and asks again.
        """

        async def settle() -> RunSummary:
            while True:
                try:
                    summary = await self.summary(owner_thread_id, run_id)
                except RPCError as err:
                    if err.status not in _WAIT_RETRY_STATUSES:
                        raise
                    await self._closed(run_id)
                    continue
                if summary is None:
                    raise unknown_run(run_id)
                if summary.status != "running":
                    return summary
                await self._closed(run_id)

        return await asyncio.wait_for(settle(), timeout)

    async def events(
        self,
        owner_thread_id: str,
        run_id: str,
        from_offset: int = 0,
        descendants: bool = False,
    ) -> AsyncIterator[StreamedEvent]:
        """The run's events from ``from_offset``: live while it runs, then to its end.

        With ``descendants``, the events of every run it delegates are merged in as
        they start (each from its beginning); each event names its run.
        """
        if await self.summary(owner_thread_id, run_id) is None:
            raise unknown_run(run_id)
        if not descendants:
            async for item in self._follow(run_id, from_offset):
                yield item
            return
        async for item in self._follow_tree(run_id, from_offset):
            yield item

    async def _follow(self, run_id: str, from_offset: int) -> AsyncIterator[StreamedEvent]:
        async for offset, event in follow(self.temporal, run_id, from_offset):
            yield StreamedEvent(offset=offset, event=event)

    async def _follow_tree(self, run_id: str, from_offset: int) -> AsyncIterator[StreamedEvent]:
        queue: asyncio.Queue[StreamedEvent | None] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        followed: set[str] = set()

        def follow(target: str, offset: int) -> None:
            followed.add(target)
            task = asyncio.create_task(pump(target, offset))
            tasks.add(task)
            task.add_done_callback(lambda _: queue.put_nowait(None))

        async def pump(target: str, offset: int) -> None:
            async for item in self._follow(target, offset):
                await queue.put(item)

        follow(run_id, from_offset)
        finished = 0
        try:
            while finished < len(tasks):
                item = await queue.get()
                if item is None:
                    finished += 1
                    continue
                child = item.event.summary
                if item.event.kind == "child_started" and child and child.run_id not in followed:
                    follow(child.run_id, 0)
                yield item
            for task in tasks:
                task.result()  # re-raise a follower's error
        finally:
            for task in tasks:
                task.cancel()

    async def _subtree(
        self, root: RunSummary, cascaded: set[str] | None = None
    ) -> list[RunSummary]:
        """The run and its descendants of the same owner, depth first, root first.

        ``cascaded`` collects the runs a stop of their running parent cancels itself.
        """
        children = await self._query(root.run_id, QUERY_CHILDREN, list[RunSummary]) or []
        ordered = sorted(children, key=lambda c: c.run_id)
        if cascaded is not None and root.status == "running":
            cascaded.update(c.run_id for c in ordered if c.status == "running")
        # Siblings are read at once: a wide tree costs one round trip per level. Each
        # child's own summary, not its parent's record of it: the latest text is there.
        currents = await asyncio.gather(
            *(self.summary(root.owner_thread_id, child.run_id) for child in ordered)
        )
        mine = [c for c in currents if c is not None and c.parent_run_id == root.run_id]
        subtrees = await asyncio.gather(*(self._subtree(current, cascaded) for current in mine))
        return [root, *(summary for subtree in subtrees for summary in subtree)]

    async def _resume_through_parent(self, summary: RunSummary, prompt: str | None) -> bool:
        parent = self.temporal.get_workflow_handle(summary.parent_run_id or "")
        try:
            description = await parent.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                return False
            await parent.execute_update(
                "resume_child", {"run_id": summary.run_id, "prompt": prompt}
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            code = cause.type if isinstance(cause, ApplicationError) and cause.type else ""
            raise DelegationError(message, code=code or "invalid_state") from None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def _start(
        self,
        run_id: str,
        run_input: AgentRunInput,
        reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    ) -> None:
        await self.temporal.start_workflow(
            WORKFLOW_TYPE,
            run_input.model_copy(update={"search_attributes_set": True}),
            id=run_id,
            task_queue=self.task_queue,
            id_reuse_policy=reuse,
            search_attributes=start_search_attributes(run_input),
            static_summary=static_summary(run_input),
            static_details=static_details(run_input, run_id),
        )

    async def _query(self, run_id: str, name: str, result_type: type[T]) -> T | None:
        handle: WorkflowHandle[object, object] = self.temporal.get_workflow_handle(run_id)
        for attempt in (1, 2):
            try:
                # Queries need a worker: without one, give up in 2 x 10 s, not 30 s.
                result: T = await handle.query(
                    name, result_type=result_type, rpc_timeout=QUERY_TIMEOUT
                )
                return result
            except RPCError as err:
                if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                    return None
                # A query that lands as the run closes can go unanswered (the worker
                # evicts the run with the query buffered); asked again, it is answered.
                if attempt == 2 or err.status not in _QUERY_RETRY_STATUSES:
                    raise
            except WorkflowQueryFailedError:
                return None
        return None

    async def _cancel(self, run_id: str) -> None:
        try:
            await self.temporal.get_workflow_handle(run_id).cancel()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    async def _final(self, running: RunSummary) -> RunSummary:
        """The summary of a run being stopped once it has closed, from how it closed.

        A closed run's queries replay its whole history on a worker; its result does
        not: a completed run's result is its summary, a failed run's error carries it,
        and a stopped run is what it was with the status ``stopped``.
        """
        handle = self.temporal.get_workflow_handle(running.run_id, result_type=RunSummary)
        try:
            return await asyncio.wait_for(
                handle.result(follow_runs=True),
                _CLOSE_WAIT.total_seconds(),
            )
        except WorkflowFailureError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.details:
                return RunSummary.model_validate(cause.details[0])
            if isinstance(cause, CancelledError):
                return running.model_copy(update={"status": "stopped"})
        except (WorkflowContinuedAsNewError, RPCError, TimeoutError):
            pass
        return await self.summary(running.owner_thread_id, running.run_id) or running

    async def _closed(self, run_id: str) -> None:
        """Wait until the run's current execution has closed, however it closed."""
        handle = self.temporal.get_workflow_handle(run_id)
        with contextlib.suppress(
            WorkflowFailureError, WorkflowContinuedAsNewError, RPCError, TimeoutError
        ):
            await asyncio.wait_for(handle.result(follow_runs=True), _CLOSE_WAIT.total_seconds())


def _new_run_id(run_id: str | None) -> str:
    """The caller's run_id, checked, or a fresh ``run-<hex>``."""
    if run_id is None:
        return f"run-{uuid.uuid4().hex[:12]}"
    try:
        checked = check_id(run_id, "run_id")
    except ValueError as err:
        raise ValueError(f"Invalid run_id {run_id[:40]!r}: {err}") from None
    if len(checked) > MAX_RUN_ID_CHARS:
        raise ValueError(f"Invalid run_id: {len(checked)} characters, at most {MAX_RUN_ID_CHARS}")
    return checked
