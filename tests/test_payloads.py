"""Large threads travel by reference; what cannot fit fails its run at once, clearly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RawValue
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    CompositePayloadConverter,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
)
from temporalio.converter import StorageDriverStoreContext as StoreContext
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import (
    AgentRegistry,
    AgentRunClient,
    AgentRunPlugin,
    AgentRunSettings,
    AgentSpec,
    Message,
    ScriptedAgent,
    Step,
    StepContext,
)
from agentrun._chunks import MIN_CHUNK
from agentrun._models import TurnCheckpoint
from agentrun._payload_guard import (
    CODEC_HEADROOM,
    PayloadLimit,
    PayloadTooLargeError,
    _ActivityInboundGuard,
    _ActivityOutboundGuard,
)
from agentrun._plugin import PayloadSettings, _data_converter
from agentrun._settings import load_settings, parse_size
from agentrun._storage import LocalStorageDriver, StorageSettings
from tests.conftest import registry_for_tests, server_address
from tests.helpers import child, history_events, run, script, stored_blobs

MB = 1_000_000
# An event in a run's history may hold payloads just under the storage threshold.
LARGEST_EVENT = 256 * 1024 + 16 * 1024


class BulkyAgent(ScriptedAgent):
    """A scripted agent whose ``say: "<N bytes>"`` says N bytes, so a script stays small."""

    async def step(self, ctx: StepContext) -> Step:
        step = await super().step(ctx)
        for message in step.messages:
            if message.content.startswith("<") and message.content.endswith(" bytes>"):
                message.content = "b" * int(message.content[1:-7])
        return step


def bulky(size: int) -> dict[str, str]:
    """A ``say`` step of the bulky agent."""
    return {"say": f"<{size} bytes>"}


def registry() -> AgentRegistry:
    tests = registry_for_tests()
    specs = [spec for spec in map(tests.get, tests.ids()) if spec]
    return AgentRegistry([*specs, AgentSpec(id="bulky", runtime=BulkyAgent(), allow_self=True)])


async def connect_with(env: WorkflowEnvironment, payloads: PayloadSettings) -> Client:
    return await Client.connect(
        server_address(env), plugins=[AgentRunPlugin(payloads=payloads, agents=registry())]
    )


@pytest.fixture
async def stored(env: WorkflowEnvironment, queue: str, tmp_path: Path) -> AsyncIterator[Client]:
    """A client and worker with local external storage under the test's directory."""
    client = await connect_with(env, PayloadSettings(StorageSettings.local(tmp_path / "blobs")))
    async with Worker(client, task_queue=queue):
        yield client


@pytest.fixture
async def inline(env: WorkflowEnvironment, queue: str) -> AsyncIterator[Client]:
    """A client and worker with external storage off."""
    client = await connect_with(env, PayloadSettings(StorageSettings.off()))
    async with Worker(client, task_queue=queue):
        yield client


