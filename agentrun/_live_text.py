"""A running turn's latest assistant text, read from the checkpoint it heartbeats.

A turn heartbeats its checkpoint (the messages of its steps so far) once their events
are on the stream, at most every 0.3 s; Temporal keeps the last one with the pending
activity, and ``describe`` returns it. Reading it costs the run nothing (no signal, no
history event), and only whoever holds the turn's activity task can write it: its
worker, or an administrator of the namespace by activity id. The run's own record takes
a turn's text only from the turn's result.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionDescription

from agentrun._constants import TURN_ACTIVITY
from agentrun._delegation import last_assistant_text
from agentrun._models import RunSummary, TurnCheckpoint

__all__ = ["live_text", "with_live_text"]

logger = logging.getLogger(__name__)


async def live_text(client: Client, description: WorkflowExecutionDescription) -> str | None:
    """The latest assistant text of the run's running turn; None if it has said none
    yet, or no turn is running."""
    for pending in description.raw_description.pending_activities:
        if pending.activity_type.name != TURN_ACTIVITY:
            continue
        payloads = pending.heartbeat_details.payloads
        if not payloads:
            return None
        try:
            details = await client.data_converter.decode(payloads[:1], [TurnCheckpoint])
            checkpoint = details[0]
        except (ValueError, ValidationError, RuntimeError) as err:
            logger.warning("Unreadable checkpoint of run %s: %s", description.id, err)
            return None
        if not isinstance(checkpoint, TurnCheckpoint):
            return None
        return last_assistant_text(checkpoint.messages)
    return None


async def with_live_text(
    client: Client, description: WorkflowExecutionDescription, summary: RunSummary
) -> RunSummary:
    """``summary`` of a running run with its running turn's latest text, if any."""
    if summary.status != "running":
        return summary
    text = await live_text(client, description)
    return summary if text is None else summary.model_copy(update={"assistant": text})
