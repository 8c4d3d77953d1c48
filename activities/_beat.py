"""A running turn's beat: flushes its events, then heartbeats its checkpoint.

One loop does both, in that order, so a heartbeated checkpoint never runs ahead
of the events on the stream: a retry resumes from it and re-publishes only what the
dead attempt had not flushed. The events a turn has not sent when it ends go back in
its result instead (the workflow publishes them): a short turn costs no signal at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.contrib.workflow_streams import TopicHandle, WorkflowStreamClient
from temporalio.service import RPCError

from agentrun._constants import (
    FOLLOWERS_CHECK_EVERY,
    FOLLOWERS_CHECK_MAX,
    FOLLOWERS_FIRST_RECHECK,
    FOLLOWERS_QUIET_CHECKS,
    HEARTBEAT_EVERY,
    QUERY_STREAM_POLLS,
)
from agentrun._models import AgentEvent, EncodedCheckpoint, TurnCheckpoint, TurnInput

logger = logging.getLogger(__name__)


class Progress:
    """The turn's latest checkpoint, and its events not yet sent. The checkpoint's
    messages are also how readers see the turn's latest text (``agentrun._live_text``)."""

    def __init__(self, checkpoint: TurnCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.unsent: list[AgentEvent] = []
        self.wake = asyncio.Event()  # set when an event is added to ``unsent``


@dataclasses.dataclass(frozen=True)
class Batching:
    """How often a turn sends its events: while someone follows the run (for latency)
    and while nobody does (for history: each batch is a signal, four history events)."""

    followed: timedelta
    unwatched: timedelta


class _Followers:
    """Whether anyone follows the run: its followers' polls of the stream keep moving.

    Asks the run (query ``stream_polls``: no history) when the turn has its first
    events to send; while it has not been polled, again after
    ``FOLLOWERS_FIRST_RECHECK`` and twice as late each time; every
    ``FOLLOWERS_CHECK_EVERY`` while followed (until ``FOLLOWERS_QUIET_CHECKS`` answers
    in a row saw no poll); while nobody follows, each answer doubles the pause, up to
    ``FOLLOWERS_CHECK_MAX``. Only
    while the turn still has events to send: a query is a task on the worker and a
    trip through the server: a hundred sleeping turns asking every second held back a
    tree's start and stop, and a hundred streaming ones the start of other runs
    (BENCHMARKS.md, running turns). A run polled at all since its worker took it
    counts as followed at first; until the first answer, the turn streams as if
    unwatched (its first event still goes at once), unless the run's starter said it
    follows (``TurnInput.followed``).
    """

    def __init__(self, handle: WorkflowHandle[Any, Any], followed: bool) -> None:
        self._handle = handle
        self.followed = followed
        self._polls: int | None = None
        self._quiet = 0  # answers in a row that saw no poll
        self.sending = asyncio.Event()  # set by the beat when it has events to send

    async def watch(self) -> None:
        pause = 0.0
        while True:
            await asyncio.sleep(pause)
            await self.sending.wait()
            self.sending.clear()
            first = self._polls is None
            try:
                polls = await self._handle.query(
                    QUERY_STREAM_POLLS, result_type=int, rpc_timeout=timedelta(seconds=5)
                )
            except WorkflowQueryFailedError:
                self.followed = True  # a run of an older version: stream as it did
                return
            except RPCError:
                # Busy or away: keep the last answer, and ask a busy server less often.
                pause = _longer(pause)
                continue
            # First: polled at all (``agentrun run`` follows from the start); then: moved.
            moved = polls > 0 if first else polls != self._polls
            self._quiet = 0 if moved else self._quiet + 1
            self.followed = moved or (self.followed and self._quiet < FOLLOWERS_QUIET_CHECKS)
            self._polls = polls
            pause = _next_pause(pause, polled=polls > 0, followed=self.followed)


def _next_pause(pause: float, *, polled: bool, followed: bool) -> float:
    """The pause before the next question: soon and then twice as late while the run
    has not been polled yet, a second while followed, doubling while nobody follows."""
    if followed:
        return FOLLOWERS_CHECK_EVERY
    if not polled and pause < FOLLOWERS_CHECK_EVERY:
        return max(FOLLOWERS_FIRST_RECHECK, pause * 2)
    return _longer(pause)


def _longer(pause: float) -> float:
    return min(FOLLOWERS_CHECK_MAX, max(FOLLOWERS_CHECK_EVERY, pause * 2))


@contextlib.asynccontextmanager
async def beating(
    progress: Progress,
    stream: WorkflowStreamClient,
    topic: TopicHandle[AgentEvent],
    handle: WorkflowHandle[Any, Any],
    turn: TurnInput,
    batching: Batching,
) -> AsyncIterator[None]:
    """Beat from the first moment until the turn returns; then wait for the batch in
    flight, and leave the events never sent in ``progress.unsent``.

    Heartbeats go out every ``HEARTBEAT_EVERY`` at most (cancels arrive only with their
    responses); events go out every ``batching.followed`` while someone follows the run,
    else every ``batching.unwatched`` (a signal each, so a longer batch is less history
    and later events).
    """
    clock = asyncio.get_running_loop().time
    followers = _Followers(handle, turn.followed)

    def every() -> float:
        chosen = batching.followed if followers.followed else batching.unwatched
        return chosen.total_seconds()

    async def beat() -> None:
        # The first heartbeat after one beat: a turn over by then sends none at all
        # (each is a write on the server); a silent turn still times out only after
        # its heartbeat timeout.
        durable, flushed_at, beaten_at = progress.checkpoint, -every(), clock()
        details = _details(durable)
        while True:
            now, latest = clock(), progress.checkpoint
            if progress.unsent:
                followers.sending.set()
            if progress.unsent and now - flushed_at >= every():
                sending, progress.unsent = progress.unsent, []
                for event in sending:
                    topic.publish(event)
                flushed_at = now
            latest_sent = not progress.unsent  # every event of ``latest`` is handed over
            try:
                await stream.flush()  # at once when nothing was handed over
                if latest_sent and latest is not durable:
                    durable, details = latest, _details(latest)
            except RPCError as err:  # the server is away: beat the last durable one
                logger.warning("Turn of %s could not flush its events: %s", turn.run_id, err)
            if now - beaten_at >= HEARTBEAT_EVERY:
                activity.heartbeat(details)
                beaten_at = now
            await _until_due(progress, beaten_at + HEARTBEAT_EVERY, flushed_at + every(), clock)

    task = asyncio.create_task(beat())
    watching = asyncio.create_task(followers.watch())
    try:
        yield
    finally:
        task.cancel()
        watching.cancel()
    # Only on a normal return (a failed attempt's retry re-publishes): the beat is over
    # before the events it never sent are read, and the batch it sent is confirmed.
    await asyncio.gather(task, watching, return_exceptions=True)
    await stream.flush()


def _details(checkpoint: TurnCheckpoint) -> EncodedCheckpoint:
    """The checkpoint as heartbeat details, encoded once: the turn beats it until it
    changes, and the SDK encodes the details of every heartbeat (a ``RawValue`` passes
    through; a codec still applies). A retry reads it back as JSON."""
    payload = activity.payload_converter().to_payload(checkpoint)
    return EncodedCheckpoint(payload, steps=checkpoint.steps)


async def _until_due(
    progress: Progress, next_beat: float, next_batch: float, clock: Callable[[], float]
) -> None:
    """Sleep until the next batch or heartbeat is due. A quiet turn wakes for its next
    heartbeat, or at once when an event arrives (the first after a pause goes at once)."""
    progress.wake.clear()
    if progress.unsent:
        await asyncio.sleep(max(0.0, min(next_beat, next_batch) - clock()))
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, next_beat - clock())):
            await progress.wake.wait()