def large_thread(total: int, parts: int = 20) -> list[Message]:
    """``total`` bytes of prior conversation, alternating user and assistant."""
    roles = ("user", "assistant")
    return [
        Message(role=roles[i % 2], content=f"{i:03d}" + "x" * (total // parts - 3))
        for i in range(parts)
    ]


async def assert_history_small(client: Client, run_id: str) -> None:
    events = await history_events(client, run_id)
    sizes = [event.ByteSize() for event in events]
    assert max(sizes) < LARGEST_EVENT, f"an event of {max(sizes)} bytes"
    assert sum(sizes) < 2 * 1024 * 1024


async def test_a_20_mb_thread_completes_by_reference_and_the_history_stays_small(
    stored: Client, queue: str, owner: str, tmp_path: Path
):
    runs = AgentRunClient(stored, queue)
    prior = large_thread(20 * MB)
    run_id = await runs.start(owner, "scripted", script({"say": "read it all"}), messages=prior)

    summary = await runs.wait(owner, run_id, timeout=120)
    assert (summary.status, summary.assistant) == ("completed", "read it all")
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    assert thread[: len(prior)] == prior
    assert sum(len(m.content) for m in thread) > 20 * MB
    await assert_history_small(stored, run_id)
    assert any((tmp_path / "blobs").rglob("*")), "nothing went to external storage"


async def test_a_child_delegated_a_large_prompt_completes_and_reports_its_large_output(
    stored: Client, queue: str, owner: str
):
    runs = AgentRunClient(stored, queue)
    said = "c" * (3 * MB)
    root = script(run("scripted", child({"say": said})), {"say": "done"})
    run_id = await runs.start(owner, "scripted", root)

    summary = await runs.wait(owner, run_id, timeout=120)
    assert (summary.status, summary.assistant) == ("completed", "done")
    child_summary = await runs.summary(owner, f"{run_id}.1-scripted")
    assert child_summary is not None
    assert (child_summary.status, child_summary.assistant) == ("completed", said)
    thread = await runs.thread(owner, run_id)
    assert thread is not None
    assert said in next(m.content for m in thread if m.role == "tool")
    await assert_history_small(stored, run_id)
    await assert_history_small(stored, f"{run_id}.1-scripted")


async def test_without_storage_a_20_mb_thread_is_refused_at_start_naming_size_and_limit(
    inline: Client, queue: str, owner: str
):
    runs = AgentRunClient(inline, queue)
    with pytest.raises(PayloadTooLargeError) as raised:
        await runs.start(
            owner, "scripted", "hi", messages=large_thread(20 * MB), run_id=f"{owner}-big"
        )
    message = str(raised.value)
    assert "The input of workflow" in message
    assert "20.0 MiB" in message or "19.1 MiB" in message
    assert "2.0 MiB" in message
    assert "AGENTRUN_STORAGE" in message
    with pytest.raises(RPCError):
        await inline.get_workflow_handle(f"{owner}-big").describe()


async def test_without_storage_an_oversized_agent_output_fails_the_run_at_once(
    inline: Client, queue: str, owner: str
):
    runs = AgentRunClient(inline, queue)
    run_id = await runs.start(owner, "bulky", script(bulky(3 * MB)))

    summary = await runs.wait(owner, run_id, timeout=60)
    assert summary.status == "failed"
    assert summary.error is not None
    assert "MiB" in summary.error and "2.0 MiB" in summary.error, summary.error
    # At once: its turn ran once, not again and again until a retry limit.
    events = await history_events(inline, run_id)
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in events
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert attempts == [1], attempts
    description = await inline.get_workflow_handle(run_id).describe()
    assert description.status == WorkflowExecutionStatus.FAILED


async def test_without_storage_a_thread_grown_past_the_limit_fails_the_run_not_the_task(
    inline: Client, queue: str, owner: str
):
    runs = AgentRunClient(inline, queue)
    hello = run("scripted", child({"say": "hi"}))
    steps = (bulky(1_100_000), hello, bulky(1_100_000), hello, {"say": "never"})
    run_id = await runs.start(owner, "bulky", script(*steps))

    summary = await runs.wait(owner, run_id, timeout=60)
    assert summary.status == "failed"
    assert summary.error is not None
    assert "MiB, over the 2.0 MiB of Temporal's limit" in summary.error, summary.error
    assert "AGENTRUN_STORAGE" in summary.error
    description = await inline.get_workflow_handle(run_id).describe()
    assert description.status == WorkflowExecutionStatus.FAILED


# --- the local driver and the settings ----------------------------------------------


async def test_local_driver_stores_each_content_once_atomically_and_reads_it_back(
    tmp_path: Path,
):
    driver = LocalStorageDriver(tmp_path)
    payloads = [Payload(metadata={"encoding": b"json/plain"}, data=b"x" * 1000) for _ in "ab"]
    claims = await driver.store(StoreContext(), payloads)
    assert claims[0] == claims[1]
    files = stored_blobs(tmp_path)
    assert len(files) == 1 and not files[0].name.startswith(".tmp")
    [back] = await driver.retrieve(StorageDriverRetrieveContext(), claims[:1])
    assert back == payloads[0]


async def test_local_driver_names_a_missing_or_corrupt_blob_and_refuses_oversized_ones(
    tmp_path: Path,
):
    driver = LocalStorageDriver(tmp_path, max_payload_size=1024)
    [claim] = await driver.store(StoreContext(), [Payload(data=b"y" * 100)])
    [blob] = stored_blobs(tmp_path)
    blob.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="corrupt"):
        await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    blob.unlink()
    with pytest.raises(FileNotFoundError, match="AGENTRUN_STORAGE_DIR"):
        await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    with pytest.raises(PayloadTooLargeError, match=r"over the 1\.0 KiB"):
        await driver.store(StoreContext(), [Payload(data=b"z" * 2000)])
    with pytest.raises(ValueError, match="Not a local storage claim"):
        await driver.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim({"a": "b"})])


