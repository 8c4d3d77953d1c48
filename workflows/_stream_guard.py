"""What a run takes on its event stream from outside: well-formed events of this run.

The stream's publish signal is open to every client of the namespace. A batch whose
data is not base64 of a ``Payload`` fails inside the stream's handler: a ``ValueError``
fails the whole run, any other error fails the workflow task, which Temporal retries
forever. A batch that decodes but is not this run's events would reach every follower.
Such a batch is dropped whole, with a warning; the run goes on. Deterministic code.

The guard also hands the latest assistant text of a batch (or a turn's retry notice)
to the run, for the Web UI's current details: display only, since any client may
publish.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.contrib.workflow_streams import PollInput, PollResult, PublishEntry, PublishInput

from agentrun._constants import EVENTS_TOPIC, QUERY_STREAM_POLLS

# The Workflow Streams publish signal and poll query (temporalio.contrib.workflow_streams).
STREAM_PUBLISH_SIGNAL = "__temporal_workflow_stream_publish"
STREAM_POLL_QUERY = "__temporal_workflow_stream_poll"
_JSON = b"json/plain"


def guard_stream_publish(run_id: str, said: Callable[[int, str], None]) -> None:
    """Put a check in front of the stream's publish handler (call after opening it);
    ``said(turn, text)`` gets the last assistant text of each batch taken."""
    publish = workflow.get_signal_handler(STREAM_PUBLISH_SIGNAL)
    if publish is None:
        raise RuntimeError("open the run's WorkflowStream before guarding it")

    def checked_publish(batch: PublishInput) -> None:
        events: list[dict[str, Any]] = []
        for index, entry in enumerate(batch.items):
            event = _entry_event(entry, run_id)
            if isinstance(event, str):
                workflow.logger.warning(
                    "Dropped a stream publish to run %s: item %d: %s", run_id, index, event
                )
                return
            events.append(event)
        publish(batch)
        _tell_last_text(events, said)

    workflow.set_signal_handler(STREAM_PUBLISH_SIGNAL, checked_publish)


def count_stream_polls() -> None:
    """Count the polls of the run's stream, for its turns (query ``stream_polls``): a
    turn sends its events fast while followers poll, and slowly while nobody does.

    The count lives in the worker's memory, not in the history: a query writes none,
    and a worker that takes the run over starts counting again from zero.
    """
    poll = workflow.get_query_handler(STREAM_POLL_QUERY)
    if poll is None:
        raise RuntimeError("open the run's WorkflowStream before counting its polls")
    polls = 0

    def counted_poll(request: PollInput) -> PollResult:
        nonlocal polls
        polls += 1
        result: PollResult = poll(request)
        return result

    def stream_polls() -> int:
        return polls

    workflow.set_query_handler(STREAM_POLL_QUERY, counted_poll)
    workflow.set_query_handler(QUERY_STREAM_POLLS, stream_polls)


def _tell_last_text(events: list[dict[str, Any]], said: Callable[[int, str], None]) -> None:
    for event in reversed(events):
        turn, kind, message = event.get("turn"), event.get("kind"), event.get("message")
        if not isinstance(turn, int):
            continue
        if kind == "turn_retrying" and isinstance(event.get("text"), str):
            said(turn, f"retrying, {event['text']}")
            return
        if kind != "message" or not isinstance(message, dict):
            continue
        text = message.get("content")
        if message.get("role") == "assistant" and isinstance(text, str) and text:
            said(turn, f"said: {text}")
            return


def _entry_event(entry: PublishEntry, run_id: str) -> dict[str, Any] | str:
    """The entry's event, or what is wrong with it."""
    if entry.topic != EVENTS_TOPIC:
        return f"topic {entry.topic[:40]!r} is not {EVENTS_TOPIC!r}"
    try:
        payload = Payload.FromString(base64.b64decode(entry.data, validate=True))
    except (binascii.Error, ValueError, DecodeError, TypeError):
        return "data is not a base64-encoded Payload"
    if payload.metadata.get("encoding") != _JSON:
        return "data is not JSON"
    try:
        event = json.loads(payload.data)
    except ValueError:
        return "data is not JSON"
    # Kinds are not checked: a newer worker may publish kinds this code does not know.
    if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
        return "data is not an agentrun event"
    if event.get("run_id") != run_id:
        return f"an event of run {str(event.get('run_id'))[:80]!r}"
    return event
