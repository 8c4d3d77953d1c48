"""What a run takes on its event stream from outside: well-formed events of this run.

The stream's publish signal is open to every client of the namespace. A batch whose
data is not base64 of a ``Payload`` fails inside the stream's handler: a ``ValueError``
fails the whole run, any other error fails the workflow task, which Temporal retries
forever. A batch that decodes but is not this run's events would reach every follower.
Such a batch is dropped whole, with a warning; the run goes on. Deterministic code.
"""

from __future__ import annotations

import base64
import binascii
import json

from google.protobuf.message import DecodeError
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.contrib.workflow_streams import PublishEntry, PublishInput

from agentrun._constants import EVENTS_TOPIC

# The Workflow Streams publish signal (temporalio.contrib.workflow_streams).
STREAM_PUBLISH_SIGNAL = "__temporal_workflow_stream_publish"
_JSON = b"json/plain"


def guard_stream_publish(run_id: str) -> None:
    """Put a check in front of the stream's publish handler (call after opening it)."""
    publish = workflow.get_signal_handler(STREAM_PUBLISH_SIGNAL)
    if publish is None:
        raise RuntimeError("open the run's WorkflowStream before guarding it")

    def checked_publish(batch: PublishInput) -> None:
        problem = _batch_problem(batch, run_id)
        if problem is not None:
            workflow.logger.warning("Dropped a stream publish to run %s: %s", run_id, problem)
            return
        publish(batch)

    workflow.set_signal_handler(STREAM_PUBLISH_SIGNAL, checked_publish)


def _batch_problem(batch: PublishInput, run_id: str) -> str | None:
    for index, entry in enumerate(batch.items):
        problem = _entry_problem(entry, run_id)
        if problem is not None:
            return f"item {index}: {problem}"
    return None


def _entry_problem(entry: PublishEntry, run_id: str) -> str | None:
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
    return None