async def test_a_thread_is_stored_in_chunks_each_verified_and_named_when_missing(
    tmp_path: Path,
):
    driver = LocalStorageDriver(tmp_path)
    converter = pydantic_data_converter.payload_converter
    [payload] = converter.to_payloads([large_thread(2 * MB)])
    [claim] = await driver.store(StoreContext(), [payload])
    chunks = [blob for blob in stored_blobs(tmp_path) if blob.stat().st_size >= MIN_CHUNK]
    assert len(chunks) > 1, "a 2 MB thread is one blob"
    [back] = await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    assert back == payload
    chunks[0].write_bytes(b"tampered")
    with pytest.raises(ValueError, match="corrupt"):
        await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    chunks[0].unlink()
    with pytest.raises(FileNotFoundError, match="AGENTRUN_STORAGE_DIR"):
        await driver.retrieve(StorageDriverRetrieveContext(), [claim])


def from_environment(monkeypatch: pytest.MonkeyPatch, **variables: str) -> StorageSettings:
    """The storage the ``AGENTRUN_*`` variables configure, through the settings model."""
    for name in ("STORAGE", "STORAGE_DIR", "STORAGE_THRESHOLD", "STORAGE_MAX_PAYLOAD"):
        monkeypatch.delenv(f"AGENTRUN_{name}", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return StorageSettings.from_settings(load_settings())


def test_storage_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    local = from_environment(
        monkeypatch,
        AGENTRUN_STORAGE_DIR=str(tmp_path),
        AGENTRUN_STORAGE_THRESHOLD="64KiB",
        AGENTRUN_STORAGE_MAX_PAYLOAD="10MiB",
    )
    assert isinstance(local.driver, LocalStorageDriver)
    assert local.driver.directory == tmp_path.resolve()
    assert (local.threshold, local.max_payload_size) == (64 * 1024, 10 * 1024 * 1024)
    assert from_environment(monkeypatch, AGENTRUN_STORAGE="OFF").driver is None
    assert (parse_size("2m"), parse_size("300")) == (2 * 1024 * 1024, 300)
    described = PayloadSettings(local).describe()
    assert described == f"payloads from 64.0 KiB stored in {tmp_path.resolve()}; not encrypted"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"AGENTRUN_STORAGE": "tape"},
            "AGENTRUN_STORAGE='tape': Input should be 'local', 's3' or 'off'",
        ),
        ({"AGENTRUN_STORAGE": "s3"}, "AGENTRUN_STORAGE=s3 needs AGENTRUN_S3_BUCKET"),
        (
            {"AGENTRUN_STORAGE_THRESHOLD": "big"},
            "AGENTRUN_STORAGE_THRESHOLD='big': expected bytes, or a number with KiB",
        ),
    ],
)
def test_bad_storage_settings_name_the_variable(
    environ: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
):
    with pytest.raises(ValueError) as raised:
        from_environment(monkeypatch, **environ)
    assert expected in str(raised.value)


# --- S3, against moto's S3 server on loopback ---------------------------------------


async def test_s3_storage_carries_a_large_thread(
    env: WorkflowEnvironment, queue: str, owner: str, s3_bucket: Any
):
    settings = StorageSettings.from_settings(
        AgentRunSettings(storage="s3", s3_bucket="agentrun-payloads")
    )
    client = await connect_with(env, PayloadSettings(settings))
    runs = AgentRunClient(client, queue)
    prior = large_thread(4 * MB, parts=4)
    async with Worker(client, task_queue=queue):
        run_id = await runs.start(owner, "scripted", script({"say": "ok"}), messages=prior)
        summary = await runs.wait(owner, run_id, timeout=120)
        thread = await runs.thread(owner, run_id)
    assert (summary.status, summary.assistant) == ("completed", "ok")
    assert thread is not None and thread[:4] == prior
    await assert_history_small(client, run_id)
    listed = await asyncio.to_thread(s3_bucket.list_objects_v2, Bucket="agentrun-payloads")
    assert listed["KeyCount"] > 0


