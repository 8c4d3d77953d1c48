"""Following a run's event stream with queries: live while it runs, then to its end.

The stream library's own subscription (``WorkflowStreamClient.subscribe``) long-polls
with a workflow update, and an update is written to the run's history: five events a
poll, more than the events it delivers at a steady 100 a second. A follower here reads
with the stream's documented poll *query* instead (``__temporal_workflow_stream_poll``,
the read the library itself makes of a closed run): a query leaves no history. It polls
fast while events flow and backs off while the run is quiet. A poll not answered
within ``FOLLOW_HEDGE_AFTER`` is sent again and the first answer taken: now and then
one query waits a second behind the run's own workflow tasks while the next is
answered at once (BENCHMARKS.md, streaming).

A newer worker may publish what this version cannot read: an event of a kind it does
not know is delivered with that kind's name and whatever text it has, and an item
that is no event at all (not JSON, not an object) is skipped. Its offset is passed
all the same, so a follower never stops on it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.workflow_streams import PollInput, PollResult
from temporalio.converter import PayloadConverter
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import EVENTS_TOPIC
from agentrun._models import AgentEvent

_T = TypeVar("_T")

POLL_QUERY = "__temporal_workflow_stream_poll"
# Seconds between polls: the shortest while events flow (and for three seconds after
# the last), then doubling up to the longest. A quiet run costs a follower two queries
# a second; a streaming one forty. Three seconds, not one: a run's first text often
# comes a second or two after its ``run_started`` (its turn's activity starts, the
# model answers), and a follower that had backed off read it up to a second late.
FOLLOW_POLL_FASTEST = 0.025
FOLLOW_POLL_SLOWEST = 0.5
FOLLOW_QUIET_AFTER = 3.0
# Seconds before a poll still unanswered is sent once more (a hedged request): three
# times a poll's usual answer on a busy machine, so a quick run seldom sends one.
FOLLOW_HEDGE_AFTER = 0.15


async def follow(
    client: Client, run_id: str, from_offset: int = 0
) -> AsyncIterator[tuple[int, AgentEvent]]:
    """``(offset, event)`` of the run's events from ``from_offset`` until it closes.

    Follows continue-as-new (the query reaches the run's latest execution, which
    carries the stream) and ends once the latest execution has closed and its last
    events are read.
    """
    handle = client.get_workflow_handle(run_id)

    async def poll() -> PollResult:
        result: PollResult = await handle.query(
            POLL_QUERY, PollInput(topics=[EVENTS_TOPIC], from_offset=offset), result_type=PollResult
        )
        return result

    converter = client.data_converter.payload_converter
    clock = asyncio.get_running_loop().time
    offset, pause, check, heard = from_offset, FOLLOW_POLL_FASTEST, False, clock()
    while True:
        # Closed before this read, so the read drains everything the run published.
        closed = check and await _closed(client, run_id)
        result = await _hedged(poll)
        finished = False
        for item in result.items:
            event = _event(converter, item.data, run_id)
            if event is None:
                continue
            finished = finished or event.kind == "finish"
            yield item.offset, event
        offset = result.next_offset
        if result.more_ready:
            continue
        if closed and not result.items:
            return
        if result.items:
            heard = clock()
        quiet = clock() - heard >= FOLLOW_QUIET_AFTER
        pause = min(pause * 2, FOLLOW_POLL_SLOWEST) if quiet else FOLLOW_POLL_FASTEST
        # A quiet run may have closed: look once it has been quiet a while, or at once
        # after its last event.
        check = finished or pause >= FOLLOW_POLL_SLOWEST
        if not finished:
            await asyncio.sleep(pause)


async def _hedged(poll: Callable[[], Awaitable[_T]]) -> _T:
    """``poll()``'s answer; if none within ``FOLLOW_HEDGE_AFTER``, the first of it and a
    second ``poll()``. A failed one waits for the other; the one left is cancelled."""
    pending = {asyncio.ensure_future(poll())}
    done, pending = await asyncio.wait(pending, timeout=FOLLOW_HEDGE_AFTER)
    if not done:
        pending.add(asyncio.ensure_future(poll()))
    try:
        while not done or (all(task.exception() for task in done) and pending):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pending:
            task.cancel()
    answered = [task for task in done if not task.exception()]
    return (answered or list(done))[0].result()


async def _closed(client: Client, run_id: str) -> bool:
    try:
        description = await client.get_workflow_handle(run_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return description.status != WorkflowExecutionStatus.RUNNING


def _event(converter: PayloadConverter, data: str, run_id: str) -> AgentEvent | None:
    """A stream item as an event, leniently; None for one that is no event at all."""
    try:
        # The documented wire form of a stream item: base64 of a serialized Payload.
        payload = Payload.FromString(base64.b64decode(data))
    except (binascii.Error, DecodeError, ValueError):
        return None
    try:
        # Not JSON (binary/plain) comes back as bytes, whatever type is asked for.
        event: object = converter.from_payload(payload, AgentEvent)
        if isinstance(event, AgentEvent):
            return event
    except (ValueError, TypeError, RuntimeError):
        pass  # a newer worker's event, or an encoding this converter does not know
    try:
        raw: object = converter.from_payload(payload)
    except (ValueError, TypeError, RuntimeError):
        return None
    return _unknown_event(raw, run_id)


def _unknown_event(raw: object, run_id: str) -> AgentEvent | None:
    """What an event this version cannot validate says that it can: run, kind, text."""
    if not isinstance(raw, dict):
        return None
    kind = raw.get("kind")
    if not isinstance(kind, str) or not kind:
        return None
    text, epoch, source = raw.get("text"), raw.get("epoch"), raw.get("run_id")
    return AgentEvent(
        run_id=source if isinstance(source, str) else run_id,
        epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0,
        kind=kind,
        text=text if isinstance(text, str) else None,
    )
