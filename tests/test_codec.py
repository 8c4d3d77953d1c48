"""Encryption at rest: prompts and threads are unreadable in Temporal, readable with the key."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentrun import AgentRunClient, AgentRunPlugin, AgentRunSettings
from agentrun._codec import (
    CodecError,
    EncryptionCodec,
    codec_from_settings,
    generate_key,
    parse_keys,
)
from agentrun._constants import SIGNAL_ASSISTANT_OUTPUT, SIGNAL_CHILD_SETTLED, WORKFLOW_TYPE
from agentrun._plugin import PayloadSettings
from agentrun._storage import StorageSettings
from agentrun.workflows._stream_guard import STREAM_PUBLISH_SIGNAL
from tests.conftest import registry_for_tests, server_address, temporal_binary
from tests.helpers import history_events, run, script

ROOT = Path(__file__).resolve().parent.parent
UI_ORIGIN = "http://127.0.0.1:18233"


def new_key(key_id: str) -> tuple[str, bytes]:
    return key_id, os.urandom(32)


def keyless(**keys: Any) -> AgentRunSettings:
    """Settings with no key but the ones given, whatever the environment holds."""
    return AgentRunSettings(**{"encryption_keys": None, "encryption_key_file": None, **keys})


def as_env(*keys: tuple[str, bytes]) -> str:
    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in keys)


async def connect_with(
    env: WorkflowEnvironment, tmp_path: Path, *keys: tuple[str, bytes]
) -> Client:
    codec = EncryptionCodec(list(keys)) if keys else None
    settings = PayloadSettings(StorageSettings.local(tmp_path / "blobs"), codec)
    return await Client.connect(
        server_address(env),
        plugins=[AgentRunPlugin(payloads=settings, agents=registry_for_tests())],
    )


@pytest.fixture
def secret() -> str:
    """Text that must never be readable in Temporal."""
    return f"PELICAN-{uuid.uuid4().hex}"


async def stored_bytes(client: Client, run_id: str) -> bytes:
    """Everything Temporal keeps about a run: its history, description and search attributes."""
    events = await history_events(client, run_id)
    description = await client.get_workflow_handle(run_id).describe()
    raw = [event.SerializeToString() for event in events]
    raw.append(description.raw_description.SerializeToString())
    history = await client.get_workflow_handle(run_id).fetch_history()
    return b"".join(raw) + history.to_json().encode()


def key_id_of_input(events: list[Any]) -> bytes:
    started = events[0].workflow_execution_started_event_attributes
    payload = started.input.payloads[0]
    assert payload.metadata["encoding"] == b"binary/encrypted"
    return bytes(payload.metadata["encryption-key-id"])


async def test_with_the_codec_prompts_and_threads_stay_out_of_history_and_search_attributes(
    env: WorkflowEnvironment,
    runs: AgentRunClient,
    queue: str,
    owner: str,
    tmp_path: Path,
    secret: str,
):
    sealed_queue = f"{queue}-sealed"
    client = await connect_with(env, tmp_path, new_key("k1"))
    sealed = AgentRunClient(client, sealed_queue)
    prompt = script(
        {"say": f"thinking about {secret}"},
        run("scripted", f"child, look at {secret}"),
        {"fail": f"gave up on {secret}"},
    )
    async with Worker(client, task_queue=sealed_queue):
        run_id = await sealed.start(owner, "scripted", prompt)
        summary = await sealed.wait(owner, run_id, timeout=60)
        thread = await sealed.thread(owner, run_id)
        child_thread = await sealed.thread(owner, f"{run_id}.1-scripted")
    # The owner, holding the key, reads everything.
    assert summary.status == "failed" and secret in (summary.error or "")
    assert thread is not None and any(secret in m.content for m in thread)
    assert child_thread is not None and child_thread[-1].content == f"child, look at {secret}"
    # Temporal holds none of it in the clear.
    for stored_run in (run_id, f"{run_id}.1-scripted"):
        assert secret.encode() not in await stored_bytes(client, stored_run), stored_run
        description = await client.get_workflow_handle(stored_run).describe()
        attributes = [str(pair.value) for pair in description.typed_search_attributes]
        assert owner in attributes and not any(secret in value for value in attributes)
    assert key_id_of_input(await history_events(client, run_id)) == b"k1"

    # The same run without the codec: the check above would have seen the prompt.
    plain_id = await runs.start(owner, "scripted", prompt)
    await runs.wait(owner, plain_id, timeout=60)
    assert secret.encode() in await stored_bytes(runs.temporal, plain_id)


async def test_a_run_written_with_key_a_is_read_after_key_b_is_added_first(
    env: WorkflowEnvironment, queue: str, owner: str, tmp_path: Path, secret: str
):
    a, b = new_key("a"), new_key("b")
    before = await connect_with(env, tmp_path, a)
    async with Worker(before, task_queue=queue):
        old_id = await AgentRunClient(before, queue).start(owner, "scripted", secret)
        await AgentRunClient(before, queue).wait(owner, old_id, timeout=60)

    after = await connect_with(env, tmp_path, b, a)
    runs = AgentRunClient(after, queue)
    async with Worker(after, task_queue=queue):
        thread = await runs.thread(owner, old_id)
        new_id = await runs.start(owner, "scripted", f"again {secret}")
        summary = await runs.wait(owner, new_id, timeout=60)
    assert thread is not None and thread[-1].content == secret
    assert summary.assistant == f"again {secret}"
    assert key_id_of_input(await history_events(after, old_id)) == b"a"
    assert key_id_of_input(await history_events(after, new_id)) == b"b"


async def test_a_missing_or_wrong_key_is_a_clear_error_that_never_shows_the_key(
    env: WorkflowEnvironment, queue: str, owner: str, tmp_path: Path
):
    a = new_key("a")
    writer = await connect_with(env, tmp_path, a)
    async with Worker(writer, task_queue=queue):
        run_id = await AgentRunClient(writer, queue).start(owner, "scripted", "hello")
        await AgentRunClient(writer, queue).wait(owner, run_id, timeout=60)

    only_b = await connect_with(env, tmp_path, new_key("b"))
    with pytest.raises(CodecError, match=r"key id 'a', which is not configured \(configured: b\)"):
        await only_b.get_workflow_handle(run_id).result()
    other_a = await connect_with(env, tmp_path, new_key("a"))
    with pytest.raises(CodecError, match="does not decrypt with the configured key"):
        await other_a.get_workflow_handle(run_id).result()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:!!!!", "the key of 'a' is not base64"),
        ("nocolon", "entry 1 is not 'kid:base64key'"),
        ("a:" + base64.b64encode(b"short").decode(), "'a' is 5 bytes: AES-GCM needs 16, 24 or 32"),
        ("bad id:" + base64.b64encode(bytes(32)).decode(), "key id 'bad id' is not valid"),
        (" , ", "has no key"),
    ],
)
def test_malformed_keys_are_named_by_id_never_by_value(text: str, expected: str):
    with pytest.raises(CodecError) as raised:
        codec_from_settings(AgentRunSettings(encryption_keys=text))
    assert expected in str(raised.value)
    key_text = text.partition(":")[2].strip()
    if key_text:
        assert key_text not in str(raised.value)


def test_keys_come_from_a_file_with_comments_when_the_variable_is_unset(tmp_path: Path):
    first, second = generate_key("new"), generate_key("old")
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated 2026-11\n{first}\n{second}  # until old runs close\n")
    codec = codec_from_settings(keyless(encryption_key_file=key_file))
    assert codec is not None and codec.key_ids == ["new", "old"]
    assert [kid for kid, _ in parse_keys(f"{first},{second}")] == ["new", "old"]
    assert codec_from_settings(keyless()) is None
    with pytest.raises(CodecError, match="cannot read it"):
        codec_from_settings(keyless(encryption_key_file=tmp_path / "missing"))


async def test_payloads_written_before_encryption_was_on_are_read_as_they_are():
    [plain] = pydantic_data_converter.payload_converter.to_payloads([{"prompt": "old run"}])
    codec = EncryptionCodec([new_key("k")])
    assert await codec.decode([plain]) == [plain]
    [sealed] = await codec.encode([plain])
    assert sealed.metadata["encryption-key-id"] == b"k" and b"old run" not in sealed.data


# --- the codec server ---------------------------------------------------------------


@pytest.fixture
def codec_key() -> tuple[str, bytes]:
    return new_key("ui")


@pytest.fixture
def codec_token() -> str:
    """The bearer token the codec server asks every request for."""
    return secrets.token_urlsafe(32)


@pytest.fixture
def codec_server(codec_key: tuple[str, bytes], codec_token: str, tmp_path: Path) -> Iterator[str]:
    """``agentrun codec-server`` on a free loopback port, /encode on; its URL.

    It has the key and the external storage of ``connect_with``, and ``codec_token``.
    """
    variables = {
        **os.environ,
        "AGENTRUN_ENCRYPTION_KEYS": as_env(codec_key),
        "AGENTRUN_CODEC_TOKEN": codec_token,
        "AGENTRUN_STORAGE": "local",
        "AGENTRUN_STORAGE_DIR": str(tmp_path / "blobs"),
    }
    command = [sys.executable, "-m", "agentrun.cli", "codec-server", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--web-origin", UI_ORIGIN, "--allow-encode"],
        cwd=ROOT,
        env=variables,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("Codec server on http://127.0.0.1:"), first_line
        yield first_line.split()[3]
    finally:
        process.kill()
        process.wait()


def post(
    url: str, body: bytes, token: str, origin: str | None = None
) -> tuple[int, Message, bytes]:
    headers = {
        "Content-Type": "application/json",
        "X-Namespace": "default",
        "Authorization": f"Bearer {token}",
    }
    if origin:
        headers["Origin"] = origin
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def payloads_json(*payloads: Payload) -> bytes:
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


async def test_the_codec_server_decodes_for_the_web_ui_over_http(
    codec_server: str, codec_key: tuple[str, bytes], codec_token: str, secret: str
):
    codec = EncryptionCodec([codec_key])
    [plain] = pydantic_data_converter.payload_converter.to_payloads([{"prompt": secret}])
    [sealed] = await codec.encode([plain])

    status, headers, body = await asyncio.to_thread(
        post, f"{codec_server}/decode", payloads_json(sealed), codec_token, UI_ORIGIN
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert json_format.Parse(body, Payloads()).payloads[0] == plain

    status, _, body = await asyncio.to_thread(
        post, f"{codec_server}/encode", payloads_json(plain), codec_token
    )
    [encoded] = json_format.Parse(body, Payloads()).payloads
    assert status == 200 and secret.encode() not in encoded.data
    assert (await codec.decode([encoded]))[0] == plain


async def test_the_codec_server_answers_cors_only_for_its_ui_and_names_an_unknown_key(
    codec_server: str, codec_token: str
):
    def preflight(origin: str) -> Message:
        """The headers of a browser's preflight, before it sends the token and JSON."""
        request = urllib.request.Request(
            f"{codec_server}/decode",
            method="OPTIONS",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                headers: Message = response.headers
        except urllib.error.HTTPError as err:
            headers = err.headers
        return headers

    allowed = await asyncio.to_thread(preflight, UI_ORIGIN)
    assert allowed["Access-Control-Allow-Origin"] == UI_ORIGIN
    assert "x-namespace" in allowed["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Origin" not in await asyncio.to_thread(
        preflight, "http://evil.example"
    )

    [foreign] = await EncryptionCodec([new_key("elsewhere")]).encode([Payload(data=b"x")])
    status, _, body = await asyncio.to_thread(
        post, f"{codec_server}/decode", payloads_json(foreign), codec_token
    )
    assert status == 400 and b"key id 'elsewhere', which is not configured" in body
    status, _, body = await asyncio.to_thread(
        post, f"{codec_server}/decode", b"not json", codec_token
    )
    assert status == 400


async def test_the_temporal_cli_shows_an_encrypted_run_through_the_codec_server(
    env: WorkflowEnvironment,
    queue: str,
    owner: str,
    tmp_path: Path,
    secret: str,
    codec_server: str,
    codec_key: tuple[str, bytes],
    codec_token: str,
):
    client = await connect_with(env, tmp_path, codec_key)
    runs = AgentRunClient(client, queue)
    # Over the storage threshold: the input goes to external storage, the history
    # holds a reference, and the codec server resolves it.
    stored = f"{secret} " + "x" * (300 * 1024)
    async with Worker(client, task_queue=queue):
        run_id = await runs.start(owner, "scripted", secret)
        stored_id = await runs.start(owner, "scripted", stored)
        await runs.wait(owner, run_id, timeout=60)
        await runs.wait(owner, stored_id, timeout=60)

    def show(workflow_id: str, *codec: str) -> list[str]:
        command = [temporal_binary(), "workflow", "show", "--workflow-id", workflow_id]
        command += ["--address", server_address(env), "--output", "json", *codec]
        shown = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        return payload_texts(shown)

    for workflow_id in (run_id, stored_id):
        plain = await asyncio.to_thread(show, workflow_id)
        assert not any(secret in text for text in plain)
        codec = ["--codec-endpoint", codec_server, "--codec-auth", f"Bearer {codec_token}"]
        decoded = await asyncio.to_thread(show, workflow_id, *codec)
        assert any(secret in text for text in decoded), workflow_id
    # The stored input itself came back, not only the summary that quotes its start.
    assert any(secret in text and len(text) > 300 * 1024 for text in decoded), "not resolved"


def payload_texts(history_json: str) -> list[str]:
    """The data of every payload in a history the CLI printed, as text."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "metadata" in node and isinstance(node.get("data"), str):
                found.append(base64.b64decode(node["data"]).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return found


def sealed_with_no_known_key(key_id: str) -> RawValue:
    """A payload as any client can craft one: encrypted, by its metadata, with a key
    id no worker has (or with garbage under a known one)."""
    metadata = {"encoding": b"binary/encrypted", "encryption-key-id": key_id.encode()}
    return RawValue(Payload(metadata=metadata, data=os.urandom(48)))


async def workflow_task_failures(client: Client, run_id: str) -> int:
    events = await history_events(client, run_id)
    return sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in events)


@pytest.mark.parametrize("key_id", ["nobody", "a"], ids=["unknown-key-id", "wrong-data"])
async def test_a_payload_no_key_opens_fails_only_what_carries_it(
    env: WorkflowEnvironment, queue: str, owner: str, tmp_path: Path, key_id: str
):
    client = await connect_with(env, tmp_path, new_key("a"))
    raw = env.client  # a client of the namespace with no key at all
    async with Worker(client, task_queue=queue):
        runs = AgentRunClient(client, queue)
        busy = await runs.start(owner, "scripted", script({"sleep": 1.5}, {"say": "done"}))
        for signal in (SIGNAL_CHILD_SETTLED, STREAM_PUBLISH_SIGNAL, SIGNAL_ASSISTANT_OUTPUT):
            await raw.get_workflow_handle(busy).signal(signal, sealed_with_no_known_key(key_id))
        final = await runs.wait(owner, busy, timeout=60)
        assert (final.status, final.assistant) == ("completed", "done")
        assert await workflow_task_failures(raw, busy) == 0

        poisoned = f"poison-{uuid.uuid4().hex[:8]}"
        handle = await raw.start_workflow(
            WORKFLOW_TYPE, sealed_with_no_known_key(key_id), id=poisoned, task_queue=queue
        )
        with pytest.raises(WorkflowFailureError) as failed:  # read with the key
            await asyncio.wait_for(client.get_workflow_handle(handle.id).result(), 60)
        assert "AgentRun input is a payload that cannot be read" in str(failed.value.cause)
        assert f"key id {key_id!r}" in str(failed.value.cause)
        assert await workflow_task_failures(raw, poisoned) == 0