async def test_a_heartbeat_is_checked_once_per_new_checkpoint_and_an_oversized_one_refused():
    sent: list[tuple[Any, ...]] = []

    class Sdk:  # the end of the interceptor chain: what would go to the server
        def heartbeat(self, *details: Any) -> None:
            sent.append(details)

    limit = PayloadLimit(
        CODEC_HEADROOM + 1000, "a test's limit", pydantic_data_converter.payload_converter
    )
    guard = _ActivityOutboundGuard(Sdk(), limit)  # type: ignore[arg-type]
    small = {"steps": 1}

    @activity.defn
    async def beats() -> None:
        guard.heartbeat(small)
        guard.heartbeat(small)  # the same checkpoint again: not encoded again
        with pytest.raises(
            PayloadTooLargeError, match="heartbeat details \\(checkpoint\\) of activity"
        ):
            guard.heartbeat({"steps": 2, "text": "x" * 2000})
        # A turn's checkpoint comes encoded already (activities/_beat.py): checked as is.
        encoded = pydantic_data_converter.payload_converter.to_payload({"text": "x" * 2000})
        with pytest.raises(PayloadTooLargeError, match="heartbeat details"):
            guard.heartbeat(RawValue(encoded))

    await ActivityEnvironment().run(beats)
    assert sent == [(small,), (small,)]


def test_every_payload_converter_a_worker_builds_shares_one_json_converter(tmp_path: Path):
    """With external storage on, the SDK builds the payload converter again for each
    task it serializes (an activity's start, result and heartbeats, a workflow
    activation): each decodes with the type adapters the first one built, and encodes
    as pydantic's converter does."""
    converter = _data_converter(None, PayloadSettings(StorageSettings.local(tmp_path)))
    assert converter.external_storage is not None
    one, other = converter.payload_converter_class(), converter.payload_converter_class()
    assert isinstance(one, CompositePayloadConverter)
    assert isinstance(other, CompositePayloadConverter)
    assert one is not other
    assert one.converters[b"json/plain"] is other.converters[b"json/plain"]
    pydantics = PydanticPayloadConverter()
    assert list(one.converters) == list(pydantics.converters)
    value = TurnCheckpoint(steps=3, messages=[Message(role="assistant", content="hi")])
    [ours], [theirs] = one.to_payloads([value]), pydantics.to_payloads([value])
    assert ours == theirs
    assert other.from_payloads([ours], [TurnCheckpoint]) == [value]


async def test_an_activity_result_is_encoded_once_for_its_check_and_for_the_sdk():
    """The guard encodes a result to check its size; the SDK sends that encoding as it
    is (a ``RawValue``) instead of encoding the result again."""
    encoded: list[Any] = []

    class Counting(CompositePayloadConverter):
        def __init__(self) -> None:
            super().__init__(*PydanticPayloadConverter().converters.values())

        def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
            encoded.extend(values)
            return super().to_payloads(values)

    result = TurnCheckpoint(steps=2, messages=[Message(role="assistant", content="hi")])

    class Activity:  # the end of the interceptor chain: the activity's own code
        async def execute_activity(self, input: Any) -> Any:
            return result

    limit = PayloadLimit(CODEC_HEADROOM + 100_000, "a test's limit", Counting())
    guard = _ActivityInboundGuard(Activity(), limit)  # type: ignore[arg-type]

    @activity.defn
    async def guarded() -> Any:
        return await guard.execute_activity(None)  # type: ignore[arg-type]

    sent = await ActivityEnvironment().run(guarded)
    assert encoded == [result]
    assert isinstance(sent, RawValue)
    assert pydantic_data_converter.payload_converter.to_payloads([sent]) == [sent.payload]
    decoded = pydantic_data_converter.payload_converter.from_payload(sent.payload, TurnCheckpoint)
    assert decoded == result
