"""Following a run's event stream with queries: live while it runs, then to its end.

The stream library's own subscription (``WorkflowStreamClient.subscribe``) long-polls
with a workflow update, and an update is written to the run's history: five events a
poll, more than the events it delivers at a steady 100 a second. A follower here reads
with the stream's documented poll *query* instead (``__temporal_workflow_stream_poll``,
the read the library itself makes of a closed run): a query leaves no history. It polls
fast while events flow and backs off while the run is quiet.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.workflow_streams import PollInput, PollResult
from temporalio.service import RPCError, RPCStatusCode

from agentrun._constants import EVENTS_TOPIC
from agentrun._models import AgentEvent

POLL_QUERY = "__temporal_workflow_stream_poll"
# Seconds between polls: the shortest while events flow (and for a second after the
# last), then doubling up to the longest. A quiet run costs a follower two queries a
# second; a streaming one forty.
FOLLOW_POLL_FASTEST = 0.025
FOLLOW_POLL_SLOWEST = 0.5
FOLLOW_QUIET_AFTER = 1.0


async def follow(
    client: Client, run_id: str, from_offset: int = 0
) -> AsyncIterator[tuple[int, AgentEvent]]:
    """``(offset, event)`` of the run's events from ``from_offset`` until it closes.

    Follows continue-as-new (the query reaches the run's latest execution, which
    carries the stream) and ends once the latest execution has closed and its last
    events are read.
    """
    handle = client.get_workflow_handle(run_id)
    converter = client.data_converter.payload_converter
    clock = asyncio.get_running_loop().time
    offset, pause, check, heard = from_offset, FOLLOW_POLL_FASTEST, False, clock()
    while True:
        # Closed before this read, so the read drains everything the run published.
        closed = check and await _closed(client, run_id)
        result: PollResult = await handle.query(
            POLL_QUERY, PollInput(topics=[EVENTS_TOPIC], from_offset=offset), result_type=PollResult
        )
        finished = False
        for item in result.items:
            # The documented wire form of a stream item: base64 of a serialized Payload.
            event: AgentEvent = converter.from_payload(
                Payload.FromString(base64.b64decode(item.data)), AgentEvent
            )
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


async def _closed(client: Client, run_id: str) -> bool:
    try:
        description = await client.get_workflow_handle(run_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return description.status != WorkflowExecutionStatus.RUNNING
