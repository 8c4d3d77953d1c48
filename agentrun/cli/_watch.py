"""Following a run tree's event streams through network and worker interruptions.

``AgentRunClient.events`` follows one run's stream; here each run of the tree gets a
follower of its own that remembers the last offset it delivered. When a follower's
connection breaks (the server restarts, the worker that hosts the run dies and a
poll times out), it waits and subscribes again from the next offset, so no event is
delivered twice and none is skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from agentrun._causal import CauseFirst
from agentrun._client import AgentRunClient, StreamedEvent
from agentrun.cli._views import children

__all__ = ["RetryPolicy", "StreamLost", "follow_tree", "is_transient"]

# Statuses of a connection that broke or of a server or worker that did not answer
# in time: worth trying again. Anything else (not found, permission denied) is final.
_TRANSIENT_STATUSES = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.ABORTED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)


def is_transient(err: BaseException) -> bool:
    """Whether following a stream again may succeed after ``err``."""
    if isinstance(err, RPCError):
        # After a restart the server refuses queries until the workers poll again.
        no_worker_yet = err.status == RPCStatusCode.FAILED_PRECONDITION and (
            "no poller seen" in err.message
        )
        return err.status in _TRANSIENT_STATUSES or no_worker_yet
    # A poll whose RPC timed out, or a read that no worker answered while the run
    # moved to another worker.
    return isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError | WorkflowQueryFailedError)


def _server_away(err: BaseException) -> bool:
    """Whether ``err`` says the server itself cannot be reached (not a missing worker)."""
    return (
        isinstance(err, RPCError)
        and err.status == RPCStatusCode.UNAVAILABLE
        and "connect" in err.message
    )


@dataclass(frozen=True)
class StreamLost:
    """A follower lost a run's stream and is about to follow it again."""

    run_id: str
    next_offset: int
    error: BaseException
    attempt: int = 1  # the reconnection about to be made since the last event


@dataclass(frozen=True)
class RetryPolicy:
    """How long a follower keeps reconnecting, and how often."""

    give_up_after: float = 300.0
    first_wait: float = 0.5
    max_wait: float = 5.0
    on_lost: Callable[[StreamLost], None] = field(default=lambda _: None)
    # While true (no worker polls, and the user was told), a stream broken for want of
    # a worker is neither reported nor counted towards giving up: it is tried again
    # quietly. A server that cannot be reached is reported all the same.
    paused: Callable[[], bool] = field(default=lambda: False)

    def wait(self, attempt: int) -> float:
        """Seconds to wait before the ``attempt``-th reconnection (1-based)."""
        return min(self.max_wait, self.first_wait * 2.0 ** (attempt - 1))


class _Follower:
    """Follows one run's stream, resuming after the last offset it delivered."""

    def __init__(
        self,
        runs: AgentRunClient,
        owner: str,
        run_id: str,
        next_offset: int,
        policy: RetryPolicy,
    ) -> None:
        self.run_id = run_id
        self.next_offset = next_offset
        self._runs = runs
        self._owner = owner
        self._policy = policy

    async def run(self, deliver: Callable[[StreamedEvent], None]) -> None:
        attempt = 0
        failing_since: float | None = None
        while True:
            try:
                async for item in self._runs.events(self._owner, self.run_id, self.next_offset):
                    if item.offset < self.next_offset:
                        continue  # already delivered before the reconnection
                    self.next_offset = item.offset + 1
                    attempt, failing_since = 0, None
                    deliver(item)
                return
            except Exception as err:
                if not is_transient(err):
                    raise
                if self._policy.paused() and not _server_away(err):
                    attempt, failing_since = 0, None
                    await asyncio.sleep(self._policy.first_wait)
                    continue
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > self._policy.give_up_after:
                    raise
                attempt += 1
                self._policy.on_lost(StreamLost(self.run_id, self.next_offset, err, attempt))
                await asyncio.sleep(self._policy.wait(attempt))


async def follow_tree(
    runs: AgentRunClient,
    owner: str,
    run_id: str,
    from_offset: int = 0,
    policy: RetryPolicy | None = None,
) -> AsyncIterator[StreamedEvent]:
    """The events of ``run_id`` from ``from_offset`` and of its descendants, merged.

    A descendant is followed from its first event once its ``child_started`` event
    arrives (again from where it was when a stopped child is resumed); from an offset,
    the children started before it are followed from their first event too. Causes come
    before their effects: a parent's ``child_finished`` (and what follows it) waits
    until the child's own ``finish`` is out. The iterator ends when every followed
    stream has ended.

    Raises:
        DelegationError: the run is unknown to ``owner``.
        RPCError: a connection stayed broken longer than the policy allows.
    """
    merge = _Merge(runs, owner, policy or RetryPolicy())
    merge.follow(run_id, from_offset)
    if from_offset:
        # Children started before the offset announce themselves in no event read here.
        for child in await children(runs, run_id):
            merge.follow(child.run_id, 0)
    try:
        while merge.running:
            item = await merge.queue.get()
            released = merge.ended(item) if isinstance(item, asyncio.Task) else merge.arrived(item)
            for event in released:
                yield event
    finally:
        merge.cancel()


class _Merge:
    """The followers of a tree; ``CauseFirst`` orders what they deliver."""

    def __init__(self, runs: AgentRunClient, owner: str, policy: RetryPolicy) -> None:
        self._runs, self._owner, self._policy = runs, owner, policy
        # Events and, after a follower's last event, its finished task: a follower's
        # events are always read before the news that it ended.
        self.queue: asyncio.Queue[StreamedEvent | asyncio.Task[None]] = asyncio.Queue()
        self._followers: dict[str, _Follower] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}  # each run's latest follower
        self._runs_of: dict[asyncio.Task[None], str] = {}
        self.running: set[asyncio.Task[None]] = set()  # followers whose end is not read yet
        self._order = CauseFirst(self._follow_child)

    def follow(self, target: str, offset: int) -> None:
        follower = self._followers.setdefault(
            target, _Follower(self._runs, self._owner, target, offset, self._policy)
        )
        task = asyncio.create_task(follower.run(self.queue.put_nowait))
        self._tasks[target] = task
        self._runs_of[task] = target
        self.running.add(task)
        self._order.following(target)
        task.add_done_callback(self.queue.put_nowait)

    def arrived(self, item: StreamedEvent) -> list[StreamedEvent]:
        """The events that may go out now that ``item`` arrived, in order."""
        return self._order.arrived(item)

    def ended(self, task: asyncio.Task[None]) -> list[StreamedEvent]:
        """The events held for the run whose follower ended (its final error raises)."""
        self.running.discard(task)
        task.result()  # a follower's final error is the watch's
        return self._order.ended(self._runs_of[task])

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    def _follow_child(self, child: str) -> None:
        # Again from where it was when a stopped child is resumed.
        current = self._tasks.get(child)
        if current is None or current.done():
            self.follow(child, 0)
