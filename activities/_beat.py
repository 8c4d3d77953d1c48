"""A running turn's beat: flushes its events, heartbeats its checkpoint, reports output.

One loop does all three, in that order, so a heartbeated checkpoint never runs ahead
of the events on the stream: a retry resumes from it and re-publishes only what the
dead attempt had not flushed. The events a turn has not sent when it ends go back in
its result instead (the workflow publishes them): a short turn costs no signal at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.contrib.workflow_streams import TopicHandle, WorkflowStreamClient
from temporalio.service import RPCError

from agentrun._agents import Step
from agentrun._constants import HEARTBEAT_EVERY, OUTPUT_REPORT_EVERY, SIGNAL_ASSISTANT_OUTPUT
from agentrun._models import AgentEvent, AssistantOutput, TurnCheckpoint, TurnInput

logger = logging.getLogger(__name__)


class Progress:
    """The turn's latest checkpoint, events not yet sent, and assistant text."""

    def __init__(self, checkpoint: TurnCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.unsent: list[AgentEvent] = []
        self.wake = asyncio.Event()  # set when an event is added to ``unsent``
        self.output: str | None = None


def last_text(step: Step) -> str | None:
    """The step's last assistant text, if it said any."""
    texts = [m.content for m in step.messages if m.role == "assistant" and m.content]
    return texts[-1] if texts else None


class _OutputReporter:
    """Tells the run its latest assistant text, so ``agent_output`` sees it mid-turn.

    At most one signal per ``OUTPUT_REPORT_EVERY`` (the first at once): every signal is
    history, and an agent that says something every step would double its history.
    """

    def __init__(self, handle: WorkflowHandle[Any, Any], turn: TurnInput) -> None:
        self._handle = handle
        self._turn = turn
        self._sent: str | None = None
        self._sent_at = -OUTPUT_REPORT_EVERY

    async def report(self, text: str | None, now: float) -> None:
        if text is None or text == self._sent or now - self._sent_at < OUTPUT_REPORT_EVERY:
            return
        output = AssistantOutput(epoch=self._turn.epoch, turn=self._turn.turn, text=text)
        await self._handle.signal(SIGNAL_ASSISTANT_OUTPUT, output)
        self._sent, self._sent_at = text, now


@contextlib.asynccontextmanager
async def beating(
    progress: Progress,
    stream: WorkflowStreamClient,
    topic: TopicHandle[AgentEvent],
    handle: WorkflowHandle[Any, Any],
    turn: TurnInput,
    batch: timedelta,
) -> AsyncIterator[None]:
    """Beat from the first moment until the turn returns; then wait for the batch in
    flight, and leave the events never sent in ``progress.unsent``.

    Heartbeats go out every ``HEARTBEAT_EVERY`` at most (cancels arrive only with their
    responses); events go out every ``batch`` (a signal each, so a longer batch is less
    history and later events).
    """
    reporter = _OutputReporter(handle, turn)
    clock = asyncio.get_running_loop().time
    every = batch.total_seconds()

    async def beat() -> None:
        # The first heartbeat after one beat: a turn over by then sends none at all
        # (each is a write on the server); a silent turn still times out only after
        # its heartbeat timeout.
        durable, flushed_at, beaten_at = progress.checkpoint, -every, clock()
        details = durable.model_dump(mode="json")
        while True:
            now, latest = clock(), progress.checkpoint
            if progress.unsent and now - flushed_at >= every:
                sending, progress.unsent = progress.unsent, []
                for event in sending:
                    topic.publish(event)
                flushed_at = now
            latest_sent = not progress.unsent  # every event of ``latest`` is handed over
            try:
                await stream.flush()  # at once when nothing was handed over
                if latest_sent and latest is not durable:
                    durable, details = latest, latest.model_dump(mode="json")
                await reporter.report(progress.output, now)
            except RPCError as err:  # the server is away: beat the last durable one
                logger.warning("Turn of %s could not flush its events: %s", turn.run_id, err)
            if now - beaten_at >= HEARTBEAT_EVERY:
                activity.heartbeat(details)
                beaten_at = now
            await _until_due(progress, beaten_at + HEARTBEAT_EVERY, flushed_at + every, clock)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
    # Only on a normal return (a failed attempt's retry re-publishes): the beat is over
    # before the events it never sent are read, and the batch it sent is confirmed.
    await asyncio.gather(task, return_exceptions=True)
    await stream.flush()


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
