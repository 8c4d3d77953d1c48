"""The owner's client: start, read, follow, stop and resume runs, scoped to an owner.

Every operation names the owner thread and checks it first: a run of another owner
looks exactly like a run that does not exist. Lists and trees come from Temporal's
visibility store, and each run's latest text from the run itself, a few runs at a
time (``agentrun._listing``, ``agentrun._reading``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Collection
from datetime import timedelta

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowContinuedAsNewError,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._causal import CauseFirst
from agentrun._constants import (
    DEFAULT_TASK_QUEUE,
    QUERY_RUN_STATE,
    QUERY_THREAD,
    RUN_VERSION,
    WORKFLOW_TYPE,
)
from agentrun._delegation import DelegationError, not_resumable, unknown_run
from agentrun._follow import follow
from agentrun._listing import ListedRun, VisibleRun, list_owner_runs, list_tree, owner_query
from agentrun._models import (
    MAX_RUN_ID_CHARS,
    AgentEvent,
    AgentRunInput,
    Message,
    PendingApproval,
    ResumeChildRequest,
    RunState,
    RunSummary,
    Status,
    check_id,
)
from agentrun._reading import Listing, NoAnswerError, RunReader
from agentrun._run_ids import agent_part
from agentrun._spend import spend_by_run, subtree_query, subtree_spend, tree_total
from agentrun._steering import Steering, refused
from agentrun._stopping import TreeStop, descendants, retried
from agentrun._task_queue import worker_polls
from agentrun._usage import Budget, Usage
from agentrun._visibility import start_search_attributes
from agentrun._webui import static_details, static_summary

__all__ = ["AgentRunClient", "DelegationError", "ListedRun", "NoAnswerError", "StreamedEvent"]

_CLOSE_WAIT = timedelta(seconds=30)
# How much of the agent id a new root run_id carries (run-<hex>-<agent>).
# What a wait outlasts: no answer in time, and a workflow task in failed state (Temporal
# retries it; a query meanwhile gets FAILED_PRECONDITION).
_WAIT_RETRY_STATUSES = (
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.FAILED_PRECONDITION,
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.RESOURCE_EXHAUSTED,  # the run's query buffer is full: a busy run
)
# A wait whose long poll comes back at once (an error, not a close) asks again after
# a pause that doubles up to the longest: never a hot loop.
_WAIT_PAUSE_FIRST = 0.1
_WAIT_PAUSE_LONGEST = 2.0
_LIVE: tuple[Status, ...] = ("running", "stopped")


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
        self._reader = RunReader(client, queue)
        self._steering = Steering(client, self._reader)

    async def start(
        self,
        owner_thread_id: str,
        agent_id: str,
        prompt: str | None,
        messages: list[Message] | None = None,
        run_id: str | None = None,
        budget: Budget | None = None,
        follow: bool = False,
    ) -> str:
        """Start a new root run; returns its run_id. ``budget`` caps what the run and
        everything it delegates may spend together (docs/budgets.md). ``follow``: the
        caller follows the run's events from the start (``events``), so its first turn
        sends them at the followed pace from the first one, not after it learns of the
        follower (docs/design.md, "Streaming")."""
        run_input = AgentRunInput(
            owner_thread_id=owner_thread_id,
            agent_id=agent_id,
            prompt=prompt,
            messages=messages or [],
            budget=budget,
            followed=follow,
        )
        run_input.check_prompt()
        run_id = _new_run_id(run_id, agent_id)
        try:
            # A new run never replaces an existing one, whoever owns it.
            await self._start(run_id, run_input, WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            raise DelegationError(
                f"run_id '{run_id}' is already taken; choose another", code="invalid_arguments"
            ) from None
        return run_id

    async def start_from(
        self,
        owner_thread_id: str,
        from_run_id: str,
        prompt: str,
        agent_id: str | None = None,
        budget: Budget | None = None,
        follow: bool = False,
    ) -> str:
        """Start a new root run that goes on from a closed run's thread, with a new
        prompt; its agent is the closed run's unless ``agent_id`` names another.
        ``budget`` and ``follow`` as for ``start``.

        Raises:
            DelegationError: an unknown or foreign run, or one still running.
        """
        summary = await self.summary(owner_thread_id, from_run_id)
        if summary is None:
            raise unknown_run(from_run_id)
        if summary.status == "running":
            raise DelegationError(
                f"Run {from_run_id} is still running: send it the message instead "
                f"(agentrun send {from_run_id} TEXT)",
                code="invalid_state",
            )
        thread = await self.thread(owner_thread_id, from_run_id) or []
        agent = agent_id or summary.agent_id
        return await self.start(
            owner_thread_id, agent, prompt, thread, budget=budget, follow=follow
        )

    async def approve(self, owner_thread_id: str, run_id: str, call_id: str | None = None) -> str:
        """Let a call that awaits a decision run (the run's only one when ``call_id``
        is None); the call's id. Errors as for ``deny``."""
        return await self._steering.decide(owner_thread_id, run_id, call_id, True, None)

    async def deny(
        self,
        owner_thread_id: str,
        run_id: str,
        call_id: str | None = None,
        reason: str | None = None,
    ) -> str:
        """Refuse a call that awaits a decision: its agent gets ``User denied the
        action`` (and the reason) as the call's result; the call's id.

        Raises:
            DelegationError: an unknown or foreign run (``Unknown run_id: …``), an
                unknown or decided call, no single call to decide, or a closed run.
        """
        return await self._steering.decide(owner_thread_id, run_id, call_id, False, reason)

    async def pending(
        self, owner_thread_id: str, run_id: str | None = None
    ) -> list[PendingApproval]:
        """Every call awaiting the owner's decision, in all its runs or in one, oldest
        first: run, agent, tool, arguments and when it asked."""
        return await self._steering.pending(owner_thread_id, run_id)

    async def send(self, owner_thread_id: str, run_id: str, content: str) -> None:
        """A user message for a running run: it joins the thread and the agent sees it
        at the start of its next turn (a run done with its own turns, waiting for
        background children, takes another turn for it).

        Raises:
            DelegationError: an unknown or foreign run, or a closed one; the message
                says what to do instead (resume it, or ``run --from`` it).
        """
        await self._steering.send(owner_thread_id, run_id, content)

    async def summary(self, owner_thread_id: str, run_id: str) -> RunSummary | None:
        """The run's summary, or None if unknown or owned by another thread.

        Whose run it is comes from Temporal first (``describe``), so another owner's
        run is refused as quickly as one that does not exist. A closed run's status is
        how its workflow closed (docs/delegation.md, section 3).
        """
        seen = await self._reader.visible(owner_thread_id, run_id)
        return await self._reader.current(seen) if seen is not None else None

    async def task_queue_of(self, owner_thread_id: str, run_id: str) -> str | None:
        """The task queue the run's current epoch runs on; None when the run is unknown
        or another owner's. Temporal answers alone: no worker is asked."""
        seen = await self._reader.visible(owner_thread_id, run_id)
        return seen.execution.task_queue if seen is not None else None

    async def thread(self, owner_thread_id: str, run_id: str) -> list[Message] | None:
        """The run's messages, or None (same scoping as ``summary``)."""
        if await self._reader.visible(owner_thread_id, run_id) is None:
            return None
        return await self._reader.query(run_id, QUERY_THREAD, list[Message])

    async def all(
        self,
        owner_thread_id: str,
        *,
        statuses: Collection[Status] | None = None,
        agents: Collection[str] | None = None,
    ) -> list[RunSummary]:
        """All the owner's runs, sorted by run_id; only those with one of ``statuses``
        and of one of ``agents`` when given.

        The runs come from Temporal's visibility store (which can lag a start by a
        moment); each one's latest text from the run, a few at a time. A run that
        cannot say (no worker answers, its input was invalid) is listed as visibility
        shows it, without its text: one run never fails the list. When no worker
        polls the client's task queue, no run is asked.
        """
        try:
            check_id(owner_thread_id)
        except ValueError:
            return []  # no run can have such an owner
        listed = await list_owner_runs(self.temporal, owner_thread_id, statuses, agents)
        # A running run may have moved on: asked, it says its status now.
        wanted = [
            run
            for run in listed.values()
            if not statuses or run.summary.status in statuses or run.closed is None
        ]
        listing = Listing()
        # With no worker polling, each query would only wait for its timeout.
        listing.answering = await worker_polls(self.temporal, self.task_queue)
        found = await asyncio.gather(*(self._reader.current(run, listing) for run in wanted))
        kept = [s for s in found if not statuses or s.status in statuses]
        return sorted(kept, key=lambda s: s.run_id)

    async def running_or_stopped(self, owner_thread_id: str) -> list[RunSummary]:
        """The owner's runs that are running or stopped, sorted by run_id."""
        return await self.all(owner_thread_id, statuses=_LIVE)

    async def subtree(self, owner_thread_id: str, run_id: str) -> list[ListedRun]:
        """The run and its descendants of the same owner, each with its current epoch's
        start and close time: depth first, the run first, siblings by run_id.

        Raises:
            DelegationError: ``Unknown run_id: …``.
        """
        seen = await self._reader.visible(owner_thread_id, run_id)
        if seen is None:
            raise unknown_run(run_id)
        root = await self._reader.current(seen)
        return [run.listed(summary) for run, summary in await self._tree(seen, root)]

    async def stop_tree(self, owner_thread_id: str, run_id: str) -> list[RunSummary]:
        """Stop the run and every running descendant; the subtree's summaries, root first.

        No run is queried: the tree comes from visibility, a running run's latest text
        from its turn's heartbeat (``describe``), and each final summary from how the
        run closed (``agentrun._stopping``). A busy or unreachable server is asked
        again, not raised, while it may pass; a run still open once nothing in the
        subtree has closed for 30 s is returned as it was.

        Raises:
            DelegationError: ``Unknown run_id: …`` or ``Run '…' is not running …``.
        """
        seen = await retried(lambda: self._reader.visible(owner_thread_id, run_id))
        if seen is None:
            raise unknown_run(run_id)
        root = await self._reader.current(seen, Listing(queries=False))
        return await TreeStop(self.temporal, self._reader, seen).stop(root)

    async def resume(
        self,
        owner_thread_id: str,
        run_id: str,
        prompt: str | None = None,
        budget: Budget | None = None,
    ) -> RunSummary:
        """Resume a stopped run as its next epoch, with an optional new user prompt and
        a new budget for its subtree (default: the one it had).

        A child run is resumed by its parent when the parent is still running, so it
        stays in the parent's tree.
        """
        summary = await self.summary(owner_thread_id, run_id)
        if summary is None:
            raise unknown_run(run_id)
        if summary.status != "stopped":
            raise not_resumable(run_id, summary.status)
        if summary.parent_run_id and await self._resume_through_parent(summary, prompt, budget):
            return await self.summary(owner_thread_id, run_id) or summary
        state = await self._reader.query(run_id, QUERY_RUN_STATE, RunState)
        if state is None:
            raise unknown_run(run_id)
        resumed = state.resumed(owner_thread_id, prompt, summary.parent_run_id, budget)
        if summary.parent_run_id:
            # Its parent has closed, so has its tree's root: it counts its own runs now.
            resumed = resumed.model_copy(update={"root_run_id": run_id, "tree_runs": {}})
        await self._start(run_id, resumed)
        return await self.summary(owner_thread_id, run_id) or summary

    async def spend(self, owner_thread_id: str, run_id: str) -> Usage:
        """What ``run_id`` and every run below it spent, running or closed, all their
        epochs: from visibility (each run's ``usage`` memo), no query to any run."""
        return (await subtree_spend(self.temporal, owner_thread_id, run_id)).usage

    async def with_spend(
        self, owner_thread_id: str, summaries: list[RunSummary], under: str | None = None
    ) -> list[RunSummary]:
        """``summaries`` with each run's own usage and its subtree's, from one listing
        of the owner's runs (of the subtree of ``under`` when all are in it)."""
        query = subtree_query(owner_thread_id, under) if under else owner_query(owner_thread_id)
        by_run = await spend_by_run(self.temporal, query)
        return [
            s.model_copy(
                update={
                    "usage": by_run.get(s.run_id, s.usage),
                    "tree_usage": tree_total(by_run, s.run_id).usage,
                }
            )
            for s in summaries
        ]

    async def wait(
        self, owner_thread_id: str, run_id: str, timeout: float | None = None
    ) -> RunSummary:
        """Wait until the run is no longer running; its final summary.

        Temporal says when the run's workflow has closed, however it closed (failed,
        terminated, timed out): a run that closed without saying so itself ends the
        wait too, with the status its close gives. A worker that cannot answer for now
        (too busy, or its workflow task failed and is being retried) does not end the
        wait: it waits for the run to close, through Temporal, and asks again.
        """
        clock = asyncio.get_running_loop().time

        async def settle() -> RunSummary:
            pause = 0.0
            while True:
                try:
                    summary = await self.summary(owner_thread_id, run_id)
                except RPCError as err:
                    if err.status not in _WAIT_RETRY_STATUSES:
                        raise
                else:
                    if summary is None:
                        raise unknown_run(run_id)
                    if summary.status != "running":
                        return summary
                await asyncio.sleep(pause)
                began = clock()
                await self._closed(run_id)
                quick = clock() - began < _WAIT_PAUSE_LONGEST
                pause = min(max(pause * 2, _WAIT_PAUSE_FIRST), _WAIT_PAUSE_LONGEST) if quick else 0

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
        they start (each from its beginning), a cause before its effect (a child's
        ``finish`` before its parent's ``child_finished``); each event names its run. An event this
        version cannot read is skipped, and one of a kind it does not know (from a
        newer worker) comes with its kind's name and text.
        """
        if await self._reader.visible(owner_thread_id, run_id) is None:
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
        # Events, and after a follower's last event the run whose stream ended.
        queue: asyncio.Queue[StreamedEvent | str] = asyncio.Queue()
        tasks: dict[str, asyncio.Task[None]] = {}

        def follow(target: str, offset: int) -> None:
            order.following(target)
            task = asyncio.create_task(pump(target, offset))
            tasks[target] = task
            task.add_done_callback(lambda _: queue.put_nowait(target))

        async def pump(target: str, offset: int) -> None:
            async for item in self._follow(target, offset):
                await queue.put(item)

        def follow_child(child: str) -> None:
            if child not in tasks:
                follow(child, 0)

        order = CauseFirst(follow_child)
        follow(run_id, from_offset)
        ended = 0
        try:
            while ended < len(tasks):
                item = await queue.get()
                if isinstance(item, str):
                    ended += 1
                    released = order.ended(item)
                else:
                    released = order.arrived(item)
                for event in released:
                    yield event
            for task in tasks.values():
                task.result()  # re-raise a follower's error
        finally:
            for task in tasks.values():
                task.cancel()

    async def _tree(
        self, seen: VisibleRun, root: RunSummary, queries: bool = True
    ) -> list[tuple[VisibleRun, RunSummary]]:
        """The run and its descendants of the same owner, depth first, root first, each
        as visibility lists it and as it is now (without ``queries``: as visibility and
        ``describe`` show it)."""
        root_id = seen.execution.root_id or root.run_id
        runs = await list_tree(self.temporal, root.owner_thread_id, root_id)
        below = [runs[r] for r in descendants(runs, root.run_id)]
        listing = Listing(queries)
        # Each run's own summary, not its parent's record of it: the latest text is there.
        currents = await asyncio.gather(*(self._reader.current(run, listing) for run in below))
        return [(seen, root), *zip(below, currents, strict=True)]

    async def _resume_through_parent(
        self, summary: RunSummary, prompt: str | None, budget: Budget | None
    ) -> bool:
        parent = self.temporal.get_workflow_handle(summary.parent_run_id or "")
        try:
            description = await parent.describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                return False
            request = ResumeChildRequest(run_id=summary.run_id, prompt=prompt, budget=budget)
            await parent.execute_update("resume_child", request)
        except WorkflowUpdateFailedError as err:
            raise refused(err) from None
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
            run_input.model_copy(
                update={"search_attributes_set": True, "text_memo": True, "version": RUN_VERSION}
            ),
            id=run_id,
            task_queue=self.task_queue,
            id_reuse_policy=reuse,
            search_attributes=start_search_attributes(run_input),
            static_summary=static_summary(run_input),
            static_details=static_details(run_input, run_id),
        )

    async def _closed(self, run_id: str) -> None:
        """Wait until the run's current execution has closed, however it closed."""
        handle = self.temporal.get_workflow_handle(run_id)
        with contextlib.suppress(
            WorkflowFailureError, WorkflowContinuedAsNewError, RPCError, TimeoutError
        ):
            await asyncio.wait_for(handle.result(follow_runs=True), _CLOSE_WAIT.total_seconds())


def _new_run_id(run_id: str | None, agent_id: str) -> str:
    """The caller's run_id, checked, or a fresh ``run-<hex>-<agent>``.

    The agent's id, as far as it is letters, digits, ``_`` and ``-`` (others become
    ``-``), at most ``RUN_ID_AGENT_CHARS`` of it, tells runs apart in a list of ids
    (the Temporal Web UI's); never a ``.``, which separates a child's number.
    """
    if run_id is None:
        agent = agent_part(agent_id)
        return f"run-{uuid.uuid4().hex[:12]}" + (f"-{agent}" if agent else "")
    try:
        checked = check_id(run_id, "run_id")
    except ValueError as err:
        raise ValueError(f"Invalid run_id {run_id[:40]!r}: {err}") from None
    if len(checked) > MAX_RUN_ID_CHARS:
        raise ValueError(f"Invalid run_id: {len(checked)} characters, at most {MAX_RUN_ID_CHARS}")
    return checked
