"""Poison from any client of the namespace: never a task retried forever, never a lie.

Each test sends what an adversarial review sent (docs/reliability.md, "What no client
can do to a run"): a malformed stream publish, a signal or a start input that is an
external-storage reference no blob answers, a tool call nested past what a result can
carry. The run goes on, or closes saying how; its workflow task is not left retrying.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RawValue
from temporalio.converter import JSONProtoPayloadConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, AgentRunPlugin
from agentrun._constants import DELEGATION_STATUS, SIGNAL_CHILD_SETTLED, WORKFLOW_TYPE
from agentrun._plugin import PayloadSettings
from agentrun._storage import StorageSettings
from agentrun.workflows._stream_guard import STREAM_PUBLISH_SIGNAL
from tests.conftest import registry_for_tests, server_address
from tests.helpers import eventually, history_events, script

BUSY = script({"say": "waiting"}, {"sleep": 1.5}, {"say": "done"})


@pytest.fixture
async def stored(env: WorkflowEnvironment, queue: str, tmp_path: Path) -> AsyncIterator[Client]:
    """A client and worker with local external storage, as a default worker has."""
    payloads = PayloadSettings(StorageSettings.local(tmp_path / "blobs"))
    plugin = AgentRunPlugin(payloads=payloads, agents=registry_for_tests())
    client = await Client.connect(server_address(env), plugins=[plugin])
    async with Worker(client, task_queue=queue):
        yield client


async def task_failures(client: Client, run_id: str) -> int:
    events = await history_events(client, run_id)
    return sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in events)


async def closed_as(client: Client, run_id: str) -> tuple[WorkflowExecutionStatus | None, Any]:
    """How the run closed, by Temporal's record: its status and DelegationStatus."""

    async def describe() -> Any:
        return await client.get_workflow_handle(run_id).describe()

    found = await eventually(
        describe, lambda d: d.status != WorkflowExecutionStatus.RUNNING, timeout=60
    )
    return found.status, found.typed_search_attributes.get(DELEGATION_STATUS)


def reference(driver: str, claim: dict[str, str]) -> Payload:
    """An external-storage reference, as any client can craft one."""
    made = JSONProtoPayloadConverter().to_payload(
        ExternalStorageReference(driver_name=driver, claim_data=claim)
    )
    assert made is not None
    return made


@pytest.mark.parametrize(
    "data",
    ["!!!not base64", "/////w==", "eyJub3QiOiAiYSBwYXlsb2FkIn0="],
    ids=["not-base64", "not-a-payload", "json-not-a-payload"],
)
async def test_a_malformed_stream_publish_is_dropped_and_the_run_completes(
    runs: AgentRunClient, temporal: Client, owner: str, data: str
):
    run_id = await runs.start(owner, "scripted", BUSY)
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant)
    batch = {"items": [{"topic": "events", "data": data}], "publisher_id": "", "sequence": 0}
    await temporal.get_workflow_handle(run_id).signal(STREAM_PUBLISH_SIGNAL, batch)
    final = await runs.wait(owner, run_id, timeout=60)
    assert (final.status, final.assistant) == ("completed", "done")
    assert await closed_as(temporal, run_id) == (WorkflowExecutionStatus.COMPLETED, "completed")
    assert await task_failures(temporal, run_id) == 0


async def test_events_of_another_run_or_topic_never_reach_the_followers(
    runs: AgentRunClient, temporal: Client, owner: str
):
    run_id = await runs.start(owner, "scripted", BUSY)
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant)
    converter = temporal.data_converter.payload_converter
    forged = {"run_id": "someone-else", "epoch": 1, "kind": "finish"}
    for topic, event in (("events", forged), ("other", {**forged, "run_id": run_id})):
        payload = converter.to_payloads([event])[0]
        entry = {"topic": topic, "data": _base64(payload)}
        batch = {"items": [entry], "publisher_id": "", "sequence": 0}
        await temporal.get_workflow_handle(run_id).signal(STREAM_PUBLISH_SIGNAL, batch)
    await runs.wait(owner, run_id, timeout=60)
    seen = [item.event async for item in runs.events(owner, run_id)]
    assert {event.run_id for event in seen} == {run_id}
    assert [event.kind for event in seen].count("finish") == 1


async def test_a_signal_that_is_a_reference_no_blob_answers_is_dropped(
    stored: Client, queue: str, owner: str
):
    runs = AgentRunClient(stored, queue)
    run_id = await runs.start(owner, "scripted", BUSY)
    await eventually(lambda: runs.summary(owner, run_id), lambda s: s and s.assistant)
    handle = stored.get_workflow_handle(run_id)
    crafted = [
        reference("agentrun.local", {"sha256": "0" * 64}),  # no such blob
        reference("agentrun.local", {"path": "/etc/passwd"}),  # not a claim of that driver
        reference("nobody.s3", {"key": "x"}),  # no such driver
    ]
    for payload in crafted:
        await handle.signal(SIGNAL_CHILD_SETTLED, RawValue(payload))
    final = await runs.wait(owner, run_id, timeout=60)
    assert (final.status, final.assistant) == ("completed", "done")
    assert await task_failures(stored, run_id) == 0


@pytest.mark.parametrize(
    ("driver", "claim", "reason"),
    [
        ("agentrun.local", {}, "Not a local storage claim"),
        ("agentrun.local", {"sha256": "f" * 64}, "is not in"),
        ("unknown.driver", {"key": "k"}, "no storage driver named 'unknown.driver'"),
    ],
    ids=["missing-hash", "missing-blob", "unknown-driver"],
)
async def test_a_start_input_that_is_an_unreadable_reference_fails_the_run_at_once(
    stored: Client, queue: str, driver: str, claim: dict[str, str], reason: str
):
    run_id = f"poison-{uuid.uuid4().hex[:8]}"
    await stored.start_workflow(
        WORKFLOW_TYPE, RawValue(reference(driver, claim)), id=run_id, task_queue=queue
    )
    status, _ = await closed_as(stored, run_id)
    assert status == WorkflowExecutionStatus.FAILED
    events = await history_events(stored, run_id)
    (failed,) = [
        e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    ]
    message = failed.workflow_execution_failed_event_attributes.failure.message
    assert "a payload that cannot be read" in message and reason in message, message
    assert await task_failures(stored, run_id) == 0


async def test_a_tool_call_nested_too_deep_to_read_fails_the_run_saying_so(
    runs: AgentRunClient, temporal: Client, owner: str
):
    deep: Any = "bottom"
    for _ in range(250):
        deep = {"a": deep}
    run_id = await runs.start(owner, "scripted", script({"tool": "add", "args": {"x": deep}}))
    final = await runs.wait(owner, run_id, timeout=60)
    assert final.status == "failed"
    assert final.error and "could not read its turn's result" in final.error, final.error
    assert await closed_as(temporal, run_id) == (WorkflowExecutionStatus.FAILED, "failed")


def _base64(payload: Payload) -> str:
    return base64.b64encode(payload.SerializeToString()).decode()
